//! Batched matrix multiplication on the host with [`sgemm`], which takes arbitrary row
//! and column strides: transposed and broadcast operands need no copy.
//!
//! The fused form ([`matmul_fused`]) is the CPU twin of the GPU kernels' epilogue: the
//! output is first filled with the bias, the GEMM adds the product to it (`beta = 1`), and the
//! activation runs in place, so bias and activation cost one pass over the output instead
//! of two more tensors.

use super::alloc;
use super::gemm::{sgemm, Strided, Threads};
use crate::op::layout::Layout;
use crate::op::matmul::Activation;
pub use crate::op::matmul::BiasAxis;

/// `out[b] = a[b] x b[b]` for every batch index of `batch_shape`. `la` and `lb` are views
/// whose leading dimensions have been broadcast to `batch_shape` (stride 0 where
/// broadcast) and whose last two are `[m, k]` and `[k, n]`. The output is contiguous
/// `[batch.., m, n]`.
pub fn matmul(
    a: &[f32],
    la: &Layout,
    b: &[f32],
    lb: &Layout,
    batch_shape: &[usize],
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    matmul_fused(a, la, b, lb, batch_shape, m, k, n, None, Activation::None)
}

/// [`matmul`] followed by `activation(out + bias)`, the bias (`n` elements for
/// [`BiasAxis::Column`], `m` for [`BiasAxis::Row`]) shared by every batch entry.
pub fn matmul_fused(
    a: &[f32],
    la: &Layout,
    b: &[f32],
    lb: &Layout,
    batch_shape: &[usize],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<(&[f32], BiasAxis)>,
    activation: Activation,
) -> Vec<f32> {
    let batch: usize = batch_shape.iter().product();
    let mut out = alloc::zeroed::<f32>(batch * m * n, "matmul");
    if m == 0 || n == 0 {
        return out;
    }
    if let Some((bias, axis)) = bias {
        let want = if axis == BiasAxis::Column { n } else { m };
        assert_eq!(bias.len(), want, "matmul: a {axis:?} bias of {} elements for a [{m}, {n}] product", bias.len());
        for c in out.chunks_exact_mut(m * n) {
            for (i, row) in c.chunks_exact_mut(n).enumerate() {
                match axis {
                    BiasAxis::Column => row.copy_from_slice(bias),
                    BiasAxis::Row => row.fill(bias[i]),
                }
            }
        }
    }
    let r = la.rank();
    let (a_rs, a_cs) = (la.strides[r - 2] as isize, la.strides[r - 1] as isize);
    let (b_rs, b_cs) = (lb.strides[r - 2] as isize, lb.strides[r - 1] as isize);
    let batch_layout_a =
        Layout { shape: batch_shape.to_vec(), strides: la.strides[..r - 2].to_vec(), offset: la.offset };
    let batch_layout_b =
        Layout { shape: batch_shape.to_vec(), strides: lb.strides[..r - 2].to_vec(), offset: lb.offset };
    if k > 0 {
        for (bi, (oa, ob)) in batch_layout_a.storage_indices().zip(batch_layout_b.storage_indices()).enumerate() {
            let c = &mut out[bi * m * n..(bi + 1) * m * n];
            let lhs = Strided { data: a, offset: oa, row_stride: a_rs, col_stride: a_cs };
            let rhs = Strided { data: b, offset: ob, row_stride: b_rs, col_stride: b_cs };
            // With a bias, add to it; without, overwrite (the GEMM then never reads `c`).
            let beta = if bias.is_some() { 1.0 } else { 0.0 };
            sgemm((m, k, n), lhs, rhs, beta, c, n, Threads::Pool);
        }
    }
    if let Some(op) = activation.unary_op() {
        // The elementwise kernel's own formula, so the fused result equals the composed one.
        for v in &mut out {
            *v = crate::cpu::elementwise::unary_scalar(op, *v, 0.0, 0.0);
        }
    }
    out
}
