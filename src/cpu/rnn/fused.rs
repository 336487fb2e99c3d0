//! One LSTM forward step with the input projection and the cell fused into the recurrent
//! GEMM, on AVX-512: the gate pre-activations never leave the registers between the
//! product and the cell, and `x_t W_ih^T` is never stored.
//!
//! `[W_ih^T; W_hh^T]` (`[I + H, 4H]`) is packed once per sequence into panels of [`UNITS`]
//! hidden units: row `r` of panel `p` holds the four gates' weights of units
//! `16 p..16 p + 16`, one vector per gate (`i, f, g, o`). A tile of the product is [`MR`]
//! batch rows by the four vectors of one panel, contracted over the row's input `x_t`
//! and then its previous hidden state, so when its accumulators are done they hold every
//! gate of 16 units of each row: the epilogue adds the biases, applies the nonlinearities
//! and the state update, and stores `h`, `c` and the gate activations.
//!
//! # Arithmetic
//!
//! Each gate's pre-activation is `b_ih + (acc + b_hh)`, `acc` being zero plus one fused
//! multiply-add per input feature and then per hidden unit, in increasing order. That is
//! one chain of `I + H` multiply-adds where the unfused path (the matmul for `x W_ih^T`,
//! then `(xw + b_ih) + (h W_hh^T + b_hh)`) rounds the two products apart: the results
//! differ from it in the last bits. Where a caller passes `xw` computed apart
//! (`StepRows::xw`, with no input columns packed), the pre-activation is that path's
//! `(xw + b_ih) + (acc + b_hh)` exactly. The epilogue is the operations of
//! `cells::lstm_forward_row` and of `math`'s `exp`, `sigmoid` and `tanh`, one vector
//! instruction per scalar operation in the same order (no fused multiply-adds, as Rust
//! does not contract them in the scalar code). No result depends on the tile, the thread
//! or the thread count.

use crate::cpu::packed::{self, AlignedBuf};

/// Hidden units of one panel: one 16-lane vector per gate.
const UNITS: usize = 16;

/// Columns of one packed panel: four gates of [`UNITS`] units.
const NR: usize = 4 * UNITS;

/// Batch rows of one tile: 6 rows of 4 vectors are 24 accumulators.
const MR: usize = 6;

/// Whether the CPU runs [`lstm_step`] (AVX-512F).
pub fn available() -> bool {
    packed::available()
}

/// The weights of one layer and direction packed into gate panels: `W_ih` (`[4H, I]`
/// row-major, as stored; `input` may be 0 with an empty `w_ih`) transposed above `W_hh^T`
/// (`[H, 4H]` row-major), gates `i, f, g, o`; units past `H` in the last panel are zero.
pub fn pack_gates(input: usize, h: usize, w_ih: &[f32], w_hh_t: &[f32]) -> AlignedBuf {
    assert_eq!(w_ih.len(), 4 * h * input, "lstm pack_gates: W_ih of {} elements for {h}x{input}", w_ih.len());
    assert_eq!(w_hh_t.len(), h * 4 * h, "lstm pack_gates: W_hh^T of {} elements for hidden {h}", w_hh_t.len());
    let (panels, k) = (h.div_ceil(UNITS), input + h);
    let mut buf = AlignedBuf::zeroed(panels * k * NR, "rnn");
    let dst = buf.as_mut_slice();
    // Written in order, one packed row at a time (the pack runs before the batch is split
    // across threads).
    for p in 0..panels {
        let units = (h - p * UNITS).min(UNITS);
        for (r, row) in dst[p * k * NR..(p + 1) * k * NR].chunks_exact_mut(NR).enumerate() {
            for (g, gate) in row.chunks_exact_mut(UNITS).enumerate() {
                let col = g * h + p * UNITS;
                if r < input {
                    for (u, d) in gate[..units].iter_mut().enumerate() {
                        *d = w_ih[(col + u) * input + r];
                    }
                } else {
                    gate[..units].copy_from_slice(&w_hh_t[(r - input) * 4 * h + col..][..units]);
                }
            }
        }
    }
    buf
}

/// One step of `n` batch rows: their inputs `x` (`[n, I]`, empty where `xw` is given),
/// previous state `h_prev`, `c_prev` (`[n, H]`), optionally their input projections
/// computed apart, `xw` (`[n, 4H]`), and the outputs `h_out`, `c_out` (`[n, H]`) and,
/// unless `None` (a forward pass no backward will follow), `ws` (`[n, 4H]`, the gate
/// activations). A row that is not `active` (past its sequence's end) carries its state
/// over and gets zero gate activations.
pub struct StepRows<'a> {
    pub x: &'a [f32],
    pub h_prev: &'a [f32],
    pub c_prev: &'a [f32],
    pub xw: Option<&'a [f32]>,
    pub active: &'a [bool],
    pub h_out: &'a mut [f32],
    pub c_out: &'a mut [f32],
    pub ws: Option<&'a mut [f32]>,
}

/// One LSTM step of the rows `x` with the weights packed by [`pack_gates`] for `input`
/// features and hidden size `h`, and the biases `(b_ih, b_hh)` (`[4H]` each; `-0.0` for
/// none, see `rnn::biases`).
///
/// # Panics
///
/// Unless the CPU has AVX-512F ([`available`]) and every operand holds its shape.
pub fn lstm_step(input: usize, h: usize, w: &[f32], (b_ih, b_hh): (&[f32], &[f32]), x: StepRows) {
    assert!(available(), "lstm_step: the CPU has no AVX-512F");
    let n = x.active.len();
    let k = input + h;
    assert!(w.len() >= h.div_ceil(UNITS) * k * NR, "lstm_step: packed weights of {} elements for {input}+{h}", w.len());
    assert!(b_ih.len() >= 4 * h && b_hh.len() >= 4 * h, "lstm_step: biases of {} and {} for hidden {h}", b_ih.len(), {
        b_hh.len()
    });
    for (name, len, want) in [
        ("x", x.x.len(), n * input),
        ("h_prev", x.h_prev.len(), n * h),
        ("c_prev", x.c_prev.len(), n * h),
        ("xw", x.xw.map_or(n * 4 * h, |xw| xw.len()), n * 4 * h),
        ("h_out", x.h_out.len(), n * h),
        ("c_out", x.c_out.len(), n * h),
        ("ws", x.ws.as_ref().map_or(n * 4 * h, |ws| ws.len()), n * 4 * h),
    ] {
        assert!(len >= want, "lstm_step: {name} of {len} elements for {n} rows of {input}+{h}");
    }
    if n == 0 || h == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present and every operand holds its shape (checked above); the
    // outputs are unique borrows, so they alias no input.
    unsafe {
        avx512::step(input, h, w, (b_ih, b_hh), x)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("lstm_step: checked for AVX-512F")
}

/// One active batch row of an LSTM backward step on AVX-512: `cells::lstm_backward_row`
/// for a row inside its sequence, 16 units at a time with the same operations in the same
/// order (so the same bits). `d_out` is the state gradient `(dh, dc)` of the step's output
/// slot, `dhw` the next step's gate gradients times `W_hh`, `ws` the row's `[4H]` gate
/// activations, `cells` its `(c_t, c_{t-1})`; writes the row's gate gradients and updates
/// its carried `(dh, dc)`.
///
/// # Panics
///
/// Unless the CPU has AVX-512F and every operand holds its shape.
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward_row(
    (dh_out, dc_out): (&[f32], &[f32]),
    dhw: &[f32],
    ws: &[f32],
    (c_out, c_in): (&[f32], &[f32]),
    dgates: &mut [f32],
    carry_h: &mut [f32],
    carry_c: &mut [f32],
) {
    assert!(available(), "lstm_backward_row: the CPU has no AVX-512F");
    let h = dh_out.len();
    for (name, len, want) in [
        ("dc", dc_out.len(), h),
        ("dhw", dhw.len(), h),
        ("ws", ws.len(), 4 * h),
        ("c_t", c_out.len(), h),
        ("c_t-1", c_in.len(), h),
        ("dgates", dgates.len(), 4 * h),
        ("carry_h", carry_h.len(), h),
        ("carry_c", carry_c.len(), h),
    ] {
        assert!(len >= want, "lstm_backward_row: {name} of {len} elements for hidden {h}");
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present and every operand holds `h` units (checked above); the
    // outputs are unique borrows.
    unsafe {
        avx512::backward_row(h, [dh_out, dc_out, dhw, ws, c_out, c_in], dgates, carry_h, carry_c)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("lstm_backward_row: checked for AVX-512F")
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{StepRows, MR, NR, UNITS};
    use std::arch::x86_64::*;

    /// [`super::lstm_step`] after its checks: panel by panel (each `(I + H) * NR` floats,
    /// reused from cache by every tile of rows), [`MR`] rows at a time.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn step(input: usize, h: usize, w: &[f32], bias: (&[f32], &[f32]), x: StepRows) {
        let n = x.active.len();
        let k = input + h;
        let ws = x.ws.map_or(std::ptr::null_mut(), |ws| ws.as_mut_ptr());
        let out = Out { h: x.h_out.as_mut_ptr(), c: x.c_out.as_mut_ptr(), ws };
        let rows = Rows {
            x: x.x.as_ptr(),
            input,
            h_prev: x.h_prev.as_ptr(),
            c_prev: x.c_prev.as_ptr(),
            xw: x.xw.map_or(std::ptr::null(), |xw| xw.as_ptr()),
        };
        for p in 0..h.div_ceil(UNITS) {
            let units = (h - p * UNITS).min(UNITS);
            let tile = Tile {
                h,
                u0: p * UNITS,
                mask: if units == UNITS { 0xffff } else { (1u16 << units) - 1 },
                panel: w[p * k * NR..].as_ptr(),
                bias: (bias.0.as_ptr(), bias.1.as_ptr()),
            };
            for (i, count) in crate::cpu::packed::row_tiles(n, MR) {
                let active = &x.active[i..i + count];
                // SAFETY: rows `i..i + count` and units `u0..u0 + units` lie inside every
                // operand (the caller's checks).
                unsafe {
                    match count {
                        1 => tile_rows::<1>(&tile, &rows, i, active, &out),
                        2 => tile_rows::<2>(&tile, &rows, i, active, &out),
                        3 => tile_rows::<3>(&tile, &rows, i, active, &out),
                        4 => tile_rows::<4>(&tile, &rows, i, active, &out),
                        5 => tile_rows::<5>(&tile, &rows, i, active, &out),
                        _ => tile_rows::<MR>(&tile, &rows, i, active, &out),
                    }
                }
            }
        }
    }

    /// One panel: the hidden size, its first unit, the lanes that are units, the packed
    /// weights and the two biases.
    struct Tile {
        h: usize,
        u0: usize,
        mask: __mmask16,
        panel: *const f32,
        bias: (*const f32, *const f32),
    }

    /// The inputs of the step; `xw` is null where the projection is fused.
    struct Rows {
        x: *const f32,
        input: usize,
        h_prev: *const f32,
        c_prev: *const f32,
        xw: *const f32,
    }

    /// The outputs of the step; `ws` is null where no workspace is kept.
    struct Out {
        h: *mut f32,
        c: *mut f32,
        ws: *mut f32,
    }

    /// `acc[i] += a[i * lda + r] * b[r]` for `r` in `0..k`, `b` advancing by [`NR`] a row.
    /// The accumulators go in and out by value, which keeps them in registers.
    #[inline(always)]
    unsafe fn accumulate<const R: usize>(
        mut acc: [[__m512; 4]; R],
        a: *const f32,
        lda: usize,
        k: usize,
        b: *const f32,
    ) -> [[__m512; 4]; R] {
        // SAFETY: the caller's contract: `R` rows of `k` values of `a`, `k` rows of `b`.
        unsafe {
            let mut b = b;
            for r in 0..k {
                let bv: [__m512; 4] = std::array::from_fn(|g| _mm512_load_ps(b.add(UNITS * g)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.add(i * lda + r));
                    for (x, &bv) in row.iter_mut().zip(&bv) {
                        *x = _mm512_fmadd_ps(ai, bv, *x);
                    }
                }
                b = b.add(NR);
            }
        }
        acc
    }

    /// `R` rows from row `first` of one panel: the product into 4 `R` accumulators, then
    /// the cell.
    #[inline(always)]
    unsafe fn tile_rows<const R: usize>(t: &Tile, x: &Rows, first: usize, active: &[bool], out: &Out) {
        // SAFETY (the whole body): every row and unit reached lies inside the operands
        // (the caller's contract); loads and stores past the panel's units are masked.
        unsafe {
            let h = t.h;
            let acc = [[_mm512_setzero_ps(); 4]; R];
            let acc = accumulate(acc, x.x.add(first * x.input), x.input, x.input, t.panel);
            let acc = accumulate(acc, x.h_prev.add(first * h), h, h, t.panel.add(x.input * NR));
            let m = t.mask;
            for (i, hw) in acc.iter().enumerate() {
                let row = first + i;
                let units = row * h + t.u0;
                let (h_prev, c_prev) = (x.h_prev.add(units), x.c_prev.add(units));
                let (h_out, c_out) = (out.h.add(units), out.c.add(units));
                let ws = (!out.ws.is_null()).then(|| out.ws.add(row * 4 * h + t.u0));
                if !active[i] {
                    _mm512_mask_storeu_ps(h_out, m, _mm512_maskz_loadu_ps(m, h_prev));
                    _mm512_mask_storeu_ps(c_out, m, _mm512_maskz_loadu_ps(m, c_prev));
                    if let Some(ws) = ws {
                        for g in 0..4 {
                            _mm512_mask_storeu_ps(ws.add(g * h), m, _mm512_setzero_ps());
                        }
                    }
                    continue;
                }
                let pre: [__m512; 4] = std::array::from_fn(|g| {
                    let at = g * h + t.u0;
                    let b_ih = _mm512_maskz_loadu_ps(m, t.bias.0.add(at));
                    let b_hh = _mm512_maskz_loadu_ps(m, t.bias.1.add(at));
                    let recurrent = _mm512_add_ps(hw[g], b_hh);
                    if x.xw.is_null() {
                        _mm512_add_ps(b_ih, recurrent)
                    } else {
                        let xw = _mm512_maskz_loadu_ps(m, x.xw.add(row * 4 * h + at));
                        _mm512_add_ps(_mm512_add_ps(xw, b_ih), recurrent)
                    }
                });
                let (ig, fg, gg, og) = (sigmoid(pre[0]), sigmoid(pre[1]), tanh(pre[2]), sigmoid(pre[3]));
                let c_prev = _mm512_maskz_loadu_ps(m, c_prev);
                let c = _mm512_add_ps(_mm512_mul_ps(fg, c_prev), _mm512_mul_ps(ig, gg));
                let hv = _mm512_mul_ps(og, tanh(c));
                _mm512_mask_storeu_ps(h_out, m, hv);
                _mm512_mask_storeu_ps(c_out, m, c);
                if let Some(ws) = ws {
                    for (g, v) in [ig, fg, gg, og].into_iter().enumerate() {
                        _mm512_mask_storeu_ps(ws.add(g * h), m, v);
                    }
                }
            }
        }
    }

    /// [`super::lstm_backward_row`] after its checks; `inputs` are `dh_out, dc_out, dhw,
    /// ws, c_out, c_in`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn backward_row(
        h: usize,
        inputs: [&[f32]; 6],
        dgates: &mut [f32],
        carry_h: &mut [f32],
        carry_c: &mut [f32],
    ) {
        let [dh_out, dc_out, dhw, ws, c_out, c_in] = inputs.map(|s| s.as_ptr());
        let (dg, ch, cc) = (dgates.as_mut_ptr(), carry_h.as_mut_ptr(), carry_c.as_mut_ptr());
        let one = splat(1.0);
        for u in (0..h).step_by(UNITS) {
            let lanes = (h - u).min(UNITS);
            let m: __mmask16 = if lanes == UNITS { 0xffff } else { (1u16 << lanes) - 1 };
            // SAFETY: units `u..u + lanes` of every operand lie inside it (the caller's
            // contract); the lanes past them are masked off.
            unsafe {
                let load = |p: *const f32, at: usize| _mm512_maskz_loadu_ps(m, p.add(at));
                let (ig, fg, gg, og) = (load(ws, u), load(ws, h + u), load(ws, 2 * h + u), load(ws, 3 * h + u));
                // `incoming_dh`: (d_out + dhw) + carry.
                let dh = _mm512_add_ps(_mm512_add_ps(load(dh_out, u), load(dhw, u)), load(ch, u));
                let tc = tanh(load(c_out, u));
                let dtanh = _mm512_sub_ps(one, _mm512_mul_ps(tc, tc));
                let dc = _mm512_add_ps(
                    _mm512_add_ps(load(dc_out, u), load(cc, u)),
                    _mm512_mul_ps(_mm512_mul_ps(dh, og), dtanh),
                );
                let d_i = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dc, gg), ig), _mm512_sub_ps(one, ig));
                let d_f = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dc, load(c_in, u)), fg), _mm512_sub_ps(one, fg));
                let d_g = _mm512_mul_ps(_mm512_mul_ps(dc, ig), _mm512_sub_ps(one, _mm512_mul_ps(gg, gg)));
                let d_o = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dh, tc), og), _mm512_sub_ps(one, og));
                for (g, v) in [d_i, d_f, d_g, d_o].into_iter().enumerate() {
                    _mm512_mask_storeu_ps(dg.add(g * h + u), m, v);
                }
                _mm512_mask_storeu_ps(ch.add(u), m, _mm512_setzero_ps());
                _mm512_mask_storeu_ps(cc.add(u), m, _mm512_mul_ps(dc, fg));
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn splat(v: f32) -> __m512 {
        _mm512_set1_ps(v)
    }

    /// `math::exp` of lanes that are at most zero (or NaN), operation for operation where
    /// it matters: the upper clamp, which leaves such lanes as they are, is skipped, and
    /// where every lane's `2^k` is a normal float (`k >= -126`) it scales by `2^k` at once,
    /// which rounds the same exact product once, as the two halves do.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn exp_nonpositive(x: __m512) -> __m512 {
        let x = _mm512_max_ps(splat(-104.0), x);
        let (p, k) = exp_parts(x);
        if _mm512_cmplt_epi32_mask(k, _mm512_set1_epi32(-126)) == 0 {
            _mm512_mul_ps(p, pow2(k))
        } else {
            scale_by_halves(p, k)
        }
    }

    /// `math::exp` of lanes in `[0, 20]` (or NaN), operation for operation where it
    /// matters: both clamps leave such lanes as they are, and `2^k` (`k <= 29`) and the
    /// result are normal, so scaling by `2^k` at once gives the bits of the two halves.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn exp_small(x: __m512) -> __m512 {
        let (p, k) = exp_parts(x);
        _mm512_mul_ps(p, pow2(k))
    }

    /// The polynomial `p` and the power `k` of `math::exp`, `e^x = p 2^k`, for `x` already
    /// clamped.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn exp_parts(x: __m512) -> (__m512, __m512i) {
        const SHIFT: f32 = 12_582_912.0;
        let shifted = _mm512_add_ps(_mm512_mul_ps(x, splat(std::f32::consts::LOG2_E)), splat(SHIFT));
        let kf = _mm512_sub_ps(shifted, splat(SHIFT));
        let k = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(SHIFT.to_bits() as i32));
        let r = _mm512_add_ps(
            _mm512_sub_ps(x, _mm512_mul_ps(kf, splat(0.693_359_4))),
            _mm512_mul_ps(kf, splat(2.121_944_4e-4)),
        );
        let z = _mm512_mul_ps(r, r);
        let step = |p: __m512, c: f32| _mm512_add_ps(_mm512_mul_ps(p, r), splat(c));
        let mut p = _mm512_add_ps(_mm512_mul_ps(splat(1.987_569_1e-4), r), splat(1.398_199_9e-3));
        p = step(p, 8.333_452e-3);
        p = step(p, 4.166_579_6e-2);
        p = step(p, 1.666_666_5e-1);
        p = step(p, 5.0e-1);
        p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, z), r), splat(1.0));
        (p, k)
    }

    /// `2^e` for `e` from -126 to 127.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn pow2(e: __m512i) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(e, _mm512_set1_epi32(127))))
    }

    /// `p 2^k` as `math::exp` scales: by two normal halves of `2^k`, so that `k` from -150
    /// to 128 works.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn scale_by_halves(p: __m512, k: __m512i) -> __m512 {
        let k1 = _mm512_srai_epi32::<1>(k);
        let k2 = _mm512_sub_epi32(k, k1);
        _mm512_mul_ps(_mm512_mul_ps(p, pow2(k1)), pow2(k2))
    }

    const SIGN: i32 = i32::MIN;
    const ABS: i32 = i32::MAX;

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn bits_and(x: __m512, m: i32) -> __m512 {
        _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(m)))
    }

    /// `math::sigmoid`, lane by lane.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn sigmoid(x: __m512) -> __m512 {
        // -|x|: the sign bit set.
        let neg_abs = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(x), _mm512_set1_epi32(SIGN)));
        let e = exp_nonpositive(neg_abs);
        let positive = _mm512_div_ps(splat(1.0), _mm512_add_ps(splat(1.0), e));
        let negative = _mm512_mul_ps(e, positive);
        let nonnegative = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_setzero_ps());
        _mm512_mask_blend_ps(nonnegative, negative, positive)
    }

    /// `math::tanh`, lane by lane.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn tanh(x: __m512) -> __m512 {
        let x = _mm512_min_ps(splat(10.0), _mm512_max_ps(splat(-10.0), x));
        let a = bits_and(x, ABS);
        let e = exp_small(_mm512_add_ps(a, a));
        let large = _mm512_sub_ps(splat(1.0), _mm512_div_ps(splat(2.0), _mm512_add_ps(e, splat(1.0))));
        // `copysign(large, x)`: wherever `large` is taken (`a >= 0.625`, so not NaN) it lies
        // in (0, 1), its sign bit clear, so OR-ing in x's sign bit is the copysign.
        let large =
            _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(large), _mm512_castps_si512(bits_and(x, SIGN))));
        let z = _mm512_mul_ps(x, x);
        let mut p = _mm512_add_ps(_mm512_mul_ps(splat(-5.704_988_7e-3), z), splat(2.063_909e-2));
        p = _mm512_sub_ps(_mm512_mul_ps(p, z), splat(5.373_971_6e-2));
        p = _mm512_add_ps(_mm512_mul_ps(p, z), splat(1.333_144_2e-1));
        p = _mm512_sub_ps(_mm512_mul_ps(p, z), splat(3.333_328e-1));
        let small = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, z), x), x);
        let is_large = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, splat(0.625));
        _mm512_mask_blend_ps(is_large, small, large)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The specialised exponentials against `math::exp`, bit for bit, over their
        /// ranges: a fine sweep, the bounds, `2^k`'s boundary at `k = -126`, signed zeros
        /// and NaN.
        #[test]
        fn the_specialised_exps_give_the_bits_of_math_exp() {
            if !crate::cpu::packed::available() {
                return;
            }
            let mut xs: Vec<f32> = (0..=400_000).map(|i| -110.0 + i as f32 * 3.3e-4).collect();
            xs.extend([0.0, -0.0, f32::NAN, -104.0, -103.99, -87.33654, -87.3, -87.35, -87.4, 20.0, 19.99]);
            for (name, lo, hi) in [("nonpositive", f32::NEG_INFINITY, 0.0), ("small", 0.0, 20.0)] {
                let lanes: Vec<f32> = xs.iter().map(|&x| if x.is_nan() { x } else { x.clamp(lo, hi) }).collect();
                for chunk in lanes.chunks(16) {
                    let mut v = [0.0f32; 16];
                    v[..chunk.len()].copy_from_slice(chunk);
                    // SAFETY: AVX-512F is present (checked above); the array holds 16 floats.
                    let got: [f32; 16] = unsafe {
                        let x = _mm512_loadu_ps(v.as_ptr());
                        let e = if name == "small" { exp_small(x) } else { exp_nonpositive(x) };
                        std::mem::transmute::<__m512, [f32; 16]>(e)
                    };
                    for (x, e) in v.iter().zip(got) {
                        let want = crate::cpu::rnn::math::exp(*x);
                        assert!(
                            e.to_bits() == want.to_bits() || (e.is_nan() && want.is_nan()),
                            "exp_{name}({x}): {e} against math::exp's {want}"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cells::{lstm_forward_row, LstmForwardRow};
    use super::*;

    fn values(len: usize, seed: u32, scale: f32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let u = ((i as u32).wrapping_mul(2654435761).wrapping_add(seed.wrapping_mul(40503)) >> 8) as f32;
                (u / 16777216.0 - 0.5) * scale
            })
            .collect()
    }

    /// The step's outputs `(h, c, ws)` for `n` rows.
    fn run(
        input: usize,
        h: usize,
        w: &[f32],
        bias: (&[f32], &[f32]),
        x: &[f32],
        xw: Option<&[f32]>,
        state: (&[f32], &[f32]),
        active: &[bool],
    ) -> [Vec<f32>; 3] {
        let n = active.len();
        let (mut h_out, mut c_out, mut ws) = (vec![f32::NAN; n * h], vec![f32::NAN; n * h], vec![f32::NAN; n * 4 * h]);
        let rows = StepRows {
            x,
            h_prev: state.0,
            c_prev: state.1,
            xw,
            active,
            h_out: &mut h_out,
            c_out: &mut c_out,
            ws: Some(&mut ws),
        };
        lstm_step(input, h, w, bias, rows);
        [h_out, c_out, ws]
    }

    /// With the projection computed apart, the fused step is the unfused path bit for bit:
    /// the packed product, then `cells::lstm_forward_row`. Hidden sizes that leave a
    /// partial panel, row counts that cut the 6-row tiles, rows past their sequence's end,
    /// and pre-activations large enough to reach every branch of `exp`, `sigmoid` and `tanh`.
    #[test]
    fn the_fused_cell_is_the_unfused_row_bit_for_bit() {
        if !available() {
            return;
        }
        for &(n, h) in &[(1, 16), (7, 37), (13, 64), (6, 5)] {
            let width = 4 * h;
            let w_hh_t = values(h * width, 1, 0.6);
            let (b_ih, b_hh) = (values(width, 2, 4.0), values(width, 3, 4.0));
            let xw = values(n * width, 4, 60.0);
            let (h_prev, c_prev) = (values(n * h, 5, 2.0), values(n * h, 6, 30.0));
            let active: Vec<bool> = (0..n).map(|i| i % 4 != 2).collect();
            let packed = pack_gates(0, h, &[], &w_hh_t);
            let got = run(0, h, packed.as_slice(), (&b_ih, &b_hh), &[], Some(&xw), (&h_prev, &c_prev), &active);
            // h W_hh^T as the packed kernel computes it (zero, then one FMA per step).
            let hw: Vec<f32> = (0..n * width)
                .map(|e| {
                    (0..h).fold(0.0f32, |acc, r| h_prev[e / width * h + r].mul_add(w_hh_t[r * width + e % width], acc))
                })
                .collect();
            for (i, &row_active) in active.iter().enumerate() {
                let (mut hh, mut cc, mut ws) = (vec![0.0; h], vec![0.0; h], vec![0.0; width]);
                let mut out = LstmForwardRow { h: &mut hh, c: &mut cc, ws: &mut ws };
                let units = i * h..(i + 1) * h;
                let gates = i * width..(i + 1) * width;
                let prev = (&h_prev[units.clone()], &c_prev[units.clone()]);
                lstm_forward_row(row_active, &xw[gates.clone()], &hw[gates.clone()], (&b_ih, &b_hh), prev, &mut out);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got[0][units.clone()]), bits(&hh), "h, {n}x{h} row {i}");
                assert_eq!(bits(&got[1][units]), bits(&cc), "c, {n}x{h} row {i}");
                assert_eq!(bits(&got[2][gates]), bits(&ws), "gates, {n}x{h} row {i}");
            }
        }
    }

    /// The vector backward row against `cells::lstm_backward_row`, bit for bit, on hidden
    /// sizes that leave a partial vector.
    #[test]
    fn the_vector_backward_row_is_the_scalar_one_bit_for_bit() {
        if !available() {
            return;
        }
        for h in [16, 37, 5] {
            let gates: Vec<f32> = values(4 * h, 20, 1.0).iter().map(|v| v + 0.5).collect();
            let (dh, dc, dhw) = (values(h, 21, 2.0), values(h, 22, 2.0), values(h, 23, 2.0));
            let (c_out, c_in) = (values(h, 24, 8.0), values(h, 25, 8.0));
            let (carry_h, carry_c) = (values(h, 26, 1.0), values(h, 27, 1.0));
            let mut want = (vec![0.0; 4 * h], carry_h.clone(), carry_c.clone());
            super::super::cells::lstm_backward_row(
                true,
                (&dh, &dc),
                &dhw,
                &gates,
                (&c_out, &c_in),
                &mut want.0,
                &mut want.1,
                &mut want.2,
            );
            let mut got = (vec![f32::NAN; 4 * h], carry_h.clone(), carry_c.clone());
            lstm_backward_row((&dh, &dc), &dhw, &gates, (&c_out, &c_in), &mut got.0, &mut got.1, &mut got.2);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.0), bits(&want.0), "gate gradients, hidden {h}");
            assert_eq!(bits(&got.1), bits(&want.1), "carried dh, hidden {h}");
            assert_eq!(bits(&got.2), bits(&want.2), "carried dc, hidden {h}");
        }
    }

    /// With the projection inside the step, the gates against f64 sums of the same cell.
    #[test]
    fn the_fused_projection_matches_f64_gates() {
        if !available() {
            return;
        }
        for &(n, input, h) in &[(7, 5, 37), (13, 28, 64), (2, 1, 16)] {
            let width = 4 * h;
            let w_ih = values(width * input, 7, 1.0);
            let w_hh_t = values(h * width, 8, 0.6);
            let (b_ih, b_hh) = (values(width, 9, 1.0), values(width, 10, 1.0));
            let x = values(n * input, 11, 2.0);
            let (h_prev, c_prev) = (values(n * h, 12, 2.0), values(n * h, 13, 3.0));
            let active = vec![true; n];
            let packed = pack_gates(input, h, &w_ih, &w_hh_t);
            let got = run(input, h, packed.as_slice(), (&b_ih, &b_hh), &x, None, (&h_prev, &c_prev), &active);
            for i in 0..n {
                let pre = |col: usize| {
                    let xs: f64 = (0..input).map(|r| x[i * input + r] as f64 * w_ih[col * input + r] as f64).sum();
                    let hs: f64 = (0..h).map(|r| h_prev[i * h + r] as f64 * w_hh_t[r * width + col] as f64).sum();
                    xs + hs + b_ih[col] as f64 + b_hh[col] as f64
                };
                let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
                for j in 0..h {
                    let (ig, fg, gg, og) =
                        (sigmoid(pre(j)), sigmoid(pre(h + j)), pre(2 * h + j).tanh(), sigmoid(pre(3 * h + j)));
                    let c = fg * c_prev[i * h + j] as f64 + ig * gg;
                    let hv = og * c.tanh();
                    let close = |a: f32, b: f64| (a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs());
                    assert!(close(got[1][i * h + j], c), "c {n}x{input}x{h} ({i}, {j}): {} vs {c}", got[1][i * h + j]);
                    assert!(
                        close(got[0][i * h + j], hv),
                        "h {n}x{input}x{h} ({i}, {j}): {} vs {hv}",
                        got[0][i * h + j]
                    );
                    for (g, want) in [ig, fg, gg, og].into_iter().enumerate() {
                        let v = got[2][i * width + g * h + j];
                        assert!(close(v, want), "gate {g} {n}x{input}x{h} ({i}, {j}): {v} vs {want}");
                    }
                }
            }
        }
    }
}
