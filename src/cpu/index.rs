//! index_select and gather along one axis.

use super::alloc;
use crate::op::layout::Layout;

/// Reads `src` (view `ls`) at the coordinates of output element `coords` with the axis
/// coordinate replaced by `looked_up`. Panics with the op name on an out-of-range index.
fn read(op: &str, src: &[f32], ls: &Layout, coords: &[usize], axis: usize, looked_up: i32) -> f32 {
    let len = ls.shape[axis];
    assert!(
        looked_up >= 0 && (looked_up as usize) < len,
        "{op}: index {looked_up} is out of range for axis {axis} of size {len}"
    );
    let mut off = ls.offset;
    for (d, &c) in coords.iter().enumerate() {
        let c = if d == axis { looked_up as usize } else { c };
        off += c * ls.strides[d];
    }
    src[off]
}

/// Iterates the coordinates of a shape in row-major order.
fn for_each_coord(shape: &[usize], mut f: impl FnMut(usize, &[usize])) {
    let n: usize = shape.iter().product();
    let mut coords = vec![0; shape.len()];
    for i in 0..n {
        f(i, &coords);
        for d in (0..shape.len()).rev() {
            coords[d] += 1;
            if coords[d] < shape[d] {
                break;
            }
            coords[d] = 0;
        }
    }
}

/// Output of shape `out_shape` (src's shape with `indices.len()` on `axis`).
pub fn index_select(src: &[f32], ls: &Layout, axis: usize, indices: &[i32], out_shape: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(out_shape.iter().product());
    for_each_coord(out_shape, |_, c| out.push(read("index_select", src, ls, c, axis, indices[c[axis]])));
    out
}

/// Output of the index's shape; `index` is contiguous.
pub fn gather(src: &[f32], ls: &Layout, axis: usize, index: &[i32], out_shape: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(out_shape.iter().product());
    for_each_coord(out_shape, |i, c| out.push(read("gather", src, ls, c, axis, index[i])));
    out
}

/// `out` of shape `out_shape`, zero, plus each slice `l` of `src` (view `ls`) added at
/// `indices[l]` along `axis`.
pub fn index_add(src: &[f32], ls: &Layout, axis: usize, indices: &[i32], out_shape: &[usize]) -> Vec<f32> {
    let mut out = alloc::zeroed::<f32>(out_shape.iter().product(), "index");
    let out_strides = Layout::contiguous(out_shape).strides;
    for_each_coord(&ls.shape, |_, c| {
        let target = indices[c[axis]];
        assert!(
            target >= 0 && (target as usize) < out_shape[axis],
            "index_add: index {target} is out of range for axis {axis} of size {}",
            out_shape[axis]
        );
        let src_off = ls.offset + c.iter().zip(&ls.strides).map(|(a, b)| a * b).sum::<usize>();
        let out_off: usize =
            c.iter().enumerate().map(|(d, &x)| if d == axis { target as usize } else { x } * out_strides[d]).sum();
        out[out_off] += src[src_off];
    });
    out
}

/// `out` of shape `out_shape`, zero, plus each element of `src` (view `ls`) added where
/// `index` (contiguous, `src`'s shape) points along `axis`.
pub fn scatter_add(src: &[f32], ls: &Layout, axis: usize, index: &[i32], out_shape: &[usize]) -> Vec<f32> {
    let mut out = alloc::zeroed::<f32>(out_shape.iter().product(), "index");
    let out_strides = Layout::contiguous(out_shape).strides;
    for_each_coord(&ls.shape, |i, c| {
        let target = index[i];
        assert!(
            target >= 0 && (target as usize) < out_shape[axis],
            "scatter_add: index {target} is out of range for axis {axis} of size {}",
            out_shape[axis]
        );
        let src_off = ls.offset + c.iter().zip(&ls.strides).map(|(a, b)| a * b).sum::<usize>();
        let out_off: usize =
            c.iter().enumerate().map(|(d, &x)| if d == axis { target as usize } else { x } * out_strides[d]).sum();
        out[out_off] += src[src_off];
    });
    out
}
