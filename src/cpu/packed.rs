//! A register-blocked GEMM for AVX-512 on a packed right-hand operand, for the products a
//! general GEMM handles poorly because they are small and repeated: one image of a
//! convolution (`[out, C kh kw] x [C kh kw, L]`, a few hundred thousand multiply-adds) and
//! one step of a recurrent layer (`[B, H] x [H, 4H]`). A general GEMM packs both operands
//! again on every call and picks its tiles for large matrices; here the right-hand operand
//! is packed once (the convolution's columns are unfolded, or for stride 1 copied as
//! shifted slices of the input planes, straight into the packed layout; an LSTM's `W_hh^T`
//! is packed once per sequence), the left-hand operand is read where it
//! lies, and the accumulators start from the bias, so no pass over the output precedes the
//! product.
//!
//! # Layout
//!
//! `B` (`k x n`) is cut into panels of [`NR`] columns; panel `p` holds columns
//! `p * NR..(p + 1) * NR` as `k` rows of `NR` contiguous values (`panel[r * NR + j]` is
//! `B[r][p * NR + j]`), so the kernel reads one row of a panel as four 16-lane vectors.
//! Columns past `n` in the last panel are never stored to `C` (masked stores), so their
//! contents do not matter.
//!
//! # Arithmetic
//!
//! Every element of `C` is its start value (zero, a bias or `C` itself) followed by one
//! fused multiply-add per step of `k`, in increasing `k`: the same operations whatever the
//! tile, the thread or the thread count, so results are bit-identical on any number of
//! threads (the CPU backend's determinism, `tests/cpu_threads.rs`).
//!
//! The kernel needs AVX-512F ([`available`]); callers keep a portable path for other CPUs.

use std::mem::MaybeUninit;

/// Columns of one packed panel of `B`: four 16-lane vectors.
pub const NR: usize = 64;

/// Rows of `C` one call of the micro-kernel computes: 6 rows of 4 vectors are 24 of the 32
/// vector registers, leaving room for the 4 vectors of `B` and a broadcast of `A`.
const MR: usize = 6;

/// The tiles of rows the kernels cut `m` rows into: `ceil(m / MR)` tiles whose sizes
/// differ by at most one, as `(first row, rows)`. A tile of one or two rows reads as much
/// of the packed operand per step as a full one for a third of the multiply-adds (the
/// second-level cache's bandwidth, not the arithmetic, then bounds it), so 32 rows go as
/// 6, 6, 5, 5, 5, 5 rather than five of 6 and one of 2. Each element of `C` is computed the
/// same way whatever tile it falls in: the tiling does not change the results.
pub fn row_tiles(m: usize, mr: usize) -> impl Iterator<Item = (usize, usize)> {
    let tiles = m.div_ceil(mr.max(1));
    let (base, extra) = (m.checked_div(tiles).unwrap_or(0), m.checked_rem(tiles).unwrap_or(0));
    (0..tiles).map(move |t| (t * base + t.min(extra), base + usize::from(t < extra)))
}

/// Whether the CPU runs the kernels of this module (AVX-512F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Elements of `B` (`k x n`) packed into panels.
pub fn packed_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * k * NR
}

/// Index in the packed layout of `B[r][j]` for a `B` of `k` rows.
#[inline(always)]
pub fn packed_index(k: usize, r: usize, j: usize) -> usize {
    (j / NR) * k * NR + r * NR + j % NR
}

/// Packs `B` (`k x n`, element `(r, j)` at `b[r * rs + j * cs]`) into `dst`
/// ([`packed_len`] elements); the tail columns of the last panel are zeroed. Rows of unit
/// column stride are copied by masked vector moves where the CPU has AVX-512F (a packed
/// row is at most 64 floats, where a call to `memcpy` costs more than the copy).
pub fn pack_b(k: usize, n: usize, b: &[f32], strides: (usize, usize), dst: &mut [f32]) {
    assert!(dst.len() >= packed_len(k, n), "pack_b: {} elements for a {k}x{n} operand", dst.len());
    if strides.1 == 1 && available() {
        with_short_copies(|copier| pack_panels(k, n, b, strides, dst, |d, s| copier.copy(d, s)));
    } else {
        pack_panels(k, n, b, strides, dst, |d, s| d.copy_from_slice(s));
    }
}

/// [`pack_b`]'s loop, with `copy` for rows of unit column stride; always inlined, so that
/// in [`with_short_copies`] the copies compile to inline vector moves.
#[inline(always)]
fn pack_panels(
    k: usize,
    n: usize,
    b: &[f32],
    (rs, cs): (usize, usize),
    dst: &mut [f32],
    mut copy: impl FnMut(&mut [f32], &[f32]),
) {
    for p in 0..n.div_ceil(NR) {
        let cols = (n - p * NR).min(NR);
        let panel = &mut dst[p * k * NR..(p + 1) * k * NR];
        for (r, row) in panel.chunks_exact_mut(NR).enumerate() {
            let first = r * rs + p * NR * cs;
            if cs == 1 {
                copy(&mut row[..cols], &b[first..first + cols]);
            } else {
                for (j, d) in row[..cols].iter_mut().enumerate() {
                    *d = b[first + j * cs];
                }
            }
            row[cols..].fill(0.0);
        }
    }
}

/// Runs `f` compiled for AVX-512F, handing it [`CopyShort`]: a copy of at most [`NR`]
/// floats by masked vector moves. The runs a convolution's unfold copies are a few dozen
/// floats (a row of an 11x11 output), where a call to `memcpy` (or to any function not
/// inlined into the loop) costs more than the copy.
///
/// # Panics
///
/// Unless the CPU has AVX-512F ([`available`]).
#[inline(always)]
pub fn with_short_copies<R>(f: impl FnOnce(CopyShort) -> R) -> R {
    assert!(available(), "packed: the CPU has no AVX-512F");
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn build<R>(f: impl FnOnce(CopyShort) -> R) -> R {
            f(CopyShort(()))
        }
        // SAFETY: the CPU supports AVX-512F (asserted above).
        unsafe { build(f) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    f(CopyShort(()))
}

/// The right to copy short runs of floats with AVX-512 moves, given out by
/// [`with_short_copies`] once the CPU's support is checked.
#[derive(Clone, Copy, Debug)]
pub struct CopyShort(());

impl CopyShort {
    /// Copies `src` into `dst` (equal lengths, at most [`NR`]).
    #[inline(always)]
    pub fn copy(self, dst: &mut [f32], src: &[f32]) {
        assert!(dst.len() == src.len() && src.len() <= NR, "packed: a short copy of {} into {}", src.len(), dst.len());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F is present (this value exists only inside `with_short_copies`);
        // the two slices have the length copied and cannot overlap (one is a unique borrow).
        unsafe {
            avx512::copy_short(src.as_ptr(), dst.as_mut_ptr(), src.len())
        }
        #[cfg(not(target_arch = "x86_64"))]
        dst.copy_from_slice(src);
    }

    /// [`CopyShort::copy`] into elements that may be uninitialised.
    #[inline(always)]
    pub fn copy_uninit(self, dst: &mut [MaybeUninit<f32>], src: &[f32]) {
        assert!(dst.len() == src.len() && src.len() <= NR, "packed: a short copy of {} into {}", src.len(), dst.len());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as `copy`; the copy only writes `dst`.
        unsafe {
            avx512::copy_short(src.as_ptr(), dst.as_mut_ptr().cast(), src.len())
        }
        #[cfg(not(target_arch = "x86_64"))]
        for (d, &v) in dst.iter_mut().zip(src) {
            d.write(v);
        }
    }
}

/// What the accumulators of `C` start from.
#[derive(Clone, Copy, Debug)]
pub enum Start<'a> {
    /// Zero: `C = A B`.
    Zero,
    /// One value per row of `C` (a convolution's bias, one per output channel): `C = bias 1^T + A B`.
    RowBias(&'a [f32]),
    /// `C`'s own contents: `C += A B`.
    Accumulate,
}

/// `C = start + A B` for `A` `m x k` (element `(i, r)` at `a[i * lda + r]`), `B` packed
/// (`k x n`, [`pack_b`]) and `C` `m x n` with rows `rsc` apart.
///
/// # Panics
///
/// Unless the CPU has AVX-512F ([`available`]) and every operand holds its shape.
pub fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    lda: usize,
    b: &[f32],
    start: Start,
    c: &mut [f32],
    rsc: usize,
) {
    check((m, k, n), a, lda, b, start, c.len(), rsc);
    // SAFETY: checked above; `c` is a unique borrow, so it aliases no operand.
    unsafe { run((m, k, n), a, lda, b, start, c.as_mut_ptr(), rsc) }
}

/// [`gemm`] into an output that may be uninitialised: every element of the `m x n` block
/// is written, none is read. `start` must not be [`Start::Accumulate`].
pub fn gemm_uninit(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    lda: usize,
    b: &[f32],
    start: Start,
    c: &mut [MaybeUninit<f32>],
    rsc: usize,
) {
    assert!(!matches!(start, Start::Accumulate), "packed gemm: an uninitialised output cannot be accumulated onto");
    check((m, k, n), a, lda, b, start, c.len(), rsc);
    // SAFETY: checked above; the kernel only writes `c` without `Start::Accumulate`.
    unsafe { run((m, k, n), a, lda, b, start, c.as_mut_ptr().cast(), rsc) }
}

/// `C^T = bias 1^T + A B` for an `A` gathered from an image: element `(i, r)` of `A` is
/// `image[row_starts[i] + step_offsets[r]]`, `B` is packed (`k x n`, [`pack_b`]), and
/// element `(i, j)` of the product is written to `ct[j * rsc + i]`.
///
/// This is a convolution computed position by position: row `i` is output position `i`
/// (where its window starts in the padded input planes), step `r` is the tap `(c, ki, kj)`
/// (its offset from the window's start), `B` the transposed weights and `bias` one value
/// per column (output channel), and the transposed store writes the `[out, positions]`
/// output directly. Any number of positions fills the tiles with no padding, where
/// [`gemm`] on the unfolded columns pads them to 64-wide panels.
///
/// # Panics
///
/// Unless the CPU has AVX-512F ([`available`]) and every operand holds its shape.
#[allow(clippy::too_many_arguments)]
pub fn gemm_gathered_transposed(
    (m, k, n): (usize, usize, usize),
    image: &[f32],
    row_starts: &[usize],
    step_offsets: &[usize],
    b: &[f32],
    bias: Option<&[f32]>,
    ct: &mut [MaybeUninit<f32>],
    rsc: usize,
) {
    assert!(available(), "packed gemm: the CPU has no AVX-512F");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        row_starts.len() >= m && step_offsets.len() >= k,
        "packed gemm: {} row starts and {} step offsets for {m}x{k}",
        row_starts.len(),
        step_offsets.len()
    );
    let furthest =
        row_starts[..m].iter().max().copied().unwrap_or(0) + step_offsets[..k].iter().max().copied().unwrap_or(0);
    assert!(
        k == 0 || furthest < image.len(),
        "packed gemm: a gathered lhs reads element {furthest} of {}",
        image.len()
    );
    assert!(b.len() >= packed_len(k, n), "packed gemm: packed rhs of {} elements for {k}x{n}", b.len());
    assert!(ct.len() >= (n - 1) * rsc + m, "packed gemm: transposed output of {} elements for {m}x{n}", ct.len());
    assert!(rsc * 16 <= i32::MAX as usize, "packed gemm: a transposed output with rows {rsc} apart");
    if let Some(bias) = bias {
        assert!(bias.len() >= n, "packed gemm: {} biases for {n} columns", bias.len());
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: checked above; `ct` is a unique borrow, so it aliases no operand, and only
    // its elements `(i, j)` are written.
    unsafe {
        avx512::gemm_gathered((m, k, n), image.as_ptr(), row_starts, step_offsets, b, bias, ct.as_mut_ptr().cast(), rsc)
    }
}

/// Panics unless the CPU runs the kernel and every operand holds its shape.
fn check((m, k, n): (usize, usize, usize), a: &[f32], lda: usize, b: &[f32], start: Start, c_len: usize, rsc: usize) {
    assert!(available(), "packed gemm: the CPU has no AVX-512F");
    if m == 0 || n == 0 {
        return;
    }
    assert!(k == 0 || a.len() >= (m - 1) * lda + k, "packed gemm: lhs of {} elements for {m}x{k}", a.len());
    assert!(b.len() >= packed_len(k, n), "packed gemm: packed rhs of {} elements for {k}x{n}", b.len());
    assert!(c_len >= (m - 1) * rsc + n, "packed gemm: output of {c_len} elements for {m}x{n}");
    if let Start::RowBias(bias) = start {
        assert!(bias.len() >= m, "packed gemm: {} biases for {m} rows", bias.len());
    }
}

/// # Safety
///
/// [`check`] passed, and `c` is valid for writes of the `m x n` block (and reads with
/// [`Start::Accumulate`]) and aliases no operand.
unsafe fn run(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    lda: usize,
    b: &[f32],
    start: Start,
    c: *mut f32,
    rsc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract; AVX-512F is present (checked).
    unsafe {
        avx512::gemm((m, k, n), a, lda, b, start, c, rsc)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("packed gemm: checked for AVX-512F")
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Start, MR, NR};
    use std::arch::x86_64::*;

    /// [`super::gemm`] after its checks: panel by panel of `B`, and within a panel `MR`
    /// rows of `C` at a time, so the panel (at most `k * NR` values) is reused from cache by
    /// every row block.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemm(
        (m, k, n): (usize, usize, usize),
        a: &[f32],
        lda: usize,
        b: &[f32],
        start: Start,
        c: *mut f32,
        rsc: usize,
    ) {
        for p in 0..n.div_ceil(NR) {
            let (vectors, mask) = panel_lanes(n, p);
            let panel = b[p * k * NR..].as_ptr();
            for (i, rows) in super::row_tiles(m, MR) {
                let tile = Tile {
                    k,
                    a: a[i * lda..].as_ptr(),
                    lda,
                    b: panel,
                    // SAFETY: inside the output block (the caller's contract).
                    c: unsafe { c.add(i * rsc + p * NR) },
                    rsc,
                    mask,
                    bias: match start {
                        Start::RowBias(bias) => Some(bias[i..].as_ptr()),
                        _ => None,
                    },
                    accumulate: matches!(start, Start::Accumulate),
                };
                // SAFETY: the tile's rows and columns lie inside the operands (the caller's
                // checks), and AVX-512F is enabled here.
                unsafe { dispatch(rows, vectors, &tile) };
            }
        }
    }

    /// The vectors of panel `p` of an `n`-column `B` that hold columns, and the lanes of
    /// the last of them that belong to `C`.
    #[inline(always)]
    fn panel_lanes(n: usize, p: usize) -> (usize, __mmask16) {
        let cols = (n - p * NR).min(NR);
        let vectors = cols.div_ceil(16);
        let tail = cols - 16 * (vectors - 1);
        (vectors, if tail == 16 { 0xffff } else { (1u16 << tail) - 1 })
    }

    /// [`super::gemm_gathered_transposed`] after its checks: panel by panel of `B`, and
    /// within a panel `MR` rows (output positions) at a time.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn gemm_gathered(
        (m, k, n): (usize, usize, usize),
        image: *const f32,
        row_starts: &[usize],
        step_offsets: &[usize],
        b: &[f32],
        bias: Option<&[f32]>,
        ct: *mut f32,
        rsc: usize,
    ) {
        for p in 0..n.div_ceil(NR) {
            let (vectors, mask) = panel_lanes(n, p);
            for (i, rows) in super::row_tiles(m, MR) {
                // SAFETY (the pointers): inside the operands (the caller's checks); rows past
                // `rows` repeat the last one and are never stored.
                let tile = GatheredTile {
                    k,
                    starts: std::array::from_fn(|x| unsafe { image.add(row_starts[i + x.min(rows - 1)]) }),
                    steps: step_offsets.as_ptr(),
                    b: b[p * k * NR..].as_ptr(),
                    ct: unsafe { ct.add(p * NR * rsc + i) },
                    rsc,
                    mask,
                    bias: bias.map(|bias| unsafe { bias.as_ptr().add(p * NR) }),
                };
                macro_rules! by_vectors {
                    ($r:literal) => {
                        match vectors {
                            1 => gathered_kernel::<$r, 1>(&tile),
                            2 => gathered_kernel::<$r, 2>(&tile),
                            3 => gathered_kernel::<$r, 3>(&tile),
                            _ => gathered_kernel::<$r, 4>(&tile),
                        }
                    };
                }
                // SAFETY: the tile lies inside the operands (the caller's checks).
                unsafe {
                    match rows {
                        1 => by_vectors!(1),
                        2 => by_vectors!(2),
                        3 => by_vectors!(3),
                        4 => by_vectors!(4),
                        5 => by_vectors!(5),
                        _ => by_vectors!(6),
                    }
                }
            }
        }
    }

    /// `MR` rows of a gathered `A`, a panel of `B` and where the transposed tile goes.
    struct GatheredTile {
        k: usize,
        starts: [*const f32; MR],
        steps: *const usize,
        b: *const f32,
        ct: *mut f32,
        rsc: usize,
        mask: __mmask16,
        bias: Option<*const f32>,
    }

    /// The gathered micro-kernel: `R` rows of `V` vectors held in registers through all of
    /// `k`, each step broadcasting `R` values read at one offset from the rows' starts,
    /// then scattered into the transposed output.
    #[inline(always)]
    unsafe fn gathered_kernel<const R: usize, const V: usize>(t: &GatheredTile) {
        // SAFETY (the whole body): every pointer stays inside the tile the caller checked;
        // the last vector of a row is loaded and stored under the tail mask.
        unsafe {
            let lane_mask = |v: usize| if v + 1 == V { t.mask } else { 0xffff };
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            if let Some(bias) = t.bias {
                for row in acc.iter_mut() {
                    for (v, x) in row.iter_mut().enumerate() {
                        *x = _mm512_maskz_loadu_ps(lane_mask(v), bias.add(16 * v));
                    }
                }
            }
            let mut b = t.b;
            for r in 0..t.k {
                let offset = *t.steps.add(r);
                let bv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(b.add(16 * v)));
                for (row, start) in acc.iter_mut().zip(&t.starts) {
                    let ai = _mm512_set1_ps(*start.add(offset));
                    for (x, &bv) in row.iter_mut().zip(&bv) {
                        *x = _mm512_fmadd_ps(ai, bv, *x);
                    }
                }
                b = b.add(NR);
            }
            // Lane `l` of vector `v` of row `i` is element `(i, 16 v + l)`, at
            // `ct[(16 v + l) * rsc + i]`.
            let lanes = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32(t.rsc as i32),
            );
            for (i, row) in acc.iter().enumerate() {
                for (v, &x) in row.iter().enumerate() {
                    _mm512_mask_i32scatter_ps::<4>(t.ct.add(16 * v * t.rsc + i), lane_mask(v), lanes, x);
                }
            }
        }
    }

    /// [`super::CopyShort::copy`], always inlined, for callers compiled for AVX-512F.
    #[inline(always)]
    pub(crate) unsafe fn copy_short(src: *const f32, dst: *mut f32, len: usize) {
        let mut done = 0;
        while done < len {
            let lanes = (len - done).min(16);
            let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
            // SAFETY: the masked lanes lie inside both ranges (the caller's contract).
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, src.add(done));
                _mm512_mask_storeu_ps(dst.add(done), mask, v);
            }
            done += lanes;
        }
    }

    /// One `rows x (16 * vectors)` block of `C` and where its operands start.
    struct Tile {
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        rsc: usize,
        /// The lanes of the last vector of each row that are stored.
        mask: __mmask16,
        bias: Option<*const f32>,
        accumulate: bool,
    }

    /// Calls the micro-kernel compiled for `rows` (1..=MR) and `vectors` (1..=4).
    #[target_feature(enable = "avx512f")]
    unsafe fn dispatch(rows: usize, vectors: usize, t: &Tile) {
        macro_rules! by_vectors {
            ($r:literal) => {
                match vectors {
                    1 => kernel::<$r, 1>(t),
                    2 => kernel::<$r, 2>(t),
                    3 => kernel::<$r, 3>(t),
                    _ => kernel::<$r, 4>(t),
                }
            };
        }
        // SAFETY: forwarded from the caller.
        unsafe {
            match rows {
                1 => by_vectors!(1),
                2 => by_vectors!(2),
                3 => by_vectors!(3),
                4 => by_vectors!(4),
                5 => by_vectors!(5),
                _ => by_vectors!(6),
            }
        }
    }

    /// The micro-kernel: `R` rows of `V` vectors of `C` held in registers through all of `k`.
    #[inline(always)]
    unsafe fn kernel<const R: usize, const V: usize>(t: &Tile) {
        // SAFETY (the whole body): every pointer stays inside the tile the caller checked;
        // the last vector of a row is loaded and stored under the tail mask.
        unsafe {
            let lane_mask = |v: usize| if v + 1 == V { t.mask } else { 0xffff };
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            for (i, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    if t.accumulate {
                        *x = _mm512_maskz_loadu_ps(lane_mask(v), t.c.add(i * t.rsc + 16 * v));
                    } else if let Some(bias) = t.bias {
                        *x = _mm512_set1_ps(*bias.add(i));
                    }
                }
            }
            let mut a = t.a;
            let mut b = t.b;
            for _ in 0..t.k {
                let bv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(b.add(16 * v)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.add(i * t.lda));
                    for (x, &bv) in row.iter_mut().zip(&bv) {
                        *x = _mm512_fmadd_ps(ai, bv, *x);
                    }
                }
                a = a.add(1);
                b = b.add(NR);
            }
            for (i, row) in acc.iter().enumerate() {
                for (v, &x) in row.iter().enumerate() {
                    _mm512_mask_storeu_ps(t.c.add(i * t.rsc + 16 * v), lane_mask(v), x);
                }
            }
        }
    }
}

/// A buffer of `f32` whose first element is 64-byte aligned, for packed panels (the
/// packed panel rows then sit in whole cache lines: 64 floats are four lines).
pub struct AlignedBuf {
    data: Vec<f32>,
    offset: usize,
    len: usize,
}

impl AlignedBuf {
    /// `len` zeros.
    pub fn zeroed(len: usize, op: &str) -> AlignedBuf {
        let data = super::alloc::zeroed::<f32>(len + 16, op);
        let offset = data.as_ptr().align_offset(64).min(16);
        AlignedBuf { data, offset, len }
    }

    /// The `len` elements.
    pub fn as_slice(&self) -> &[f32] {
        &self.data[self.offset..self.offset + self.len]
    }

    /// The `len` elements, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data[self.offset..self.offset + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0 - 0.5)
            .collect()
    }

    /// Every tile shape (rows 1..=6 and beyond, 1..=4 vectors, masked tails) against f64
    /// sums, with each way of starting the accumulators.
    #[test]
    fn matches_f64_sums_on_shapes_that_cut_every_tile() {
        if !available() {
            return;
        }
        for &(m, k, n) in &[(1, 1, 1), (7, 13, 5), (13, 9, 121), (64, 288, 121), (5, 3, 200), (32, 9, 676), (6, 0, 17)]
        {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let bias = values(m, 3);
            let mut packed = AlignedBuf::zeroed(packed_len(k, n), "test");
            pack_b(k, n, &b, (n, 1), packed.as_mut_slice());
            let want = |i: usize, j: usize| (0..k).map(|r| a[i * k + r] as f64 * b[r * n + j] as f64).sum::<f64>();
            // C with rows n + 3 apart and a guard value between rows and after the end.
            let rsc = n + 3;
            for start in [Start::Zero, Start::RowBias(&bias), Start::Accumulate] {
                let mut c = vec![7.0f32; m * rsc + 5];
                gemm((m, k, n), &a, k, packed.as_slice(), start, &mut c, rsc);
                for i in 0..m {
                    for j in 0..rsc {
                        let got = c[i * rsc + j];
                        if j >= n {
                            assert_eq!(got, 7.0, "{m}x{k}x{n}: guard ({i}, {j}) overwritten");
                            continue;
                        }
                        let base = match start {
                            Start::Zero => 0.0,
                            Start::RowBias(bias) => bias[i] as f64,
                            Start::Accumulate => 7.0,
                        };
                        let y = base + want(i, j);
                        assert!(
                            (got as f64 - y).abs() <= 1e-4 * (1.0 + y.abs()),
                            "{m}x{k}x{n} {start:?}: ({i}, {j}) {got} vs {y}"
                        );
                    }
                }
                assert!(c[m * rsc..].iter().all(|&v| v == 7.0), "{m}x{k}x{n}: wrote past the end");
            }
        }
    }

    #[test]
    fn row_tiles_cover_the_rows_in_balanced_tiles() {
        assert_eq!(row_tiles(32, MR).map(|(_, r)| r).collect::<Vec<_>>(), [6, 6, 5, 5, 5, 5]);
        assert_eq!(row_tiles(0, MR).count(), 0);
        for m in 1..100 {
            let tiles: Vec<_> = row_tiles(m, MR).collect();
            assert_eq!(tiles.len(), m.div_ceil(MR), "{m} rows");
            let mut next = 0;
            for &(first, rows) in &tiles {
                assert_eq!(first, next, "{m} rows: tiles {tiles:?}");
                assert!((1..=MR).contains(&rows) && rows + 1 >= tiles[0].1, "{m} rows: tiles {tiles:?}");
                next += rows;
            }
            assert_eq!(next, m, "{m} rows: tiles {tiles:?}");
        }
    }

    #[test]
    fn packs_columns_into_panels_and_zeroes_the_tail() {
        let (k, n) = (3, 70);
        let b = values(k * n, 4);
        // Read through transposed strides: b^T stored as [n, k].
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut packed = vec![f32::NAN; packed_len(k, n)];
        pack_b(k, n, &bt, (1, k), &mut packed);
        for r in 0..k {
            for j in 0..2 * NR {
                let got = packed[packed_index(k, r, j)];
                if j < n {
                    assert_eq!(got, b[r * n + j]);
                } else {
                    assert_eq!(got, 0.0);
                }
            }
        }
    }
}
