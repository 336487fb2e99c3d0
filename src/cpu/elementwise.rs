//! Unary, binary and where over strided views (broadcast dimensions have stride 0).
//!
//! Outputs are contiguous and cut into runs of elements that threads fill independently
//! (see [`super::parallel`]); each element is computed by the same scalar function
//! whichever run it falls in.

use std::ops::Range;

use super::alloc;
use super::parallel;
use crate::op::layout::Layout;
use crate::op::{BinaryOp, UnaryOp};

/// The value of a unary op at one element: the definition every kernel is checked against.
/// Always inlined: the loops call it with a constant `op`, and only that arm must remain.
#[inline(always)]
pub fn unary_scalar(op: UnaryOp, x: f32, s0: f32, s1: f32) -> f32 {
    match op {
        UnaryOp::Copy => x,
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Square => x * x,
        UnaryOp::Recip => 1.0 / x,
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Affine => x * s0 + s1,
        UnaryOp::PowScalar => x.powf(s0),
        UnaryOp::Clamp => {
            if x.is_nan() {
                x
            } else {
                x.max(s0).min(s1)
            }
        }
        UnaryOp::Relu => {
            if x > 0.0 || x.is_nan() {
                x
            } else {
                0.0
            }
        }
        UnaryOp::LeakyRelu => {
            if x > 0.0 {
                x
            } else {
                s0 * x
            }
        }
        UnaryOp::Elu => {
            if x > 0.0 {
                x
            } else {
                s0 * x.exp_m1()
            }
        }
        UnaryOp::Sigmoid => (1.0 / (1.0 + (-(x as f64)).exp())) as f32,
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Gelu => {
            let x = x as f64;
            (0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))) as f32
        }
        UnaryOp::Softplus => {
            // PyTorch's default threshold: above 20 the result is x itself.
            if x > 20.0 {
                x
            } else {
                (x as f64).exp().ln_1p() as f32
            }
        }
        UnaryOp::Silu => {
            let x = x as f64;
            (x / (1.0 + (-x).exp())) as f32
        }
        UnaryOp::GeluGrad => {
            let x = x as f64;
            let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            (cdf + x * pdf) as f32
        }
    }
}

/// NaN-propagating maximum, as `torch.maximum`.
fn nan_max(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        x.max(y)
    }
}

fn nan_min(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        x.min(y)
    }
}

fn mask(b: bool) -> f32 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The value of a binary op at one pair of elements (always inlined, as [`unary_scalar`]).
#[inline(always)]
pub fn binary_scalar(op: BinaryOp, x: f32, y: f32) -> f32 {
    match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
        BinaryOp::Pow => x.powf(y),
        BinaryOp::Maximum => nan_max(x, y),
        BinaryOp::Minimum => nan_min(x, y),
        BinaryOp::Eq => mask(x == y),
        BinaryOp::Ne => mask(x != y),
        BinaryOp::Lt => mask(x < y),
        BinaryOp::Le => mask(x <= y),
        BinaryOp::Gt => mask(x > y),
        BinaryOp::Ge => mask(x >= y),
    }
}

/// Walks the elements `range` (flat row-major positions) of views that share one shape,
/// row by row (a row: the last axis), calling `f(offsets, strides, len)` with each view's
/// storage offset of the first element of a piece of a row and its stride along the row.
/// Ops loop over a piece with plain indexing, which the compiler vectorises when the stride
/// is 1, instead of stepping a multi-index per element. The first and last pieces may be
/// partial rows, so that any range of the output can be handed to one thread.
fn for_each_row<const K: usize>(
    views: [&Layout; K],
    range: Range<usize>,
    mut f: impl FnMut([usize; K], [usize; K], usize),
) {
    let shape = &views[0].shape;
    if shape.contains(&0) || range.is_empty() {
        return;
    }
    let Some((&len, outer)) = shape.split_last() else {
        return f(views.map(|l| l.offset), [0; K], 1);
    };
    let inner = views.map(|l| l.strides[shape.len() - 1]);
    // The multi-index of the row holding `range.start`, and the offsets of its first piece.
    let (mut row, mut col) = (range.start / len, range.start % len);
    let mut index = vec![0usize; outer.len()];
    for d in (0..outer.len()).rev() {
        index[d] = row % outer[d];
        row /= outer[d];
    }
    let mut offsets = views.map(|l| l.offset + col * l.strides[shape.len() - 1]);
    for (d, &i) in index.iter().enumerate() {
        for (o, l) in offsets.iter_mut().zip(&views) {
            *o += i * l.strides[d];
        }
    }
    let mut remaining = range.len();
    let mut piece = (len - col).min(remaining);
    loop {
        f(offsets, inner, piece);
        remaining -= piece;
        if remaining == 0 {
            return;
        }
        // Back to the start of the row (only the first piece can start inside one), then
        // advance the outer multi-index like an odometer, updating every offset.
        if col > 0 {
            for (o, s) in offsets.iter_mut().zip(inner) {
                *o -= col * s;
            }
            col = 0;
        }
        let mut d = outer.len();
        loop {
            debug_assert!(d > 0, "for_each_row: range past the end of the views");
            d -= 1;
            index[d] += 1;
            for (o, l) in offsets.iter_mut().zip(&views) {
                *o += l.strides[d];
            }
            if index[d] < outer[d] {
                break;
            }
            for (o, l) in offsets.iter_mut().zip(&views) {
                *o -= l.strides[d] * outer[d];
            }
            index[d] = 0;
        }
        piece = len.min(remaining);
    }
}

/// `f` of every element of the view `layout` of `src`, in row-major order; the output is
/// cut into runs of elements computed in parallel.
fn map1(src: &[f32], layout: &Layout, f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    // SAFETY: `for_each_row` visits the whole run in pieces, and every piece is written.
    unsafe {
        parallel::collect_runs(layout.numel(), |first, run| {
            let mut at = 0;
            for_each_row([layout], first..first + run.len(), |[o], [s], len| {
                let dst = &mut run[at..at + len];
                if s == 1 {
                    for (d, &x) in dst.iter_mut().zip(&src[o..o + len]) {
                        d.write(f(x));
                    }
                } else {
                    for (k, d) in dst.iter_mut().enumerate() {
                        d.write(f(src[o + k * s]));
                    }
                }
                at += len;
            });
        })
    }
}

/// `f` of every pair of elements of two views of the output's shape.
fn map2(a: &[f32], la: &Layout, b: &[f32], lb: &Layout, f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    // SAFETY: `for_each_row` visits the whole run in pieces, and every piece is written.
    unsafe {
        parallel::collect_runs(la.numel(), |first, run| {
            let mut at = 0;
            for_each_row([la, lb], first..first + run.len(), |[oa, ob], [sa, sb], len| {
                let dst = &mut run[at..at + len];
                match (sa, sb) {
                    (1, 1) => {
                        for ((d, &x), &y) in dst.iter_mut().zip(&a[oa..oa + len]).zip(&b[ob..ob + len]) {
                            d.write(f(x, y));
                        }
                    }
                    // A row of `a` against one broadcast value of `b` (bias adds, scalars), and back.
                    (1, 0) => {
                        let y = b[ob];
                        for (d, &x) in dst.iter_mut().zip(&a[oa..oa + len]) {
                            d.write(f(x, y));
                        }
                    }
                    (0, 1) => {
                        let x = a[oa];
                        for (d, &y) in dst.iter_mut().zip(&b[ob..ob + len]) {
                            d.write(f(x, y));
                        }
                    }
                    _ => {
                        for (k, d) in dst.iter_mut().enumerate() {
                            d.write(f(a[oa + k * sa], b[ob + k * sb]));
                        }
                    }
                }
                at += len;
            });
        })
    }
}

/// Runs `$call` with `$f` bound to `$scalar` fixed to one variant of the op, so every
/// variant gets its own loop with its arithmetic inlined instead of a `match` per element.
macro_rules! per_variant {
    ($op:expr, $enum:ident, |$f:ident| $call:expr, [$($v:ident),* $(,)?], |$o:ident| $scalar:expr) => {
        match $op {
            $($enum::$v => {
                // The variant as a constant item, not a value the closure captures: the
                // loop's instance then holds only that variant's arm (a captured value
                // would leave a jump table per element, and no vectorisation).
                #[allow(non_upper_case_globals)]
                const $o: $enum = $enum::$v;
                let $f = $scalar;
                $call
            })*
        }
    };
}

/// `op` applied to every element of the view `layout` of `src`, in row-major order.
pub fn unary(op: UnaryOp, s0: f32, s1: f32, src: &[f32], layout: &Layout) -> Vec<f32> {
    per_variant!(
        op,
        UnaryOp,
        |f| map1(src, layout, f),
        [
            Copy, Neg, Abs, Exp, Log, Sqrt, Rsqrt, Square, Recip, Sin, Cos, Affine, PowScalar, Clamp, Relu, LeakyRelu,
            Elu, Sigmoid, Tanh, Gelu, Softplus, Silu, GeluGrad,
        ],
        |o| move |x| unary_scalar(o, x, s0, s1)
    )
}

/// `op` applied to two views that already have the output's shape (broadcast by strides).
pub fn binary(op: BinaryOp, a: &[f32], la: &Layout, b: &[f32], lb: &Layout) -> Vec<f32> {
    per_variant!(
        op,
        BinaryOp,
        |f| map2(a, la, b, lb, f),
        [Add, Sub, Mul, Div, Pow, Maximum, Minimum, Eq, Ne, Lt, Le, Gt, Ge],
        |o| move |x, y| binary_scalar(o, x, y)
    )
}

/// The gradient of a ReLU: `g * (x > 0 ? 1 : 0)` for two views of the output's shape, the
/// composed `g.mul(x.gt(0))` in one pass and with its bits.
pub fn relu_backward(g: &[f32], lg: &Layout, x: &[f32], lx: &Layout) -> Vec<f32> {
    map2(g, lg, x, lx, |g, x| binary_scalar(BinaryOp::Mul, g, binary_scalar(BinaryOp::Gt, x, 0.0)))
}

/// `a` where `cond != 0`, else `b`; all three views have the output's shape.
pub fn where_select(cond: &[f32], lc: &Layout, a: &[f32], la: &Layout, b: &[f32], lb: &Layout) -> Vec<f32> {
    // SAFETY: `for_each_row` visits the whole run in pieces, and every piece is written.
    unsafe {
        parallel::collect_runs(lc.numel(), |first, run| {
            let mut at = 0;
            for_each_row([lc, la, lb], first..first + run.len(), |[oc, oa, ob], [sc, sa, sb], len| {
                for (k, d) in run[at..at + len].iter_mut().enumerate() {
                    d.write(if cond[oc + k * sc] != 0.0 { a[oa + k * sa] } else { b[ob + k * sb] });
                }
                at += len;
            });
        })
    }
}

/// Copies the view `ls` of `src` into the view `ld` of `dst` (same shape), word for word.
/// A contiguous destination (what `contiguous()` writes) is filled in parallel runs; a
/// strided one on the calling thread.
/// The view `ls` of `src` copied into a new contiguous vector, written element by element
/// into fresh memory: no zeroing pass precedes the copy (for a large view that pass costs
/// as much as the copy, and runs on one thread).
pub fn gather<T: Copy + Send + Sync>(src: &[T], ls: &Layout, op: &str) -> Vec<T> {
    let numel = ls.numel();
    let mut out = Vec::new();
    if out.try_reserve_exact(numel).is_err() {
        panic!("{}", alloc::out_of_memory(op, numel, std::mem::size_of::<T>()));
    }
    parallel::for_each_run(&mut out.spare_capacity_mut()[..numel], 1, 1, |first, run| {
        let mut at = 0;
        for_each_row([ls], first..first + run.len(), |[os], [ss], len| {
            let piece = &mut run[at..at + len];
            if ss == 1 {
                for (d, &v) in piece.iter_mut().zip(&src[os..os + len]) {
                    d.write(v);
                }
            } else {
                for (k, d) in piece.iter_mut().enumerate() {
                    d.write(src[os + k * ss]);
                }
            }
            at += len;
        });
    });
    // SAFETY: the runs cover `0..numel`, and each run's rows write every element of it.
    unsafe { out.set_len(numel) };
    out
}

pub fn copy_into(src: &[u32], ls: &Layout, dst: &mut [u32], ld: &Layout) {
    debug_assert_eq!(ls.shape, ld.shape);
    let numel = ls.numel();
    if ld.is_contiguous() {
        let dst = &mut dst[ld.offset..ld.offset + numel];
        parallel::for_each_run(dst, 1, 1, |first, run| {
            let mut at = 0;
            for_each_row([ls], first..first + run.len(), |[os], [ss], len| {
                let piece = &mut run[at..at + len];
                if ss == 1 {
                    piece.copy_from_slice(&src[os..os + len]);
                } else {
                    for (k, d) in piece.iter_mut().enumerate() {
                        *d = src[os + k * ss];
                    }
                }
                at += len;
            });
        });
        return;
    }
    for_each_row([ls, ld], 0..numel, |[os, od], [ss, sd], len| {
        if ss == 1 && sd == 1 {
            dst[od..od + len].copy_from_slice(&src[os..os + len]);
        } else {
            for k in 0..len {
                dst[od + k * sd] = src[os + k * ss];
            }
        }
    });
}
