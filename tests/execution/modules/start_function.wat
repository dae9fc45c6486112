;; Hostile: a start function runs at instantiation, outside any task's call. Rejected at admission.
(module
  (func $init (loop $forever (br $forever)))
  (start $init)
  (func (export "f") (result i32) (i32.const 1)))
