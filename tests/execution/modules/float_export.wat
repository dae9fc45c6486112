;; Exports a function over f64: a task's arguments and result are integers. Rejected at admission.
(module
  (func (export "half") (param f64) (result f64) (f64.mul (local.get 0) (f64.const 0.5))))
