//! `distributed::SyncBatchNorm` in a world of one rank (MPI's singleton start, no
//! `mpirun`): its composed forward and autograd backward must give what `BatchNorm2d` and
//! `BatchNorm1d` give, values, gradients and running statistics. The two-rank equivalence
//! runs under `mpirun` in `scripts/data_parallel_check.sh`.
//!
//! One test function: MPI starts once per process, and the `World` lives on the thread
//! that started it.
#![cfg(feature = "mpi")]

use wgrad::distributed::{all_reduce_sum, SyncBatchNorm, World};
use wgrad::nn::{BatchNorm1d, BatchNorm2d, Forward, Module};
use wgrad::{Device, Tensor};

/// float32 rounding: the fused kernels and the composed ops sum in other orders, and the
/// inputs sit at 100 with spread 3, where a float32's spacing (7.6e-6) is 2.5e-6 of a
/// normalised value; the weight gradient sums 120 such values, most of which cancel.
const TOL: f32 = 1e-4;

fn assert_close(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes differ");
    let (va, vb) = (a.to_vec::<f32>(), b.to_vec::<f32>());
    let worst = va.iter().zip(&vb).fold(0.0f32, |m, (x, y)| m.max((x - y).abs() / y.abs().max(1.0)));
    assert!(worst <= TOL, "{what}: differs by {worst:e} (relative), over {TOL:e}\n{va:?}\n{vb:?}");
}

/// A copy of `t`'s values, as a fresh leaf when `grad`.
fn copy(t: &Tensor, grad: bool) -> Tensor {
    let c = Tensor::from_slice(&t.to_vec::<f32>(), t.shape(), t.device());
    if grad {
        c.requires_grad()
    } else {
        c
    }
}

/// Two layers over equal copies of the same tensors: one plain, one synchronised.
fn pair(c: usize, momentum: Option<f32>, one_d: bool, dev: &Device) -> (Box<dyn Forward>, SyncBatchNorm, Vec<Tensor>) {
    let w = Tensor::randn(&[c], 1, dev).add_scalar(1.0);
    let b = Tensor::randn(&[c], 2, dev);
    let rm = Tensor::randn(&[c], 3, dev);
    let rv = Tensor::randn(&[c], 4, dev).square().add_scalar(0.5);
    let plain_w = copy(&w, true);
    let plain_b = copy(&b, true);
    let sync_w = copy(&w, true);
    let sync_b = copy(&b, true);
    let args =
        |w: &Tensor, b: &Tensor| (Some(w.clone()), Some(b.clone()), Some(copy(&rm, false)), Some(copy(&rv, false)));
    let (pw, pb, prm, prv) = args(&plain_w, &plain_b);
    let (sw, sb, srm, srv) = args(&sync_w, &sync_b);
    let (plain, sync): (Box<dyn Forward>, SyncBatchNorm) = if one_d {
        (
            Box::new(BatchNorm1d::from_parameters(pw, pb, prm, prv).momentum(momentum)),
            BatchNorm1d::from_parameters(sw, sb, srm, srv).momentum(momentum).into(),
        )
    } else {
        (
            Box::new(BatchNorm2d::from_parameters(pw, pb, prm, prv).momentum(momentum)),
            BatchNorm2d::from_parameters(sw, sb, srm, srv).momentum(momentum).into(),
        )
    };
    (plain, sync, vec![plain_w, plain_b, sync_w, sync_b])
}

/// Training steps on both layers: outputs, the gradients of a weighted sum with respect
/// to input, weight and bias, and the running statistics after each step.
fn check_training(shape: &[usize], momentum: Option<f32>, dev: &Device) {
    let c = shape[1];
    let (plain, sync, leaves) = pair(c, momentum, shape.len() < 4, dev);
    for step in 0..3u64 {
        let what = format!("shape {shape:?}, momentum {momentum:?}, step {step}");
        // A large offset makes a one-pass variance lose its digits; the two-pass one does not.
        let x = Tensor::randn(shape, 10 + step, dev).mul_scalar(3.0).add_scalar(100.0);
        let r = Tensor::randn(shape, 20 + step, dev);
        let (xp, xs) = (copy(&x, true), copy(&x, true));
        let (yp, ys) = (plain.forward(&xp), sync.forward(&xs));
        assert_close(&format!("{what}: output"), &ys, &yp);
        let gp = yp.mul(&r).sum_all().backward();
        let gs = ys.mul(&r).sum_all().backward();
        assert_close(&format!("{what}: input gradient"), gs.wrt(&xs), gp.wrt(&xp));
        assert_close(&format!("{what}: weight gradient"), gs.wrt(&leaves[2]), gp.wrt(&leaves[0]));
        assert_close(&format!("{what}: bias gradient"), gs.wrt(&leaves[3]), gp.wrt(&leaves[1]));
        let (bp, bs) = (plain.named_buffers(), sync.named_buffers());
        assert_eq!(bs.len(), 3, "{what}: buffers");
        for ((np, tp), (ns, ts)) in bp.iter().zip(&bs).take(2) {
            assert_eq!(np, ns);
            assert_close(&format!("{what}: {ns}"), ts, tp);
        }
        assert_eq!(bs[2].1.to_vec::<i32>(), [step as i32 + 1], "{what}: num_batches_tracked");
    }
    // Evaluation: the running statistics, as BatchNorm's.
    let mut sync = sync;
    sync.set_training(false);
    let mut plain = plain;
    plain.set_training(false);
    let x = Tensor::randn(shape, 30, dev);
    assert_close("evaluation output", &sync.forward(&x), &plain.forward(&x));
}

#[test]
fn sync_batch_norm_with_one_rank_is_batch_norm() {
    let world = World::init().expect("MPI starts as a world of one without mpirun");
    assert_eq!(world.size(), 1);
    let dev = Device::cpu();

    // The all-reduce of one rank is the identity, forward and backward.
    let x = Tensor::randn(&[2, 3], 5, &dev).requires_grad();
    let s = all_reduce_sum(&x, &world);
    assert_eq!(s.to_vec::<f32>(), x.to_vec::<f32>());
    let r = Tensor::randn(&[2, 3], 6, &dev);
    assert_eq!(s.mul(&r).sum_all().backward().wrt(&x).to_vec::<f32>(), r.to_vec::<f32>());

    check_training(&[4, 3, 5, 6], Some(0.1), &dev);
    check_training(&[2, 5, 3, 1], None, &dev);
    check_training(&[7, 4], Some(0.3), &dev);
    check_training(&[3, 2, 5], Some(0.1), &dev);
    // The composed ops on the software adapter (lavapipe), when there is one.
    match Device::by_name("software") {
        Ok(gpu) => {
            check_training(&[4, 3, 5, 6], Some(0.1), &gpu);
            check_training(&[2, 5, 3, 1], None, &gpu);
            check_training(&[8, 8, 26, 26], Some(0.1), &gpu);
        }
        Err(e) if std::env::var_os("CI").is_some() => panic!("no software adapter under CI: {e}"),
        Err(e) => eprintln!("skipping the software adapter: {e}"),
    }

    // Same names as BatchNorm2d's, so state dicts carry over; PyTorch's printed form.
    let bn = BatchNorm2d::new(4, &dev).eps(1e-3);
    let names = |m: &dyn Module| -> Vec<String> {
        m.named_parameters().into_iter().map(|(n, _)| n).chain(m.named_buffers().into_iter().map(|(n, _)| n)).collect()
    };
    let expected = names(&bn);
    let sync = SyncBatchNorm::from(bn);
    assert_eq!(names(&sync), expected);
    assert_eq!(sync.describe(), "SyncBatchNorm(4, eps=0.001, momentum=0.1, affine=True, track_running_stats=True)");

    // A single value per channel over all ranks is refused, as by BatchNorm2d.
    let lonely = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        SyncBatchNorm::new(2, &dev).forward(&Tensor::ones(&[1, 2, 1, 1], &dev))
    }));
    let message = *lonely.expect_err("one value per channel").downcast::<String>().unwrap();
    assert!(message.contains("expected more than 1 value per channel"), "{message}");
}
