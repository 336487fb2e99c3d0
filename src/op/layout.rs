//! Shape, strides and offset: how a tensor's elements sit in its storage.
//!
//! Strides count elements, not bytes, and are never negative: views that reverse an axis
//! are not offered, so every kernel can use unsigned index arithmetic. A stride of 0 is a
//! broadcast dimension.

/// The most dimensions a tensor may have. Kernels carry shapes in fixed-size uniform
/// arrays of this length.
pub const MAX_DIMS: usize = 8;

/// The placement of a tensor's elements in its storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub offset: usize,
}

/// Row-major strides for a shape. The shape has passed [`check_shape`], so no product
/// overflows.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// The number of elements of a shape (1 for a scalar, 0 if any dimension is 0). Panics
/// when the shape fails [`check_shape`]; entry points check first, naming their op.
pub fn numel(shape: &[usize]) -> usize {
    check_shape(shape, "tensor")
}

/// The most elements a tensor may have: their bytes, at up to 8 per element, fit in an
/// `isize` (Rust's bound on one allocation), so no byte count of a valid shape overflows.
pub const MAX_NUMEL: usize = isize::MAX as usize / 8;

/// The number of elements of `shape`, or `None` when it is more than [`MAX_NUMEL`] or its
/// row-major strides would pass it. The product is taken with zeros counted as ones, so an
/// empty shape with overflowing strides (`[0, 2^40, 2^40]`) is refused too: every stride,
/// offset and extent of a valid shape's views then fits.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    let span = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d.max(1)))?;
    if span > MAX_NUMEL {
        return None;
    }
    Some(if shape.contains(&0) { 0 } else { span })
}

/// The number of elements of `shape`; panics with a message naming `op` and the shape
/// when it is too large (a programming error, as every shape error).
#[track_caller]
pub fn check_shape(shape: &[usize], op: &str) -> usize {
    if let Some(n) = checked_numel(shape) {
        return n;
    }
    let span = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d.max(1)));
    match span {
        None if shape.contains(&0) => panic!("{op}: shape {shape:?} has strides past usize::MAX"),
        None => panic!("{op}: shape {shape:?} has more than usize::MAX elements"),
        Some(n) if shape.contains(&0) => {
            panic!("{op}: shape {shape:?} has strides up to {n}, past the {MAX_NUMEL} a tensor may span")
        }
        Some(n) => panic!("{op}: shape {shape:?} has {n} elements, more than the {MAX_NUMEL} a tensor may hold"),
    }
}

/// The shape two shapes broadcast to under NumPy's rules, or `None` if they disagree.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() { 1 } else { a[i - (rank - a.len())] };
        let db = if i < rank - b.len() { 1 } else { b[i - (rank - b.len())] };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

impl Layout {
    /// A fresh row-major layout starting at element 0.
    pub fn contiguous(shape: &[usize]) -> Layout {
        check_shape(shape, "tensor");
        assert!(
            shape.len() <= MAX_DIMS,
            "tensor: shape {shape:?} has {} dimensions; at most {MAX_DIMS} are supported",
            shape.len()
        );
        Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: 0 }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// True when the elements are row-major and packed (the offset may be non-zero).
    /// Dimensions of size 1 may have any stride.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for d in (0..self.rank()).rev() {
            if self.shape[d] != 1 && self.strides[d] != expected {
                return false;
            }
            expected *= self.shape[d];
        }
        true
    }

    /// One past the largest storage index this layout touches (0 when empty).
    pub fn storage_extent(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        let last = self
            .shape
            .iter()
            .zip(&self.strides)
            .try_fold(self.offset, |end, (&n, &s)| end.checked_add((n - 1).checked_mul(s)?));
        match last.and_then(|l| l.checked_add(1)) {
            Some(extent) => extent,
            None => panic!(
                "tensor: a view of shape {:?}, strides {:?} and offset {} reaches past usize::MAX",
                self.shape, self.strides, self.offset
            ),
        }
    }

    /// The storage index of each element in row-major order. The CPU backend's reference
    /// way of reading any view.
    pub fn storage_indices(&self) -> StridedIter<'_> {
        StridedIter { layout: self, index: vec![0; self.rank()], remaining: self.numel(), next: self.offset }
    }

    /// This layout seen with `shape`, broadcasting size-1 (or missing leading) dimensions
    /// with stride 0. The caller has checked that the shapes are compatible.
    pub fn broadcast_to(&self, shape: &[usize]) -> Layout {
        let lead = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for d in 0..self.rank() {
            if self.shape[d] == shape[lead + d] {
                strides[lead + d] = self.strides[d];
            } else {
                debug_assert_eq!(self.shape[d], 1);
            }
        }
        Layout { shape: shape.to_vec(), strides, offset: self.offset }
    }

    /// Axes reordered: output axis `i` is input axis `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Layout {
        Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        }
    }

    /// Elements `start..start + len` along `axis`.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Layout {
        let mut out = self.clone();
        out.shape[axis] = len;
        if len > 0 {
            // Fits for any view of a checked shape; checked anyway, as offsets index memory.
            out.offset =
                start.checked_mul(self.strides[axis]).and_then(|o| o.checked_add(self.offset)).unwrap_or_else(|| {
                    panic!("narrow: offset {start} along axis {axis} of shape {:?} passes usize::MAX", self.shape)
                });
        }
        out
    }

    /// The same elements under a new shape without copying, when the strides allow it
    /// (always for contiguous layouts; otherwise when each run of merged dimensions is
    /// itself contiguous). Returns `None` when a copy is needed.
    pub fn reshape(&self, shape: &[usize]) -> Option<Layout> {
        if self.is_contiguous() {
            let mut l = Layout::contiguous(shape);
            l.offset = self.offset;
            return Some(l);
        }
        // Group the old dimensions (ignoring size-1 ones) into runs that are contiguous
        // among themselves, then require every new dimension to fall inside one run.
        let old: Vec<(usize, usize)> =
            self.shape.iter().zip(&self.strides).filter(|(&n, _)| n != 1).map(|(&n, &s)| (n, s)).collect();
        let mut new_strides = vec![0; shape.len()];
        let mut oi = 0;
        let mut ni = 0;
        while ni < shape.len() {
            if shape[ni] == 1 {
                new_strides[ni] = 0;
                ni += 1;
                continue;
            }
            if oi >= old.len() {
                return None;
            }
            // Take old dims oi..oj forming a contiguous run whose product covers shape[ni..nj].
            let mut old_prod = old[oi].0;
            let mut new_prod = shape[ni];
            let mut oj = oi + 1;
            let mut nj = ni + 1;
            while old_prod != new_prod {
                if old_prod < new_prod {
                    if oj >= old.len() || old[oj - 1].1 != old[oj].0 * old[oj].1 {
                        return None;
                    }
                    old_prod *= old[oj].0;
                    oj += 1;
                } else {
                    if nj >= shape.len() {
                        return None;
                    }
                    new_prod *= shape[nj];
                    nj += 1;
                }
            }
            // The run oi..oj is contiguous with innermost stride old[oj-1].1.
            let mut stride = old[oj - 1].1;
            for d in (ni..nj).rev() {
                new_strides[d] = stride;
                stride *= shape[d];
            }
            oi = oj;
            ni = nj;
        }
        if oi != old.len() {
            return None;
        }
        Some(Layout { shape: shape.to_vec(), strides: new_strides, offset: self.offset })
    }
}

/// Iterator over the storage indices of a layout in row-major element order.
pub struct StridedIter<'a> {
    layout: &'a Layout,
    index: Vec<usize>,
    remaining: usize,
    next: usize,
}

impl Iterator for StridedIter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.next;
        // Advance the multi-index like an odometer, updating the storage index incrementally.
        for d in (0..self.index.len()).rev() {
            self.index[d] += 1;
            self.next += self.layout.strides[d];
            if self.index[d] < self.layout.shape[d] {
                break;
            }
            self.next -= self.layout.strides[d] * self.layout.shape[d];
            self.index[d] = 0;
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_iteration_of_a_transpose() {
        let l = Layout::contiguous(&[2, 3]).permute(&[1, 0]);
        assert_eq!(l.storage_indices().collect::<Vec<_>>(), vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn broadcast_rules() {
        assert_eq!(broadcast_shapes(&[3, 1, 5], &[4, 1]), Some(vec![3, 4, 5]));
        assert_eq!(broadcast_shapes(&[], &[2]), Some(vec![2]));
        assert_eq!(broadcast_shapes(&[3], &[4]), None);
    }

    #[test]
    fn element_counts_and_strides_past_usize_are_refused() {
        assert_eq!(checked_numel(&[1 << 32, 1 << 32]), None);
        assert_eq!(checked_numel(&[0, 1 << 40, 1 << 40]), None);
        assert_eq!(checked_numel(&[1 << 40, 1 << 20, 0]), None);
        assert_eq!(checked_numel(&[1 << 20, 0, 7]), Some(0));
        assert_eq!(checked_numel(&[]), Some(1));
        assert_eq!(checked_numel(&[MAX_NUMEL, 1]), Some(MAX_NUMEL));
        assert_eq!(checked_numel(&[1 << 30, 1 << 30]), None); // 2^60 elements: 2^63 bytes of f64
        assert_eq!(checked_numel(&[1 << 31, 1 << 31]), None); // 2^62 elements: 2^64 bytes of f32
        let msg = std::panic::catch_unwind(|| Layout::contiguous(&[1 << 34, 1 << 30])).unwrap_err();
        assert!(msg.downcast_ref::<String>().unwrap().contains("[17179869184, 1073741824] has more than usize::MAX"));
    }

    #[test]
    fn reshape_views_and_refusals() {
        let t = Layout::contiguous(&[4, 6]).permute(&[1, 0]); // [6, 4], strides [1, 6]
        assert!(t.reshape(&[24]).is_none());
        // Splitting one axis is always a view: element (i, a, b) sits at i + 6 * (2a + b).
        assert_eq!(t.reshape(&[6, 2, 2]).unwrap().strides, vec![1, 12, 6]);
        let n = Layout::contiguous(&[4, 6, 5]).narrow(1, 1, 3); // [4, 3, 5] strides [30, 5, 1]
        let r = n.reshape(&[4, 15]).unwrap();
        assert_eq!(r.strides, vec![30, 1]);
        assert_eq!(r.offset, 5);
        assert!(n.reshape(&[60]).is_none());
        let u = Layout::contiguous(&[3, 4]).permute(&[1, 0]).reshape(&[1, 4, 3, 1]).unwrap();
        assert_eq!(u.strides[1..3], [1, 4]);
    }
}
