//! Batched matrix multiplication on the host with `matrixmultiply`'s sgemm, which takes
//! arbitrary row and column strides: transposed and broadcast operands need no copy.

use crate::tensor::Layout;

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
    let batch: usize = batch_shape.iter().product();
    let mut out = vec![0.0f32; batch * m * n];
    if m == 0 || n == 0 {
        return out;
    }
    let r = la.rank();
    let (a_rs, a_cs) = (la.strides[r - 2] as isize, la.strides[r - 1] as isize);
    let (b_rs, b_cs) = (lb.strides[r - 2] as isize, lb.strides[r - 1] as isize);
    let batch_layout_a =
        Layout { shape: batch_shape.to_vec(), strides: la.strides[..r - 2].to_vec(), offset: la.offset };
    let batch_layout_b =
        Layout { shape: batch_shape.to_vec(), strides: lb.strides[..r - 2].to_vec(), offset: lb.offset };
    for (bi, (oa, ob)) in batch_layout_a.storage_indices().zip(batch_layout_b.storage_indices()).enumerate() {
        let c = &mut out[bi * m * n..(bi + 1) * m * n];
        if k == 0 {
            continue;
        }
        // SAFETY: every index sgemm touches, offset + i*rs + j*cs for i < rows and j < cols,
        // lies inside the storage extent of the views, which the tensor layer guarantees.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr().add(oa),
                a_rs,
                a_cs,
                b.as_ptr().add(ob),
                b_rs,
                b_cs,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    }
    out
}
