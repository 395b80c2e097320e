;; The one product a step of the page's model needs, in WebAssembly SIMD: y[r] += W[r, :] . x for every row r.
;; W is row-major fp32 with cols a multiple of 16 (the page pads rows with zeros); pointers are byte offsets
;; into the memory the page gives. Four accumulators of four lanes keep the multiplies independent.
;; Built into matvec.wasm by `make web-runtime`.
(module
  (import "env" "memory" (memory 1))
  (func (export "matvec") (param $w i32) (param $x i32) (param $y i32) (param $rows i32) (param $cols i32)
    (local $end i32) (local $xp i32) (local $sum v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $cols) (i32.const 2))))
    (block $done
      (loop $row
        (br_if $done (i32.eqz (local.get $rows)))
        (local.set $a0 (v128.const f32x4 0 0 0 0))
        (local.set $a1 (v128.const f32x4 0 0 0 0))
        (local.set $a2 (v128.const f32x4 0 0 0 0))
        (local.set $a3 (v128.const f32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (loop $col
          (local.set $a0 (f32x4.add (local.get $a0)
            (f32x4.mul (v128.load offset=0 (local.get $w)) (v128.load offset=0 (local.get $xp)))))
          (local.set $a1 (f32x4.add (local.get $a1)
            (f32x4.mul (v128.load offset=16 (local.get $w)) (v128.load offset=16 (local.get $xp)))))
          (local.set $a2 (f32x4.add (local.get $a2)
            (f32x4.mul (v128.load offset=32 (local.get $w)) (v128.load offset=32 (local.get $xp)))))
          (local.set $a3 (f32x4.add (local.get $a3)
            (f32x4.mul (v128.load offset=48 (local.get $w)) (v128.load offset=48 (local.get $xp)))))
          (local.set $w (i32.add (local.get $w) (i32.const 64)))
          (local.set $xp (i32.add (local.get $xp) (i32.const 64)))
          (br_if $col (i32.lt_u (local.get $xp) (local.get $end))))
        (local.set $sum (f32x4.add (f32x4.add (local.get $a0) (local.get $a1))
                                   (f32x4.add (local.get $a2) (local.get $a3))))
        (f32.store (local.get $y)
          (f32.add (f32.load (local.get $y))
            (f32.add (f32.add (f32x4.extract_lane 0 (local.get $sum)) (f32x4.extract_lane 1 (local.get $sum)))
                     (f32.add (f32x4.extract_lane 2 (local.get $sum)) (f32x4.extract_lane 3 (local.get $sum))))))
        (local.set $y (i32.add (local.get $y) (i32.const 4)))
        (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
        (br $row)))))
