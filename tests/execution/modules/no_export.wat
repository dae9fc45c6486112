;; Exports nothing to call. Rejected at admission.
(module
  (func $hidden (result i32) (i32.const 1)))
