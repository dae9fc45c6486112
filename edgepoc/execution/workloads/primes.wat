;; Prime counter: count(n) = number of primes p < n, by trial division with odd divisors up to sqrt(p).
;; CPU-bound, no memory: the reference workload for per-task overhead and fuel-per-second estimates.
(module
  (func $is_prime (param $p i32) (result i32)
    (local $d i32)
    (if (i32.lt_u (local.get $p) (i32.const 2)) (then (return (i32.const 0))))
    (if (i32.lt_u (local.get $p) (i32.const 4)) (then (return (i32.const 1))))
    (if (i32.eqz (i32.and (local.get $p) (i32.const 1))) (then (return (i32.const 0))))
    (local.set $d (i32.const 3))
    (block $done
      (loop $next
        ;; d*d > p (as u64, no overflow): no divisor left
        (br_if $done (i64.gt_u (i64.mul (i64.extend_i32_u (local.get $d)) (i64.extend_i32_u (local.get $d)))
                               (i64.extend_i32_u (local.get $p))))
        (if (i32.eqz (i32.rem_u (local.get $p) (local.get $d))) (then (return (i32.const 0))))
        (local.set $d (i32.add (local.get $d) (i32.const 2)))
        (br $next)))
    (i32.const 1))

  ;; count(n: i32) -> i32: primes below n (n <= 2 gives 0)
  (func (export "count") (param $n i32) (result i32)
    (local $p i32) (local $c i32)
    (local.set $p (i32.const 2))
    (block $done
      (loop $next
        (br_if $done (i32.ge_s (local.get $p) (local.get $n)))
        (local.set $c (i32.add (local.get $c) (call $is_prime (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $c))

  ;; count_and_largest(n: i32) -> (i32, i32): primes below n and the largest of them (0 if none);
  ;; a multi-value result, so a task's result can be a list of integers.
  (func (export "count_and_largest") (param $n i32) (result i32 i32)
    (local $p i32) (local $c i32) (local $last i32)
    (local.set $p (i32.const 2))
    (block $done
      (loop $next
        (br_if $done (i32.ge_s (local.get $p) (local.get $n)))
        (if (call $is_prime (local.get $p))
          (then (local.set $c (i32.add (local.get $c) (i32.const 1)))
                (local.set $last (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $c) (local.get $last))
)
