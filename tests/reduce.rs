//! Reductions against the CPU reference: over one axis, several, non-adjacent ones and all
//! of them, with and without keepdim; rows longer than a workgroup (256), rows of length
//! 1, many rows, views, scalars and empty tensors. Arg-reductions on ties (the first index
//! wins, whichever invocation saw it) and NaN (which wins over every number).

mod common;

use common::{apply_reduce, gpu, integers, randn, reduce_tolerance, EXACT};
use wgrad::op::ReduceOp;
use wgrad::testing::cross_check;
use wgrad::{Device, Tensor};

type Build = fn(&Device) -> Tensor;

/// Inputs and the axes reduced over: name, builder, axes.
const AXIS_CASES: &[(&str, Build, &[isize])] = &[
    ("[7] over its only axis", |d| randn(&[7], 1, d), &[0]),
    ("[13, 45] over axis 1", |d| randn(&[13, 45], 2, d), &[1]),
    ("[13, 45] over axis 0", |d| randn(&[13, 45], 3, d), &[0]),
    ("[13, 45] over axis -1", |d| randn(&[13, 45], 4, d), &[-1]),
    ("[5, 7, 11] over the middle axis", |d| randn(&[5, 7, 11], 5, d), &[1]),
    ("[5, 7, 11] over non-adjacent axes 0 and 2", |d| randn(&[5, 7, 11], 6, d), &[0, 2]),
    ("[5, 7, 11] over axes 2 and 0 (unsorted)", |d| randn(&[5, 7, 11], 7, d), &[2, 0]),
    ("[5, 7, 11] over all axes", |d| randn(&[5, 7, 11], 8, d), &[0, 1, 2]),
    ("[2, 3, 5, 7] over axes 1 and 3", |d| randn(&[2, 3, 5, 7], 9, d), &[1, 3]),
    // Rows of 1000: each invocation folds four elements before the tree, some three.
    ("[3, 1000] over rows longer than a workgroup", |d| randn(&[3, 1000], 10, d), &[1]),
    ("[2, 257] over rows one past a workgroup", |d| randn(&[2, 257], 11, d), &[1]),
    ("[300, 1] over rows of length 1", |d| randn(&[300, 1], 12, d), &[1]),
    ("[1000, 3] over many short rows", |d| randn(&[1000, 3], 13, d), &[1]),
    ("[3, 700] over the long axis 0 (a transposing copy)", |d| randn(&[3, 700], 14, d), &[0]),
    ("transposed [11, 13] over axis 1", |d| randn(&[11, 13], 15, d).t(), &[1]),
    ("narrowed [9, 20] over axis 1", |d| randn(&[9, 20], 16, d).narrow(1, 5, 13), &[1]),
    ("narrowed rows of [9, 20] over axis 1 (a view with an offset)", |d| randn(&[9, 20], 17, d).narrow(0, 2, 5), &[1]),
    ("[5] broadcast to [7, 5] over axis 0", |d| randn(&[5], 18, d).broadcast_to(&[7, 5]), &[0]),
    ("0-dim scalar", |d| Tensor::scalar(-1.5, d), &[0]),
];

#[test]
fn every_reduction_over_axes_and_views() {
    let Some(gpu) = gpu("every_reduction_over_axes_and_views") else { return };
    for &op in ReduceOp::ALL {
        for &(name, build, axes) in AXIS_CASES {
            // Arg-reductions take one axis: apply_reduce gives them the first of each case.
            for keepdim in [false, true] {
                let label = format!("{} of {name}, keepdim {keepdim}", op.name());
                let tol = reduce_tolerance(op);
                cross_check(&label, &gpu, tol, |d| vec![build(d)], |x| apply_reduce(op, &x[0], axes, keepdim));
            }
        }
    }
}

#[test]
fn var_with_correction_zero_and_one() {
    let Some(gpu) = gpu("var_with_correction_zero_and_one") else { return };
    let tol = reduce_tolerance(ReduceOp::Var);
    for correction in [0.0, 1.0] {
        for &(name, build, axes) in AXIS_CASES {
            let label = format!("var (correction {correction}) of {name}");
            cross_check(&label, &gpu, tol, |d| vec![build(d)], |x| x[0].var(axes, correction, false));
        }
        // A large mean against a small spread: E[x^2] - E[x]^2 would cancel to noise here.
        let label = format!("var (correction {correction}) around a mean of 1000");
        cross_check(
            &label,
            &gpu,
            tol,
            |d| vec![&randn(&[4, 500], 19, d) + 1000.0],
            |x| x[0].var(&[1], correction, false),
        );
    }
}

#[test]
fn var_divides_by_n_minus_correction() {
    let x = [1.0f32, 2.0, 3.0, 4.0, 10.0];
    // mean 4, squared deviations 9 + 4 + 1 + 0 + 36 = 50.
    for dev in devices() {
        let t = Tensor::from_slice(&x, &[5], &dev);
        assert_eq!(t.var(&[0], 0.0, false).item(), 10.0, "population variance");
        assert_eq!(t.var(&[0], 1.0, false).item(), 12.5, "sample variance");
        assert_eq!(t.var_all(1.0).shape(), &[] as &[usize]);
    }
}

#[test]
fn sums_and_means_match_their_definition() {
    for dev in devices() {
        let t = Tensor::arange(0.0, 24.0, 1.0, &dev).reshape(&[2, 3, 4]);
        // Element (n, c, w) is 12n + 4c + w.
        assert_eq!(t.sum(&[2], false).to_vec::<f32>(), vec![6.0, 22.0, 38.0, 54.0, 70.0, 86.0]);
        assert_eq!(t.sum(&[0, 2], true).shape(), &[1, 3, 1]);
        assert_eq!(t.sum(&[0, 2], true).to_vec::<f32>(), vec![60.0, 92.0, 124.0]);
        assert_eq!(t.mean(&[1], false).to_vec::<f32>(), vec![4.0, 5.0, 6.0, 7.0, 16.0, 17.0, 18.0, 19.0]);
        assert_eq!(t.max(&[0, 1], false).to_vec::<f32>(), vec![20.0, 21.0, 22.0, 23.0]);
        assert_eq!(t.min(&[2], false).to_vec::<f32>(), vec![0.0, 4.0, 8.0, 12.0, 16.0, 20.0]);
        assert_eq!(t.sum_all().item(), 276.0);
        assert_eq!(t.mean_all().item(), 11.5);
        assert_eq!(t.max_all().item(), 23.0);
        assert_eq!(t.min_all().item(), 0.0);
        // 1 + 2 + ... + 1000 is exact in f32, whatever the order.
        let long = Tensor::arange(1.0, 1001.0, 1.0, &dev);
        assert_eq!(long.sum_all().item(), 500_500.0);
        assert_eq!(long.max_all().item(), 1000.0);
        assert_eq!(long.argmax_all().to_vec::<i32>(), vec![999]);
    }
}

/// The CPU, and the GPU when there is one.
fn devices() -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu("devices"));
    v
}

/// A row of `len` copies of `fill`, with the values `at` lists placed at their indices.
fn row_with(len: usize, fill: f32, at: &[(usize, f32)]) -> Vec<f32> {
    let mut v = vec![fill; len];
    for &(i, x) in at {
        v[i] = x;
    }
    v
}

#[test]
fn arg_reductions_pick_the_first_of_tied_values() {
    // The ties sit in different invocations' strided slices of a 600-long row: the maxima at
    // 45 (lane 45), 300 (lane 44) and 555 (lane 43), the minima at 12, 100 and 356 (lane 100
    // twice). The lowest index must win, not the lowest lane or the last one seen.
    let rows = [
        row_with(600, 0.0, &[(300, 5.0), (45, 5.0), (555, 5.0), (100, -5.0), (356, -5.0), (12, -5.0)]),
        // All equal: index 0.
        vec![1.0; 600],
        // The best value at the very end only.
        row_with(600, 0.0, &[(599, 9.0), (598, -9.0)]),
    ];
    let data: Vec<f32> = rows.concat();
    for dev in devices() {
        let t = Tensor::from_slice(&data, &[3, 600], &dev);
        assert_eq!(t.argmax(1, false).to_vec::<i32>(), vec![45, 0, 599], "argmax");
        assert_eq!(t.argmin(1, false).to_vec::<i32>(), vec![12, 0, 598], "argmin");
        assert_eq!(t.argmax(1, true).shape(), &[3, 1]);
        // Over the transposed view, [600, 3]: each row holds one column of the three rows above.
        let cols = t.t().argmax(1, false).to_vec::<i32>();
        assert_eq!(cols[1], 1, "column 1: rows 0 and 2 hold 0.0, row 1 holds 1.0");
        assert_eq!(cols[45], 0, "column 45: row 0 holds 5.0");
        assert_eq!(cols[599], 2);
    }
    if let Some(gpu) = gpu("arg_reductions_pick_the_first_of_tied_values") {
        for axis in [0, 1] {
            for op in [ReduceOp::ArgMax, ReduceOp::ArgMin] {
                let label = format!("{} with many ties along axis {axis}", op.name());
                // Three levels over [37, 300]: every row and column is full of ties.
                cross_check(
                    &label,
                    &gpu,
                    EXACT,
                    |d| vec![integers(&[37, 300], 3, 20, d)],
                    |x| apply_reduce(op, &x[0], &[axis], false),
                );
            }
        }
    }
}

#[test]
fn nan_wins_max_min_and_arg_reductions() {
    let nan = f32::NAN;
    let rows = [
        // Two NaNs in different lanes: the first (index 200) is the arg.
        row_with(400, 1.0, &[(300, 7.0), (390, nan), (200, nan), (5, -7.0)]),
        // NaN at index 0 and larger numbers after it.
        row_with(400, 1.0, &[(0, nan), (1, f32::INFINITY), (2, f32::NEG_INFINITY)]),
        // No NaN: infinities are ordinary values.
        row_with(400, 1.0, &[(17, f32::INFINITY), (300, f32::NEG_INFINITY)]),
        // NaNs at 1 (lane 1) and 256 (lane 0): the tree meets lane 0 first, index 1 must win.
        row_with(400, 1.0, &[(256, nan), (1, nan)]),
    ];
    let data: Vec<f32> = rows.concat();
    for dev in devices() {
        let t = Tensor::from_slice(&data, &[4, 400], &dev);
        let max = t.max(&[1], false).to_vec::<f32>();
        let min = t.min(&[1], false).to_vec::<f32>();
        assert!(max[0].is_nan() && max[1].is_nan() && max[2] == f32::INFINITY && max[3].is_nan(), "max {max:?}");
        assert!(min[0].is_nan() && min[1].is_nan() && min[2] == f32::NEG_INFINITY && min[3].is_nan(), "min {min:?}");
        assert_eq!(t.argmax(1, false).to_vec::<i32>(), vec![200, 0, 17, 1], "argmax");
        assert_eq!(t.argmin(1, false).to_vec::<i32>(), vec![200, 0, 300, 1], "argmin");
        let sum = t.sum(&[1], false).to_vec::<f32>();
        assert!(sum.iter().all(|s| s.is_nan()), "NaN, and inf - inf, sum to NaN: {sum:?}");
    }
    if let Some(gpu) = gpu("nan_wins_max_min_and_arg_reductions") {
        for &op in ReduceOp::ALL {
            cross_check(
                &format!("{} with NaN", op.name()),
                &gpu,
                reduce_tolerance(op),
                |d| vec![Tensor::from_slice(&data, &[4, 400], d)],
                |x| apply_reduce(op, &x[0], &[1], false),
            );
        }
    }
}

#[test]
fn empty_tensors_reduce_to_identities_or_empty_results() {
    let Some(gpu) = gpu("empty_tensors_reduce_to_identities_or_empty_results") else { return };
    // Summing zero elements gives 0; their mean and variance are 0/0 = NaN, as in PyTorch.
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Var] {
        let tol = reduce_tolerance(op);
        cross_check(
            &format!("{} over an empty axis", op.name()),
            &gpu,
            tol,
            |d| vec![randn(&[0, 5], 1, d)],
            |x| apply_reduce(op, &x[0], &[0], false),
        );
    }
    // Reducing a non-empty axis of an empty tensor gives an empty result, for every op.
    for &op in ReduceOp::ALL {
        let tol = reduce_tolerance(op);
        cross_check(
            &format!("{} of [5, 0] over axis 0", op.name()),
            &gpu,
            tol,
            |d| vec![randn(&[5, 0], 2, d)],
            |x| apply_reduce(op, &x[0], &[0], true),
        );
    }
    for dev in devices() {
        let e = Tensor::zeros(&[0, 5], &dev);
        assert_eq!(e.sum(&[0], false).to_vec::<f32>(), vec![0.0; 5]);
        assert!(e.mean(&[0], false).to_vec::<f32>().iter().all(|v| v.is_nan()));
        assert_eq!(e.sum_all().item(), 0.0);
        assert_eq!(Tensor::zeros(&[5, 0], &dev).argmax(0, false).shape(), &[0]);
    }
}

#[test]
#[should_panic(expected = "max: cannot reduce an empty axis of shape [0, 5]")]
fn max_of_an_empty_axis_panics() {
    let _ = Tensor::zeros(&[0, 5], &Device::cpu()).max(&[0], false);
}

#[test]
#[should_panic(expected = "argmin: cannot reduce an empty axis of shape [3, 0]")]
fn argmin_of_an_empty_axis_panics() {
    let _ = Tensor::zeros(&[3, 0], &Device::cpu()).argmin(1, false);
}

#[test]
#[should_panic(expected = "sum: axis 2 is out of range for a tensor of shape [3, 4]")]
fn reducing_a_missing_axis_panics() {
    let _ = Tensor::zeros(&[3, 4], &Device::cpu()).sum(&[2], false);
}

#[test]
fn reductions_of_large_sums_stay_accurate() {
    let Some(gpu) = gpu("reductions_of_large_sums_stay_accurate") else { return };
    // All-positive rows of 3000: the f32 tree must not drift from the f64 reference.
    let tol = reduce_tolerance(ReduceOp::Sum);
    cross_check(
        "sum of uniform [0, 1) rows of 3000",
        &gpu,
        tol,
        |d| vec![common::uniform(&[2, 3000], 0.0, 1.0, 3, d)],
        |x| x[0].sum(&[1], false),
    );
}

/// Sums and means over the leading axes of a contiguous CPU tensor read its rows in place
/// (no transposing copy); they must give the same bits as the same reduction over the
/// last axes of the transposed copy, which takes the general path. Lengths around the
/// eight accumulators (1, 7, 8, 9, 61), column counts that split across threads, a
/// non-zero offset, and empty axes.
#[test]
fn leading_axis_sums_read_in_place_with_the_same_bits() {
    let dev = Device::cpu();
    let bits = |t: &Tensor| t.to_vec::<f32>().into_iter().map(f32::to_bits).collect::<Vec<_>>();
    for &(len, cols) in &[(1, 5), (7, 3), (8, 1), (9, 13), (61, 600), (1792, 512), (0, 4), (5, 0)] {
        let x = randn(&[len, cols], 31, &dev);
        let xt = x.t().contiguous();
        assert_eq!(bits(&x.sum(&[0], false)), bits(&xt.sum(&[1], false)), "sum of [{len}, {cols}]");
        let (m, mt) = (x.mean(&[0], true), xt.mean(&[1], false));
        assert_eq!(m.shape(), [1, cols]);
        assert_eq!(bits(&m), bits(&mt), "mean of [{len}, {cols}]");
    }
    // Two leading axes of a 3-D tensor, and a view with an offset (a narrowed first axis).
    let x = randn(&[6, 11, 37], 32, &dev);
    let xt = x.permute(&[2, 0, 1]).contiguous();
    assert_eq!(bits(&x.sum(&[0, 1], false)), bits(&xt.sum(&[1, 2], false)));
    let part = x.narrow(0, 2, 3);
    let part_t = part.permute(&[1, 2, 0]).contiguous();
    assert_eq!(bits(&part.sum(&[0], false)), bits(&part_t.sum(&[2], false)));
    assert_eq!(bits(&x.sum(&[0], false)), bits(&x.permute(&[1, 2, 0]).contiguous().sum(&[2], false)));
}
