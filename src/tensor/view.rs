//! Shape ops: views that share storage (reshape, permute, transpose, narrow, squeeze,
//! unsqueeze, broadcast_to) and the ops that gather elements into new storage
//! (contiguous, cat, stack, index_select, gather).

use super::layout::{broadcast_shapes, check_shape};
use super::Tensor;
use crate::autograd::GradOp;
use crate::device::Device;
use crate::dtype::DType;
use crate::op::IndexOp;
use crate::storage::Storage;

impl Tensor {
    /// The same elements, row-major and packed; `self` when it already is.
    pub fn contiguous(&self) -> Tensor {
        if self.is_contiguous() {
            return self.clone();
        }
        let storage = self.storage.copy(self.dtype, &self.layout, "contiguous");
        let out = Tensor::from_storage(storage, self.shape(), self.dtype);
        Tensor::record(out, GradOp::Reshape, &[self])
    }

    /// The elements of this view copied into new contiguous storage of their own, outside
    /// the autograd graph: a snapshot that later in-place writes to this view's storage
    /// (an optimizer's step on its state) do not change. Stays on the device.
    pub(crate) fn snapshot(&self) -> Tensor {
        Tensor::from_storage(self.storage.copy(self.dtype, &self.layout, "snapshot"), self.shape(), self.dtype)
    }

    /// Uninitialised contiguous storage; only for ops that write every element.
    pub(crate) fn empty_like_shape(shape: &[usize], dtype: DType, device: &Device, op: &str) -> Tensor {
        let n = check_shape(shape, op);
        Tensor::from_storage(Storage::empty(device, dtype, n, op), shape, dtype)
    }

    /// The same elements under a new shape. One dimension may be `-1` (inferred). A view
    /// when the strides allow it, else a copy. Panics when the element counts differ.
    pub fn reshape(&self, shape: &[isize]) -> Tensor {
        let shape = self.infer_shape(shape);
        let out = match self.layout.reshape(&shape) {
            Some(l) => self.with_layout(l),
            None => {
                let packed = self.detach().contiguous();
                let layout =
                    packed.layout.reshape(&shape).expect("a contiguous layout reshapes to any shape of its size");
                packed.with_layout(layout)
            }
        };
        Tensor::record(out, GradOp::Reshape, &[self])
    }

    fn infer_shape(&self, shape: &[isize]) -> Vec<usize> {
        let unknown = shape.iter().filter(|&&d| d == -1).count();
        assert!(unknown <= 1 && shape.iter().all(|&d| d >= -1), "reshape: bad target shape {shape:?}");
        let known_dims: Vec<usize> = shape.iter().filter(|&&d| d != -1).map(|&d| d as usize).collect();
        let known = check_shape(&known_dims, "reshape");
        let out: Vec<usize> = shape
            .iter()
            .map(|&d| if d == -1 { self.numel().checked_div(known).unwrap_or(0) } else { d as usize })
            .collect();
        assert_eq!(
            check_shape(&out, "reshape"),
            self.numel(),
            "reshape: cannot view a tensor of shape {:?} ({} elements) as {shape:?}",
            self.shape(),
            self.numel()
        );
        out
    }

    /// All dimensions from `start` on merged into one.
    pub fn flatten_from(&self, start: usize) -> Tensor {
        let mut shape: Vec<isize> = self.shape()[..start].iter().map(|&d| d as isize).collect();
        shape.push(-1);
        self.reshape(&shape)
    }

    /// Axes reordered: output axis `i` is input axis `perm[i]`. A view.
    pub fn permute(&self, perm: &[usize]) -> Tensor {
        let mut seen = vec![false; self.rank()];
        assert!(
            perm.len() == self.rank()
                && perm.iter().all(|&p| p < self.rank() && !std::mem::replace(&mut seen[p], true)),
            "permute: {perm:?} is not a permutation of the axes of a tensor of shape {:?}",
            self.shape()
        );
        Tensor::record(self.with_layout(self.layout.permute(perm)), GradOp::Permute(perm.to_vec()), &[self])
    }

    /// Two axes swapped. A view.
    pub fn transpose(&self, a: isize, b: isize) -> Tensor {
        let (a, b) = (self.axis(a, "transpose"), self.axis(b, "transpose"));
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// The last two axes swapped (a matrix transpose). A view.
    pub fn t(&self) -> Tensor {
        assert!(self.rank() >= 2, "t: needs at least 2 dimensions, got shape {:?}", self.shape());
        self.transpose(-2, -1)
    }

    /// Elements `start..start + len` along `axis`. A view.
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Tensor {
        let a = self.axis(axis, "narrow");
        let end = start.checked_add(len);
        assert!(
            end.is_some_and(|end| end <= self.shape()[a]),
            "narrow: {start}..{} is out of range for axis {a} of shape {:?}",
            end.map_or_else(|| format!("{start}+{len}"), |e| e.to_string()),
            self.shape()
        );
        Tensor::record(self.with_layout(self.layout.narrow(a, start, len)), GradOp::Narrow { axis: a, start }, &[self])
    }

    /// Python-style slice `start..end` along `axis` (same as `narrow(axis, start, end - start)`).
    pub fn slice(&self, axis: isize, range: std::ops::Range<usize>) -> Tensor {
        assert!(range.start <= range.end, "slice: empty-reversed range {range:?}");
        self.narrow(axis, range.start, range.end - range.start)
    }

    /// Removes axis `axis`, which must have size 1. A view.
    pub fn squeeze(&self, axis: isize) -> Tensor {
        let a = self.axis(axis, "squeeze");
        assert_eq!(self.shape()[a], 1, "squeeze: axis {a} of shape {:?} does not have size 1", self.shape());
        let mut l = self.layout.clone();
        l.shape.remove(a);
        l.strides.remove(a);
        Tensor::record(self.with_layout(l), GradOp::Reshape, &[self])
    }

    /// Inserts a size-1 axis at position `axis` (`0..=rank`). A view.
    pub fn unsqueeze(&self, axis: usize) -> Tensor {
        assert!(axis <= self.rank(), "unsqueeze: position {axis} is out of range for shape {:?}", self.shape());
        assert!(self.rank() < super::MAX_DIMS, "unsqueeze: shape {:?} already has the maximum rank", self.shape());
        let mut l = self.layout.clone();
        l.shape.insert(axis, 1);
        l.strides.insert(axis, 0);
        Tensor::record(self.with_layout(l), GradOp::Reshape, &[self])
    }

    /// This tensor seen with a larger shape by NumPy broadcasting (stride 0). A view.
    pub fn broadcast_to(&self, shape: &[usize]) -> Tensor {
        let ok = shape.len() >= self.rank() && broadcast_shapes(self.shape(), shape).as_deref() == Some(shape);
        assert!(ok, "broadcast_to: shape {:?} cannot be broadcast to {shape:?}", self.shape());
        check_shape(shape, "broadcast_to");
        Tensor::record(self.with_layout(self.layout.broadcast_to(shape)), GradOp::BroadcastTo, &[self])
    }

    /// Tensors joined along `axis`; all shapes must agree elsewhere.
    pub fn cat(tensors: &[Tensor], axis: isize) -> Tensor {
        assert!(!tensors.is_empty(), "cat: no tensors given");
        let first = &tensors[0];
        let a = first.axis(axis, "cat");
        for t in tensors {
            first.same_device(t, "cat");
            assert_eq!(t.dtype, first.dtype, "cat: mixed dtypes {} and {}", first.dtype, t.dtype);
            let ok = t.rank() == first.rank() && (0..t.rank()).all(|d| d == a || t.shape()[d] == first.shape()[d]);
            assert!(
                ok,
                "cat: shapes {:?} disagree outside axis {a}",
                tensors.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>()
            );
        }
        let mut shape = first.shape().to_vec();
        shape[a] = tensors
            .iter()
            .try_fold(0usize, |n, t| n.checked_add(t.shape()[a]))
            .unwrap_or_else(|| panic!("cat: the sizes along axis {a} add up past usize::MAX"));
        let out = Tensor::empty_like_shape(&shape, first.dtype, &first.device, "cat");
        let mut start = 0;
        for t in tensors {
            let len = t.shape()[a];
            copy_into(t, &out.narrow(a as isize, start, len));
            start += len;
        }
        Tensor::record(out, GradOp::Cat { axis: a }, &tensors.iter().collect::<Vec<_>>())
    }

    /// Tensors of one shape joined along a new axis at position `axis`.
    pub fn stack(tensors: &[Tensor], axis: usize) -> Tensor {
        assert!(!tensors.is_empty(), "stack: no tensors given");
        for t in tensors {
            assert_eq!(
                t.shape(),
                tensors[0].shape(),
                "stack: all tensors need one shape, got {:?}",
                tensors.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>()
            );
        }
        let parts: Vec<Tensor> = tensors.iter().map(|t| t.unsqueeze(axis)).collect();
        Tensor::cat(&parts, axis as isize)
    }

    /// Every window of `size` elements along `axis`, `step` apart, as `Tensor.unfold`: the
    /// axis of length `L` becomes `(L - size) / step + 1` windows and a new last axis of
    /// length `size` holds each window's elements. For a series `[T, C]`,
    /// `unfold(0, size, step)` is `[windows, C, size]`.
    ///
    /// Unlike PyTorch's, the result is not a view of this tensor's storage but a copy made
    /// from existing ops (an [`index_select`](Tensor::index_select) of the window positions,
    /// a reshape and a permute), so it runs on every device and its gradient is theirs:
    /// overlapping windows add their gradients into the elements they share. `f32` only.
    /// Panics when `step` or `size` is zero or `size` is longer than the axis.
    ///
    /// ```
    /// use wgrad::{Device, Tensor};
    /// let x = Tensor::arange(0.0, 7.0, 1.0, &Device::cpu()); // 0, 1, ..., 6
    /// let w = x.unfold(0, 3, 2);
    /// assert_eq!(w.shape(), &[3, 3]);
    /// assert_eq!(w.to_vec::<f32>(), [0., 1., 2., 2., 3., 4., 4., 5., 6.]);
    /// ```
    pub fn unfold(&self, axis: isize, size: usize, step: usize) -> Tensor {
        let a = self.axis(axis, "unfold");
        self.expect_dtype(DType::F32, "unfold");
        let len = self.shape()[a];
        assert!(
            size > 0 && step > 0 && size <= len,
            "unfold: windows of size {size} every {step} do not fit axis {a} of shape {:?} (size and step must be at least 1 and size at most {len})",
            self.shape()
        );
        let windows = (len - size) / step + 1;
        let positions: Vec<i32> = (0..windows)
            .flat_map(|w| (0..size).map(move |j| i32::try_from(w * step + j).expect("an axis length fits i32")))
            .collect();
        let positions = Tensor::from_slice(&positions, &[windows * size], &self.device);
        // [..., windows * size, ...] -> [..., windows, size, ...] -> size moved to the end.
        let picked = self.index_select(a as isize, &positions);
        let mut shape: Vec<isize> = self.shape().iter().map(|&d| d as isize).collect();
        shape.splice(a..=a, [windows as isize, size as isize]);
        let perm: Vec<usize> = (0..=self.rank()).filter(|&d| d != a + 1).chain([a + 1]).collect();
        picked.reshape(&shape).permute(&perm)
    }

    /// Slices along `axis` picked by the 1-D `i32` tensor `indices` (`torch.index_select`).
    pub fn index_select(&self, axis: isize, indices: &Tensor) -> Tensor {
        let a = self.axis(axis, "index_select");
        self.expect_dtype(DType::F32, "index_select");
        indices.expect_dtype(DType::I32, "index_select");
        self.same_device(indices, "index_select");
        assert_eq!(indices.rank(), 1, "index_select: indices must be 1-D, got shape {:?}", indices.shape());
        let mut shape = self.shape().to_vec();
        shape[a] = indices.numel();
        let out = self.index_op(IndexOp::IndexSelect, a, indices, &shape);
        Tensor::record(out, GradOp::IndexSelect { axis: a }, &[self, indices])
    }

    /// `out[.., i, ..] = self[.., index[.., i, ..], ..]` along `axis` (`torch.gather`). `index`
    /// is `i32`, has this tensor's rank, and is no larger on any other axis.
    pub fn gather(&self, axis: isize, index: &Tensor) -> Tensor {
        let a = self.axis(axis, "gather");
        self.expect_dtype(DType::F32, "gather");
        index.expect_dtype(DType::I32, "gather");
        self.same_device(index, "gather");
        let ok = index.rank() == self.rank() && (0..self.rank()).all(|d| d == a || index.shape()[d] <= self.shape()[d]);
        assert!(
            ok,
            "gather: index of shape {:?} does not fit input of shape {:?} along axis {a}",
            index.shape(),
            self.shape()
        );
        let out = self.index_op(IndexOp::Gather, a, index, index.shape());
        Tensor::record(out, GradOp::Gather { axis: a }, &[self, index])
    }

    /// `self` plus each slice `l` of `src` added at `indices[l]` along `axis`; repeated
    /// indices accumulate (`torch.index_add`, returning a new tensor).
    pub fn index_add(&self, axis: isize, indices: &Tensor, src: &Tensor) -> Tensor {
        let a = self.axis(axis, "index_add");
        indices.expect_dtype(DType::I32, "index_add");
        assert_eq!(indices.rank(), 1, "index_add: indices must be 1-D, got shape {:?}", indices.shape());
        let mut expected = self.shape().to_vec();
        expected[a] = indices.numel();
        assert_eq!(
            src.shape(),
            expected,
            "index_add: src of shape {:?} does not match {:?} with {} indices on axis {a}",
            src.shape(),
            self.shape(),
            indices.numel()
        );
        let added = src.index_add_into(self.shape(), a, indices);
        let out = self.detach().add(&added);
        Tensor::record(out, GradOp::IndexAdd { axis: a }, &[self, indices, src])
    }

    /// `self` plus each element of `src` added where `index` points along `axis`
    /// (`torch.scatter_add`, returning a new tensor). `index` has `src`'s shape.
    pub fn scatter_add(&self, axis: isize, index: &Tensor, src: &Tensor) -> Tensor {
        let a = self.axis(axis, "scatter_add");
        index.expect_dtype(DType::I32, "scatter_add");
        let ok = index.shape() == src.shape()
            && index.rank() == self.rank()
            && (0..self.rank()).all(|d| d == a || index.shape()[d] <= self.shape()[d]);
        assert!(
            ok,
            "scatter_add: index {:?} and src {:?} do not fit a tensor of shape {:?} along axis {a}",
            index.shape(),
            src.shape(),
            self.shape()
        );
        let added = src.scatter_add_into(self.shape(), a, index);
        let out = self.detach().add(&added);
        Tensor::record(out, GradOp::ScatterAdd { axis: a }, &[self, index, src])
    }

    /// Zeros of `shape` with the slices of `self` summed in at `indices` along `axis`.
    pub(crate) fn index_add_into(&self, shape: &[usize], axis: usize, indices: &Tensor) -> Tensor {
        self.scatter_op(IndexOp::IndexAdd, shape, axis, indices)
    }

    /// Zeros of `shape` with the elements of `self` summed in where `index` points.
    pub(crate) fn scatter_add_into(&self, shape: &[usize], axis: usize, index: &Tensor) -> Tensor {
        self.scatter_op(IndexOp::ScatterAdd, shape, axis, index)
    }

    fn scatter_op(&self, op: IndexOp, out_shape: &[usize], axis: usize, indices: &Tensor) -> Tensor {
        self.expect_dtype(DType::F32, op.name());
        // scatter_add reads the indices at the source's own element positions, so the
        // source is packed like them.
        let src = if op == IndexOp::ScatterAdd { self.detach().contiguous() } else { self.detach() };
        src.index_op(op, axis, indices, out_shape)
    }

    /// Runs one of the four index kernels; the callers have validated shapes and dtypes.
    fn index_op(&self, op: IndexOp, axis: usize, indices: &Tensor, out_shape: &[usize]) -> Tensor {
        self.same_device(indices, op.name());
        let indices = indices.contiguous();
        let index = (&*indices.storage, indices.layout.offset, indices.numel());
        let out = self.storage.index(op, &self.layout, axis, index, out_shape);
        Tensor::from_storage(out, out_shape, DType::F32)
    }
}

/// Copies the elements of `src` into the view `dst` (same shape, same device). `dst` must
/// be a view of storage that only the caller holds.
pub(super) fn copy_into(src: &Tensor, dst: &Tensor) {
    debug_assert_eq!(src.shape(), dst.shape());
    debug_assert_eq!(src.dtype, dst.dtype);
    src.storage.copy_into(src.dtype, &src.layout, &dst.storage, &dst.layout);
}
