;; Declares a 4 GiB maximum memory: above any bound a network sets. Rejected at admission.
(module
  (memory 1 65536)
  (func (export "f") (result i32) (i32.const 1)))
