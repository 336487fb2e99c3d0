//! Softmax and log-softmax against the CPU reference along every axis, on rows longer than
//! a workgroup, rows of one element, views, scalars and empty tensors; and against their
//! definitions: rows sum to 1, values that would overflow a naive `exp` stay finite, and
//! log-softmax is the log of softmax.

mod common;

use common::{gpu, randn, uniform, LOG_SOFTMAX_TOL, SOFTMAX_TOL};
use wgrad::op::SoftmaxOp;
use wgrad::testing::{compare, cross_check, Tolerance};
use wgrad::{Device, Tensor};

fn apply(op: SoftmaxOp, x: &Tensor, axis: isize) -> Tensor {
    match op {
        SoftmaxOp::Softmax => x.softmax(axis),
        SoftmaxOp::LogSoftmax => x.log_softmax(axis),
    }
}

fn tolerance(op: SoftmaxOp) -> Tolerance {
    match op {
        SoftmaxOp::Softmax => SOFTMAX_TOL,
        SoftmaxOp::LogSoftmax => LOG_SOFTMAX_TOL,
    }
}

type Build = fn(&Device) -> Tensor;

const CASES: &[(&str, Build)] = &[
    ("[7]", |d| randn(&[7], 1, d)),
    ("[1]", |d| randn(&[1], 2, d)),
    ("[13, 45]", |d| randn(&[13, 45], 3, d)),
    ("[5, 7, 11]", |d| randn(&[5, 7, 11], 4, d)),
    ("[2, 3, 5, 7]", |d| randn(&[2, 3, 5, 7], 5, d)),
    // Rows of 1000 and 257: several elements per invocation, a partial last pass.
    ("[3, 1000]", |d| randn(&[3, 1000], 6, d) * 3.0),
    ("[257, 2]", |d| randn(&[257, 2], 7, d)),
    ("transposed [11, 13]", |d| randn(&[11, 13], 8, d).t()),
    ("narrowed [9, 20]", |d| randn(&[9, 20], 9, d).narrow(1, 4, 13)),
    ("[5] broadcast to [4, 5]", |d| randn(&[5], 10, d).broadcast_to(&[4, 5])),
    ("values around 1000", |d| &uniform(&[6, 50], -5.0, 5.0, 11, d) + 1000.0),
    ("values around -1000", |d| &uniform(&[6, 50], -5.0, 5.0, 12, d) - 1000.0),
    ("empty [0, 5]", |d| randn(&[0, 5], 13, d)),
    ("empty [5, 0]", |d| randn(&[5, 0], 14, d)),
];

#[test]
fn softmax_and_log_softmax_along_every_axis() {
    let Some(gpu) = gpu("softmax_and_log_softmax_along_every_axis") else { return };
    for &op in SoftmaxOp::ALL {
        for &(name, build) in CASES {
            let rank = build(&Device::cpu()).rank() as isize;
            for axis in -rank..rank {
                let label = format!("{} of {name} along axis {axis}", op.name());
                cross_check(&label, &gpu, tolerance(op), |d| vec![build(d)], |x| apply(op, &x[0], axis).contiguous());
            }
        }
        cross_check(
            &format!("{} of a 0-dim scalar", op.name()),
            &gpu,
            tolerance(op),
            |d| vec![Tensor::scalar(3.0, d)],
            |x| apply(op, &x[0], 0),
        );
    }
}

/// The CPU, and the GPU when there is one.
fn devices() -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu("devices"));
    v
}

fn name(d: &Device) -> &'static str {
    if d.is_cpu() {
        "the CPU"
    } else {
        "the GPU"
    }
}

#[test]
fn rows_sum_to_one_even_for_large_values() {
    for dev in devices() {
        for (label, shift) in [("near 0", 0.0f32), ("near 1000", 1000.0), ("near -1000", -1000.0), ("near 1e30", 1e30)]
        {
            let x = &randn(&[4, 600], 20, &dev) + shift;
            for axis in [0isize, 1] {
                let p = x.softmax(axis);
                let v: Vec<f32> = p.to_vec();
                assert!(
                    v.iter().all(|p| p.is_finite() && *p >= 0.0),
                    "{label}: softmax on {} is not a distribution",
                    name(&dev)
                );
                let sums: Vec<f32> = p.sum(&[axis], false).to_vec();
                for s in sums {
                    assert!((s - 1.0).abs() < 1e-5, "{label}, axis {axis}: a row sums to {s} on {}", name(&dev));
                }
            }
        }
        // exp(1000) overflows f32; the max-subtracted form gives e^0 / (e^0 + e^-1 + e^-2).
        let x = Tensor::from_slice(&[1000.0f32, 999.0, 998.0], &[3], &dev);
        let e = [1.0f64, (-1.0f64).exp(), (-2.0f64).exp()];
        let total: f64 = e.iter().sum();
        let want: Vec<f32> = e.iter().map(|v| (v / total) as f32).collect();
        compare(&x.softmax(0).to_vec::<f32>(), &want, SOFTMAX_TOL)
            .unwrap_or_else(|err| panic!("{}: {err}", name(&dev)));
        let want: Vec<f32> = e.iter().map(|v| (v / total).ln() as f32).collect();
        compare(&x.log_softmax(0).to_vec::<f32>(), &want, LOG_SOFTMAX_TOL)
            .unwrap_or_else(|err| panic!("{}: {err}", name(&dev)));
        // A row of one element is certain.
        assert_eq!(Tensor::full(&[3, 1], 1e30, &dev).softmax(1).to_vec::<f32>(), vec![1.0; 3]);
        assert_eq!(Tensor::full(&[3, 1], -7.0, &dev).log_softmax(1).to_vec::<f32>(), vec![0.0; 3]);
    }
}

#[test]
fn softmax_along_a_middle_axis_matches_a_loop_over_fibres() {
    // [3, 4, 5] along axis 1: each fibre x[i, :, k] is normalised on its own.
    let (a, b, c) = (3, 4, 5);
    let x: Vec<f32> = (0..a * b * c).map(|i| ((i * 37) % 23) as f32 * 0.25 - 2.0).collect();
    let mut want = vec![0.0f32; x.len()];
    for i in 0..a {
        for k in 0..c {
            let at = |j: usize| i * b * c + j * c + k;
            let total: f64 = (0..b).map(|j| (x[at(j)] as f64).exp()).sum();
            for j in 0..b {
                want[at(j)] = ((x[at(j)] as f64).exp() / total) as f32;
            }
        }
    }
    for dev in devices() {
        let t = Tensor::from_slice(&x, &[a, b, c], &dev);
        let p = t.softmax(1);
        assert_eq!(p.shape(), &[a, b, c]);
        compare(&p.to_vec::<f32>(), &want, SOFTMAX_TOL).unwrap_or_else(|e| panic!("on {}: {e}", name(&dev)));
        let logs: Vec<f32> = want.iter().map(|p| p.ln()).collect();
        compare(&t.log_softmax(-2).to_vec::<f32>(), &logs, LOG_SOFTMAX_TOL)
            .unwrap_or_else(|e| panic!("on {}: {e}", name(&dev)));
    }
}

#[test]
fn log_softmax_is_the_log_of_softmax() {
    for dev in devices() {
        let x = randn(&[7, 300], 30, &dev) * 4.0;
        let via_log = x.softmax(1).log();
        // Absolute: both are logs of the same probabilities (the smallest about e^-25).
        compare(
            &x.log_softmax(1).to_vec::<f32>(),
            &via_log.to_vec::<f32>(),
            Tolerance::Elementwise { atol: 1e-5, rtol: 1e-5 },
        )
        .unwrap_or_else(|e| panic!("on {}: {e}", name(&dev)));
    }
}

#[test]
fn nan_and_infinity_in_a_row() {
    let Some(gpu) = gpu("nan_and_infinity_in_a_row") else { return };
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    // A NaN poisons its row only; +inf takes all the mass (inf - inf is NaN, as in PyTorch).
    let rows = [[1.0, nan, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], [-inf, 0.0, -inf, 1.0], [inf, 1.0, 2.0, 3.0]];
    let data: Vec<f32> = rows.concat();
    for &op in SoftmaxOp::ALL {
        cross_check(
            &format!("{} with NaN and infinities", op.name()),
            &gpu,
            tolerance(op),
            |d| vec![Tensor::from_slice(&data, &[4, 4], d)],
            |x| apply(op, &x[0], 1),
        );
    }
    let p: Vec<f32> = Tensor::from_slice(&data, &[4, 4], &gpu).softmax(1).to_vec();
    assert!(p[..4].iter().all(|v| v.is_nan()), "a NaN poisons its row: {:?}", &p[..4]);
    assert!(p[4..8].iter().all(|v| v.is_finite()), "and only its row: {:?}", &p[4..8]);
    assert_eq!(p[8], 0.0, "-inf has probability 0");
}

#[test]
#[should_panic(expected = "softmax: axis 2 is out of range for a tensor of shape [3, 4]")]
fn softmax_along_a_missing_axis() {
    let _ = Tensor::zeros(&[3, 4], &Device::cpu()).softmax(2);
}
