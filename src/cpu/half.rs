//! Half precision on the host: the reference for `shaders/half.wgsl` and
//! `shaders/half_matmul.wgsl`. Conversions go through the `half` crate (round to nearest
//! even, infinity beyond the `f16` range), which the WGSL rounding reproduces bit for bit.

use super::alloc;
use half::f16;

use crate::op::layout::Layout;

/// The `f32` view `ls` of `src`, rounded to `f16`, contiguous.
pub fn to_half(src: &[f32], ls: &Layout) -> Vec<f16> {
    ls.storage_indices().map(|i| f16::from_f32(src[i])).collect()
}

/// The `f16` view `ls` of `src`, widened to `f32` (exact), contiguous.
pub fn to_float(src: &[f16], ls: &Layout) -> Vec<f32> {
    ls.storage_indices().map(|i| src[i].to_f32()).collect()
}

/// Copies the `f16` view `ls` of `src` into the view `ld` of `dst` (same shape).
pub fn copy_into(src: &[f16], ls: &Layout, dst: &mut [f16], ld: &Layout) {
    for (s, d) in ls.storage_indices().zip(ld.storage_indices()) {
        dst[d] = src[s];
    }
}

/// `out[b] = a[b] x b[b]` for `f16` views (leading dimensions broadcast to `batch_shape`,
/// last two `[m, k]` and `[k, n]`), into a contiguous `f32` `[batch.., m, n]`. Each output
/// element is summed in `f32` in the order `k = 0, 1, ..`, as the kernel does; the
/// products of two `f16` values are exact in `f32`, so only the additions round.
pub fn matmul(
    a: &[f16],
    la: &Layout,
    b: &[f16],
    lb: &Layout,
    batch_shape: &[usize],
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    let batch: usize = batch_shape.iter().product();
    let mut out = alloc::zeroed::<f32>(batch * m * n, "half_matmul");
    let r = la.rank();
    let matrix = |l: &Layout, offset: usize, rows: usize, cols: usize| Layout {
        shape: vec![rows, cols],
        strides: l.strides[r - 2..].to_vec(),
        offset,
    };
    let batch_a = Layout { shape: batch_shape.to_vec(), strides: la.strides[..r - 2].to_vec(), offset: la.offset };
    let batch_b = Layout { shape: batch_shape.to_vec(), strides: lb.strides[..r - 2].to_vec(), offset: lb.offset };
    for (bi, (oa, ob)) in batch_a.storage_indices().zip(batch_b.storage_indices()).enumerate() {
        // Widening is exact, so multiplying the widened rows is multiplying the f16 values.
        let a32 = to_float(a, &matrix(la, oa, m, k));
        let b32 = to_float(b, &matrix(lb, ob, k, n));
        let c = &mut out[bi * m * n..(bi + 1) * m * n];
        for i in 0..m {
            let c_row = &mut c[i * n..(i + 1) * n];
            for kk in 0..k {
                let aik = a32[i * k + kk];
                for (cj, &bj) in c_row.iter_mut().zip(&b32[kk * n..(kk + 1) * n]) {
                    *cj += aik * bj;
                }
            }
        }
    }
    out
}
