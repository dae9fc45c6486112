;; Declares a table of ten million entries: instantiation is refused by the store's table limit.
(module
  (table 10000000 funcref)
  (func (export "f") (result i32) (i32.const 1)))
