;; Hostile: grows its memory a page at a time and writes to each new page, never checking that the
;; grow succeeded. Under the task's memory limit the grow returns -1 and the write to -1 * 64 KiB
;; traps out of bounds. grown() reports how many pages it obtained before the limit refused one.
(module
  (memory 1)
  (func (export "bomb") (result i32)
    (local $old i32)
    (loop $more
      (local.set $old (memory.grow (i32.const 1)))
      (i32.store (i32.mul (local.get $old) (i32.const 65536)) (i32.const 42))
      (br $more))
    (i32.const 0))
  (func (export "grown") (result i32)
    (local $n i32)
    (block $refused
      (loop $more
        (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $more)))
    (memory.size)))
