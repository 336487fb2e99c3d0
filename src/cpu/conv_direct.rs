//! A direct AVX-512 kernel for convolutions with stride 1, on "wide" output rows (see
//! `conv::conv2d_wide`): with the output computed on rows as wide as the (padded) input,
//! row `r = (c, i, j)` of the column matrix is the input plane of channel `c` read from a
//! fixed offset on, so the kernel reads its right-hand operand straight from the image
//! (one offset per row, then contiguous vectors): nothing is unfolded or packed per image.
//! The weights are packed once per call into blocks of [`MR`] rows, so each step of the
//! product broadcasts [`MR`] consecutive floats.
//!
//! A tile is [`MR`] output channels by up to `VECTORS` vectors of 16 wide positions, 24
//! accumulators held in registers through the whole contraction. The wide positions past
//! each output row's width are dropped when the tile is stored: the kept lanes of a vector
//! are consecutive outputs, so each vector is compressed to its kept lanes and stored with
//! one masked store, straight into the `[out, L]` output.
//!
//! # Arithmetic
//!
//! Every output is its bias (or zero) followed by one fused multiply-add per column row in
//! increasing order: the operations of [`super::packed`]'s kernel on the same operands, so
//! the results are the same bits as that kernel's (and do not depend on the tile, the
//! thread or the thread count).

use std::mem::MaybeUninit;

/// Output channels of one tile: 8 rows of 3 vectors are 24 of the 32 vector registers,
/// leaving room for the 3 vectors of the input and a broadcast weight.
pub const MR: usize = 8;

/// Vectors of 16 wide positions in one tile.
const VECTORS: usize = 3;

/// The weights of one group (`m x k`, row-major) and its bias, packed in blocks of [`MR`]
/// rows: step `r` of block `b` is the [`MR`] values at `(b * k + r) * MR`, rows past `m`
/// zero.
pub struct PackedRows {
    data: Vec<f32>,
    bias: Vec<f32>,
    m: usize,
    k: usize,
}

impl PackedRows {
    /// Packs `w` (`m x k`, rows `k` apart) and `bias` (`m` values, or zeros).
    pub fn new(m: usize, k: usize, w: &[f32], bias: Option<&[f32]>) -> PackedRows {
        let blocks = m.div_ceil(MR);
        let mut data = super::alloc::zeroed::<f32>(blocks * k * MR, "conv");
        for o in 0..m {
            let (b, i) = (o / MR, o % MR);
            for (r, &v) in w[o * k..(o + 1) * k].iter().enumerate() {
                data[(b * k + r) * MR + i] = v;
            }
        }
        let mut padded = vec![0.0; blocks * MR];
        if let Some(bias) = bias {
            padded[..m].copy_from_slice(&bias[..m]);
        }
        PackedRows { data, bias: padded, m, k }
    }
}

/// Where the vectors of wide positions go: for vector `u` (wide positions `16 u..16 u + 16`),
/// the lanes inside the wide output, the lanes kept (inside an output row) and the output
/// index of its first kept lane.
pub struct WidePlan {
    wide: usize,
    load: Vec<u16>,
    keep: Vec<u16>,
    out: Vec<usize>,
}

impl WidePlan {
    /// The plan of an `oh x ow` output computed on rows `wp` wide (`wp >= ow`).
    pub fn new(oh: usize, ow: usize, wp: usize) -> WidePlan {
        let wide = if oh == 0 || ow == 0 { 0 } else { (oh - 1) * wp + ow };
        let vectors = wide.div_ceil(16);
        let (mut load, mut keep, mut out) = (Vec::new(), Vec::new(), Vec::new());
        for u in 0..vectors {
            let p0 = 16 * u;
            let (mut l, mut kp) = (0u16, 0u16);
            for lane in 0..16 {
                let p = p0 + lane;
                if p < wide {
                    l |= 1 << lane;
                    if p % wp < ow {
                        kp |= 1 << lane;
                    }
                }
            }
            load.push(l);
            keep.push(kp);
            out.push((p0 / wp) * ow + (p0 % wp).min(ow));
        }
        WidePlan { wide, load, keep, out }
    }

    /// Wide positions: `(oh - 1) * wp + ow`.
    pub fn wide(&self) -> usize {
        self.wide
    }
}

/// `y[o * positions + q] = bias[o] + sum_r w[o][r] image[offsets[r] + p]` for every
/// output channel `o` of `w` and every kept wide position `p` (output `q`); every element
/// of the `m x positions` block of `y` is written.
///
/// # Panics
///
/// Unless the CPU has AVX-512F ([`super::packed::available`]), `offsets` holds `k` offsets
/// from each of which `plan.wide()` floats of `image` can be read, `y` holds the block and
/// the plan keeps `positions` outputs.
pub fn wide_product(
    image: &[f32],
    offsets: &[usize],
    w: &PackedRows,
    plan: &WidePlan,
    y: &mut [MaybeUninit<f32>],
    positions: usize,
) {
    assert!(super::packed::available(), "conv_direct: the CPU has no AVX-512F");
    assert!(offsets.len() >= w.k, "conv_direct: {} offsets for {} rows", offsets.len(), w.k);
    assert!(
        offsets[..w.k].iter().all(|&o| o + plan.wide <= image.len()),
        "conv_direct: an offset reads past an image of {} elements",
        image.len()
    );
    assert!(y.len() >= w.m * positions, "conv_direct: output of {} elements for {}x{positions}", y.len(), w.m);
    let kept: usize = plan.keep.iter().map(|k| k.count_ones() as usize).sum();
    assert_eq!(kept, positions, "conv_direct: the plan keeps {kept} of {positions} positions");
    if w.m == 0 || plan.wide == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present; every read lies inside `image` (each offset plus the
    // wide extent, checked above, and loads past the wide extent are masked off), the
    // packed weights hold every block, and every store lies inside `y`'s block (kept
    // lanes are outputs `0..positions` of rows `0..m`).
    unsafe {
        avx512::product(image.as_ptr(), offsets.as_ptr(), w, plan, y.as_mut_ptr().cast(), positions)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("conv_direct: checked for AVX-512F")
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{PackedRows, WidePlan, MR, VECTORS};
    use std::arch::x86_64::*;

    /// [`super::wide_product`] after its checks: block by block of [`MR`] output channels,
    /// and within a block tile by tile of up to [`VECTORS`] vectors, so a block's packed
    /// weights (`k * MR` floats) and the image stay in the core's first-level cache.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product(
        image: *const f32,
        offsets: *const usize,
        w: &PackedRows,
        plan: &WidePlan,
        y: *mut f32,
        positions: usize,
    ) {
        let vectors = plan.load.len();
        for block in 0..w.m.div_ceil(MR) {
            let rows = (w.m - block * MR).min(MR);
            let tile = Tile {
                k: w.k,
                a: w.data[block * w.k * MR..].as_ptr(),
                bias: w.bias[block * MR..].as_ptr(),
                offsets,
                rows,
                // SAFETY: row `block * MR` is inside the output (the caller's checks).
                y: unsafe { y.add(block * MR * positions) },
                positions,
            };
            let mut u = 0;
            while u < vectors {
                let v = (vectors - u).min(VECTORS);
                let at = u..u + v;
                // SAFETY: the caller's contract; vector `u` starts at wide position 16 u.
                unsafe {
                    let image = image.add(16 * u);
                    let (load, keep, out) = (&plan.load[at.clone()], &plan.keep[at.clone()], &plan.out[at]);
                    match v {
                        1 => kernel::<1>(&tile, image, load, keep, out),
                        2 => kernel::<2>(&tile, image, load, keep, out),
                        _ => kernel::<VECTORS>(&tile, image, load, keep, out),
                    }
                }
                u += v;
            }
        }
    }

    /// One block of [`MR`] output channels and where its operands start.
    struct Tile {
        k: usize,
        a: *const f32,
        bias: *const f32,
        offsets: *const usize,
        /// The block's rows that are output channels (the rest are padding).
        rows: usize,
        y: *mut f32,
        positions: usize,
    }

    /// `MR x V` vectors of accumulators through all `k` steps, then compressed to their
    /// kept lanes and stored.
    #[inline(always)]
    unsafe fn kernel<const V: usize>(t: &Tile, image: *const f32, load: &[u16], keep: &[u16], out: &[usize]) {
        // SAFETY (the whole body): the caller's contract; input loads are masked to the
        // wide extent and stores to the kept lanes.
        unsafe {
            let load: [__mmask16; V] = std::array::from_fn(|v| load[v]);
            let acc = contract::<V>(t, image, load);
            for (i, row) in acc.iter().enumerate() {
                if i == t.rows {
                    break;
                }
                let y = t.y.add(i * t.positions);
                for (v, &x) in row.iter().enumerate() {
                    let kept = _mm512_maskz_compress_ps(keep[v], x);
                    let n = keep[v].count_ones();
                    let mask = ((1u32 << n) - 1) as __mmask16;
                    _mm512_mask_storeu_ps(y.add(out[v]), mask, kept);
                }
            }
        }
    }

    /// The accumulators of one tile, from the bias through all `k` steps. A function of
    /// its own that returns them by value, so they stay in registers through the loop
    /// (stored through a runtime row count in the same function, they were kept in memory
    /// too, one store per multiply-add).
    #[inline(always)]
    unsafe fn contract<const V: usize>(t: &Tile, image: *const f32, load: [__mmask16; V]) -> [[__m512; V]; MR] {
        // SAFETY (the whole body): the caller's contract; input loads are masked to the
        // wide extent.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; MR];
            for (i, row) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*t.bias.add(i));
                for x in row.iter_mut() {
                    *x = b;
                }
            }
            let mut a = t.a;
            for r in 0..t.k {
                let base = image.add(*t.offsets.add(r));
                let bv: [__m512; V] = std::array::from_fn(|v| _mm512_maskz_loadu_ps(load[v], base.add(16 * v)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.add(i));
                    for (x, &bv) in row.iter_mut().zip(&bv) {
                        *x = _mm512_fmadd_ps(ai, bv, *x);
                    }
                }
                a = a.add(MR);
            }
            acc
        }
    }
}
