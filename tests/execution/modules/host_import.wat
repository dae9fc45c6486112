;; Hostile: asks the host for a function (a clock, a sleep, anything). Rejected at admission.
(module
  (import "env" "now_ms" (func $now (result i64)))
  (func (export "when") (result i64) (call $now)))
