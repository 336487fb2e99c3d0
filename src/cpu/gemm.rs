//! The one single-precision GEMM every CPU kernel calls: `C = A B + beta C` on strided
//! operands, computed by the `gemm-f32` crate (the single-precision half of the `gemm`
//! family: depending on it alone spares the build the f64 and complex kernels).
//!
//! `gemm-f32` picks its micro-kernel at run time from the CPU's features (AVX-512, AVX2 + FMA,
//! SSE, NEON, scalar) and blocks for the caches; its strided operands let transposed and
//! broadcast views be multiplied without a copy. It parallelises over blocks of the output
//! on rayon's global pool, the same pool as the rest of the CPU backend, so a GEMM and the
//! elementwise kernels never compete for the cores.
//!
//! Every output element is one dot product over `K`, accumulated in the same order however
//! the output is split between threads, so results are the same on any thread count (the
//! CPU backend's determinism, `tests/cpu_threads.rs`).

use gemm_common::Parallelism;

/// Below this many multiply-adds (`m * k * n`) a product runs on the calling thread: a
/// 64x64x64 product takes about 10 µs on one core, where waking the pool costs a few.
const MIN_PARALLEL_MACS: usize = 1 << 18;

/// Whether a GEMM may split its output across rayon's pool. A GEMM called from inside a
/// rayon task (one image of a convolution, say) passes [`Threads::Caller`]: its caller has
/// already spread the work across the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// Split across rayon's global pool when the product is large enough.
    Pool,
    /// Run on the calling thread only.
    Caller,
}

/// A matrix operand: its first element's index in `data`, and its row and column strides in
/// elements (either may be zero for a broadcast operand).
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub row_stride: isize,
    pub col_stride: isize,
}

impl Strided<'_> {
    /// Panics unless every element of a `rows x cols` matrix lies inside `data`.
    fn check(&self, rows: usize, cols: usize, name: &str) {
        let reach = |n: usize, s: isize| (n.saturating_sub(1) as isize) * s;
        let (lo, hi) = [reach(rows, self.row_stride), reach(cols, self.col_stride)]
            .iter()
            .fold((0isize, 0isize), |(lo, hi), &r| (lo + r.min(0), hi + r.max(0)));
        let (first, last) = (self.offset as isize + lo, self.offset as isize + hi);
        assert!(
            first >= 0 && (last as usize) < self.data.len(),
            "gemm: {name} of {rows}x{cols} with strides ({}, {}) from element {} reaches outside its {} elements",
            self.row_stride,
            self.col_stride,
            self.offset,
            self.data.len()
        );
    }
}

/// `c = a b + beta c` for `a` of `m x k`, `b` of `k x n` and `c` of `m x n` with rows
/// `rsc` apart and unit column stride. With `beta == 0` the old contents of `c` are never
/// read (NaN in `c` does not leak into the result).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    (m, k, n): (usize, usize, usize),
    a: Strided,
    b: Strided,
    beta: f32,
    c: &mut [f32],
    rsc: usize,
    threads: Threads,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * rsc + n, "gemm: output of {} elements for {m}x{n} with row stride {rsc}", c.len());
    if k == 0 {
        // An empty sum: C keeps beta times its value.
        for row in c.chunks_mut(rsc.max(1)).take(m) {
            row[..n].iter_mut().for_each(|v| *v = if beta == 0.0 { 0.0 } else { *v * beta });
        }
        return;
    }
    a.check(m, k, "lhs");
    b.check(k, n, "rhs");
    let parallelism = match threads {
        Threads::Pool if m.saturating_mul(k).saturating_mul(n) >= MIN_PARALLEL_MACS => {
            match rayon::current_num_threads() {
                0 | 1 => Parallelism::None,
                t => Parallelism::Rayon(t),
            }
        }
        _ => Parallelism::None,
    };
    // SAFETY: the checks above keep every element gemm reads inside `a.data` and `b.data`
    // and every element it writes inside `c`; `c` does not alias the operands (it is a
    // unique borrow).
    unsafe {
        gemm_f32_oriented(
            (m, n, k),
            (c.as_mut_ptr(), 1, rsc as isize),
            beta != 0.0,
            (a.data.as_ptr().add(a.offset), a.col_stride, a.row_stride),
            (b.data.as_ptr().add(b.offset), b.col_stride, b.row_stride),
            // gemm computes dst = alpha * dst + beta * lhs * rhs.
            (beta, 1.0),
            parallelism,
        );
    }
}

/// A matrix for [`gemm_f32_oriented`]: its first element, column stride and row stride.
type Operand<P> = (P, isize, isize);

/// `dst = alpha dst + beta lhs rhs` by gemm-f32, with the operands arranged first as the
/// umbrella `gemm` crate arranges them before it dispatches to gemm-f32. Its micro-kernels
/// are written for a column-major destination, so a destination whose columns are closer
/// together than its rows (every row-major C here) is computed as the transposed product
/// `dst^T = rhs^T lhs^T`, which writes the same elements; called without that, gemm-f32
/// multiplies row-major operands at half the speed (matmul 2048 in 104 ms instead of 53 ms
/// on AVX-512). Negative strides are made positive by starting from the other end.
///
/// # Safety
///
/// As gemm-f32's: every element the strides reach lies inside its operand's allocation,
/// and `dst` aliases neither operand.
unsafe fn gemm_f32_oriented(
    (m, n, k): (usize, usize, usize),
    dst: Operand<*mut f32>,
    read_dst: bool,
    lhs: Operand<*const f32>,
    rhs: Operand<*const f32>,
    (alpha, beta): (f32, f32),
    parallelism: Parallelism,
) {
    let (dst, dst_cs, dst_rs) = dst;
    let (
        (m, n),
        (mut dst, mut dst_cs, mut dst_rs),
        (mut lhs, mut lhs_cs, mut lhs_rs),
        (mut rhs, mut rhs_cs, mut rhs_rs),
    ) = if dst_cs.abs() < dst_rs.abs() {
        // Transposed: rows and columns of every operand swap, and lhs and rhs trade places.
        ((n, m), (dst, dst_rs, dst_cs), (rhs.0, rhs.2, rhs.1), (lhs.0, lhs.2, lhs.1))
    } else {
        ((m, n), (dst, dst_cs, dst_rs), lhs, rhs)
    };
    if dst_rs < 0 && m > 0 {
        dst = dst.wrapping_offset((m - 1) as isize * dst_rs);
        dst_rs = -dst_rs;
        lhs = lhs.wrapping_offset((m - 1) as isize * lhs_rs);
        lhs_rs = -lhs_rs;
    }
    if dst_cs < 0 && n > 0 {
        dst = dst.wrapping_offset((n - 1) as isize * dst_cs);
        dst_cs = -dst_cs;
        rhs = rhs.wrapping_offset((n - 1) as isize * rhs_cs);
        rhs_cs = -rhs_cs;
    }
    if lhs_cs < 0 && k > 0 {
        lhs = lhs.wrapping_offset((k - 1) as isize * lhs_cs);
        lhs_cs = -lhs_cs;
        rhs = rhs.wrapping_offset((k - 1) as isize * rhs_rs);
        rhs_rs = -rhs_rs;
    }
    // SAFETY: the caller's contract; the rearrangement above addresses the same elements.
    unsafe {
        gemm_f32::gemm::f32::get_gemm_fn()(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            read_dst,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            alpha,
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook triple loop.
    fn reference(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum::<f64>() as f32;
            }
        }
        c
    }

    fn row_major(data: &[f32], cols: usize) -> Strided<'_> {
        Strided { data, offset: 0, row_stride: cols as isize, col_stride: 1 }
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0 - 0.5)
            .collect()
    }

    #[test]
    fn matches_the_triple_loop_on_odd_shapes_and_beta() {
        for &(m, k, n) in &[(1, 1, 1), (7, 13, 5), (65, 33, 97), (128, 257, 64)] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let want = reference(m, k, n, &a, &b);
            let mut c = vec![f32::NAN; m * n];
            sgemm((m, k, n), row_major(&a, k), row_major(&b, n), 0.0, &mut c, n, Threads::Pool);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{k}x{n}: {x} vs {y}");
            }
            // beta = 1 adds onto what is there.
            let mut c = vec![1.0f32; m * n];
            sgemm((m, k, n), row_major(&a, k), row_major(&b, n), 1.0, &mut c, n, Threads::Caller);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - (y + 1.0)).abs() <= 1e-4 * (2.0 + y.abs()), "{m}x{k}x{n} beta 1: {x} vs {}", y + 1.0);
            }
        }
    }

    #[test]
    fn reads_transposed_operands_through_strides() {
        let (m, k, n) = (5, 7, 3);
        let (a, b) = (values(m * k, 3), values(k * n, 4));
        // a^T stored as [k, m] and b^T as [n, k], read back through swapped strides.
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut c = vec![0.0; m * n];
        let lhs = Strided { data: &at, offset: 0, row_stride: 1, col_stride: m as isize };
        let rhs = Strided { data: &bt, offset: 0, row_stride: 1, col_stride: k as isize };
        sgemm((m, k, n), lhs, rhs, 0.0, &mut c, n, Threads::Caller);
        for (x, y) in c.iter().zip(reference(m, k, n, &a, &b)) {
            assert!((x - y).abs() <= 1e-5, "{x} vs {y}");
        }
    }

    #[test]
    #[should_panic(expected = "reaches outside")]
    fn an_operand_too_short_for_its_shape_panics() {
        // A 2x2 matrix with rows 2 apart needs 4 elements.
        let a = vec![0.0; 3];
        let mut c = vec![0.0; 4];
        let op = Strided { data: &a, offset: 0, row_stride: 2, col_stride: 1 };
        sgemm((2, 2, 2), op, op, 0.0, &mut c, 2, Threads::Caller);
    }
}
