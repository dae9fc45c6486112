;; Matrix product: C = A x B for n x n matrices of i64 filled from a seeded LCG, all arithmetic
;; wrapping mod 2^64; returns checksum = sum over (i, j) of C[i][j] * (i*n + j + 1), wrapping.
;; Memory-bound as well as CPU-bound: it grows its memory to 3*n*n*8 bytes, so the task's memory
;; limit decides whether it runs (a refused grow traps with unreachable).
(module
  (memory 1)
  ;; LCG state -> next state (Knuth's MMIX constants)
  (func $lcg (param $s i64) (result i64)
    (i64.add (i64.mul (local.get $s) (i64.const 6364136223846793005)) (i64.const 1442695040888963407)))

  ;; checksum(n: i32, seed: i64) -> i64
  (func (export "checksum") (param $n i32) (param $seed i64) (result i64)
    (local $nn i32) (local $bytes i32) (local $pages i32) (local $have i32)
    (local $a i32) (local $b i32) (local $c i32)
    (local $i i32) (local $j i32) (local $k i32) (local $s i64) (local $acc i64) (local $sum i64)
    (if (i32.le_s (local.get $n) (i32.const 0)) (then (return (i64.const 0))))
    (if (i32.gt_s (local.get $n) (i32.const 1024)) (then (unreachable)))
    (local.set $nn (i32.mul (local.get $n) (local.get $n)))
    (local.set $bytes (i32.mul (local.get $nn) (i32.const 24)))
    (local.set $pages (i32.div_u (i32.add (local.get $bytes) (i32.const 65535)) (i32.const 65536)))
    (local.set $have (memory.size))
    (if (i32.gt_u (local.get $pages) (local.get $have))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $pages) (local.get $have))) (i32.const -1))
              (then (unreachable)))))
    (local.set $a (i32.const 0))
    (local.set $b (i32.mul (local.get $nn) (i32.const 8)))
    (local.set $c (i32.mul (local.get $nn) (i32.const 16)))
    ;; fill A then B, row-major, from one LCG stream; values kept small-ish (top 32 bits)
    (local.set $s (local.get $seed))
    (local.set $i (i32.const 0))
    (block $filled
      (loop $fill
        (br_if $filled (i32.ge_u (local.get $i) (i32.mul (local.get $nn) (i32.const 2))))
        (local.set $s (call $lcg (local.get $s)))
        (i64.store (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 3)))
                   (i64.shr_u (local.get $s) (i64.const 32)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $fill)))
    ;; C = A x B and the checksum in one pass
    (local.set $i (i32.const 0))
    (block $di (loop $li
      (br_if $di (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $j (i32.const 0))
      (block $dj (loop $lj
        (br_if $dj (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $acc (i64.const 0))
        (local.set $k (i32.const 0))
        (block $dk (loop $lk
          (br_if $dk (i32.ge_u (local.get $k) (local.get $n)))
          (local.set $acc (i64.add (local.get $acc)
            (i64.mul
              (i64.load (i32.add (local.get $a)
                (i32.shl (i32.add (i32.mul (local.get $i) (local.get $n)) (local.get $k)) (i32.const 3))))
              (i64.load (i32.add (local.get $b)
                (i32.shl (i32.add (i32.mul (local.get $k) (local.get $n)) (local.get $j)) (i32.const 3)))))))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br $lk)))
        (i64.store (i32.add (local.get $c)
                     (i32.shl (i32.add (i32.mul (local.get $i) (local.get $n)) (local.get $j)) (i32.const 3)))
                   (local.get $acc))
        (local.set $sum (i64.add (local.get $sum)
          (i64.mul (local.get $acc)
                   (i64.extend_i32_u (i32.add (i32.add (i32.mul (local.get $i) (local.get $n)) (local.get $j))
                                              (i32.const 1))))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $lj)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $li)))
    (local.get $sum))
)
