;; Unbounded recursion: stops at the fixed wasm stack limit (a trap), or on fuel, the same on every run.
(module
  (func $down (export "down") (param $n i64) (result i64)
    (i64.add (call $down (i64.add (local.get $n) (i64.const 1))) (i64.const 1))))
