;; Ordinary traps and no-result functions, for status and argument tests.
(module
  (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func (export "nothing"))
  (func (export "echo64") (param i64) (result i64) (local.get 0))
  (func (export "echo32") (param i32) (result i32) (local.get 0))
  (func (export "pair") (param i32 i64) (result i64 i32) (local.get 1) (local.get 0)))
