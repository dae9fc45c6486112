;; Hash chain: apply the splitmix64 finaliser k times starting from seed; returns the last value.
;; Sequential by construction (each step needs the previous one), so it cannot be sped up or skipped:
;; a cheap stand-in for proof-of-work-like tasks.
(module
  ;; run(seed: i64, k: i32) -> i64
  (func (export "run") (param $x i64) (param $k i32) (result i64)
    (block $done
      (loop $step
        (br_if $done (i32.le_s (local.get $k) (i32.const 0)))
        (local.set $x (i64.add (local.get $x) (i64.const 0x9E3779B97F4A7C15)))
        (local.set $x (i64.mul (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 30)))
                               (i64.const 0xBF58476D1CE4E5B9)))
        (local.set $x (i64.mul (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 27)))
                               (i64.const 0x94D049BB133111EB)))
        (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 31))))
        (local.set $k (i32.sub (local.get $k) (i32.const 1)))
        (br $step)))
    (local.get $x))
)
