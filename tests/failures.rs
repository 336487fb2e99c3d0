//! What fails, and how: shapes too large for `usize` panic naming the op and the shape,
//! before anything is allocated or recorded; allocations the host or the device cannot
//! serve are `Err`s from the `try_*` entry points and catchable panics elsewhere; errors
//! the GPU reports are `Err`s from `try_synchronize` and `try_to_vec`; and a panic in the
//! middle of an op leaves the shared device usable.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use wgrad::testing::gpu_test_device;
use wgrad::{Device, Error, Tensor};

/// GPU errors are reported per device, to the next fallible call from any thread: the GPU
/// tests of this binary take turns so that one test's error does not reach another's.
static GPU_TURN: Mutex<()> = Mutex::new(());

fn gpu_turn() -> std::sync::MutexGuard<'static, ()> {
    GPU_TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The panic message of `f`, which must panic.
fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    let payload = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(p) => p,
    };
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn assert_panics_with<R>(f: impl FnOnce() -> R, parts: &[&str]) {
    let msg = panic_message(f);
    for part in parts {
        assert!(msg.contains(part), "panic message {msg:?} lacks {part:?}");
    }
}

const HUGE: [usize; 2] = [1 << 32, 1 << 32];

#[test]
fn element_counts_past_usize_panic_naming_the_op_and_the_shape() {
    let dev = Device::cpu();
    assert_panics_with(
        || Tensor::from_slice::<f32>(&[], &HUGE, &dev),
        &["from_slice: shape [4294967296, 4294967296] has more than usize::MAX elements"],
    );
    assert_panics_with(|| Tensor::try_from_slice::<f32>(&[], &HUGE, &dev), &["from_slice", "4294967296"]);
    let empty = Tensor::zeros(&[0], &dev);
    assert_panics_with(|| empty.reshape(&[1 << 32, 1 << 32]), &["reshape", "[4294967296, 4294967296]"]);
    assert_panics_with(|| empty.reshape(&[0, 1 << 40, 1 << 40]), &["reshape", "strides past usize::MAX"]);
    assert_panics_with(|| Tensor::full(&[1 << 34, 1 << 30], 5.0, &dev), &["full", "[17179869184, 1073741824]"]);
    assert_panics_with(|| Tensor::try_zeros(&[1 << 34, 1 << 30], &dev), &["zeros", "[17179869184, 1073741824]"]);
    // Valid operands whose broadcast or product would be too large.
    let col = Tensor::zeros(&[0, 1], &dev).broadcast_to(&[0, 1 << 33]);
    let (a, b) = (col.narrow(0, 0, 0), Tensor::zeros(&[1 << 33, 0], &dev).narrow(1, 0, 0));
    assert_panics_with(|| a.add(&b.reshape(&[1 << 33, 0, 1])), &["add", "8589934592"]);
    assert_panics_with(|| col.broadcast_to(&[1 << 33, 1 << 33]), &["broadcast_to"]);
    assert_panics_with(|| Tensor::zeros(&[3], &dev).narrow(0, usize::MAX, 2), &["narrow", "out of range"]);
    // Exactly representable sizes are fine.
    assert_eq!(Tensor::zeros(&[0, 1 << 40], &dev).reshape(&[1 << 20, 0, 1 << 20]).numel(), 0);
}

/// The example: on a GPU, a fill of `[2^34, 2^30]` wrapped to 0 elements, a narrow
/// of it read back zeros, and `.contiguous()` made wgpu panic with the batch lock held,
/// after which every op on the device panicked with `PoisonError`.
#[test]
fn a_shape_too_large_on_the_gpu_panics_before_touching_the_device() {
    let Some(dev) = gpu_test_device() else { return };
    let _turn = gpu_turn();
    assert_panics_with(
        || Tensor::full(&[1 << 34, 1 << 30], 5.0, &dev).narrow(0, 0, 2).narrow(1, 0, 2).contiguous().to_vec::<f32>(),
        &["full: shape [17179869184, 1073741824] has more than usize::MAX elements"],
    );
    assert_panics_with(|| Tensor::from_slice::<f32>(&[], &HUGE, &dev), &["from_slice", "4294967296"]);
    dev.try_synchronize().unwrap();
    let x = Tensor::full(&[2, 3], 5.0, &dev).narrow(1, 1, 2).contiguous();
    assert_eq!(x.to_vec::<f32>(), vec![5.0; 4]);
}

#[test]
fn a_panic_while_recording_leaves_the_device_usable() {
    let Some(dev) = gpu_test_device() else { return };
    let _turn = gpu_turn();
    dev.try_synchronize().unwrap();
    let ctx = dev.gpu_context().unwrap().clone();
    let lost = Tensor::ones(&[5], &dev).add_scalar(1.0); // recorded, not yet submitted
    assert_panics_with(|| ctx.debug_panic_while_recording(), &["batch lock held"]);
    // The half-recorded batch was dropped and that is reported once, as an error...
    match lost.try_to_vec::<f32>() {
        Err(Error::Gpu(msg)) => assert!(msg.contains("dropped"), "{msg}"),
        other => panic!("expected the dropped batch to be reported, got {other:?}"),
    }
    // ...and the device goes on working.
    let y = Tensor::arange(0.0, 5.0, 1.0, &dev).mul_scalar(2.0);
    assert_eq!(y.to_vec::<f32>(), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
    dev.try_synchronize().unwrap();
}

/// A validation error in recorded work (here a copy past the end of a buffer) is an
/// `Err` from `try_synchronize` and `try_to_vec`, a panic with the GPU's message from
/// `to_vec`, and the device keeps working afterwards. wgpu's default handler used to
/// panic from inside the submit, with the batch lock held.
#[test]
fn gpu_validation_errors_are_errors_and_the_device_keeps_working() {
    let Some(dev) = gpu_test_device() else { return };
    let _turn = gpu_turn();
    dev.try_synchronize().unwrap();
    let ctx = dev.gpu_context().unwrap().clone();
    let buffer = |size| {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("failures test"),
            size,
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    };
    let (src, dst) = (buffer(16), buffer(16));
    let bad_copy = || ctx.record_copy(&src, 0, &dst, 0, 64);

    bad_copy();
    match dev.try_synchronize() {
        Err(e @ Error::Gpu(_)) => assert!(e.to_string().starts_with("GPU error"), "{e}"),
        other => panic!("expected a GPU error, got {other:?}"),
    }
    dev.try_synchronize().unwrap(); // reported once

    // Work recorded in the same batch as the failing command is lost with it: the tensor
    // it computed is reported as an error, and a tensor made afterwards is fine.
    let t = Tensor::full(&[3], 7.0, &dev);
    bad_copy();
    assert!(matches!(t.try_to_vec::<f32>(), Err(Error::Gpu(_))));
    let t = Tensor::full(&[3], 7.0, &dev);
    assert_eq!(t.try_to_vec::<f32>().unwrap(), vec![7.0; 3]);

    bad_copy();
    assert_panics_with(|| t.to_vec::<f32>(), &["to_vec", "GPU error"]);
    bad_copy();
    let r = Tensor::try_zeros(&[4], &dev).and_then(|_| dev.try_synchronize());
    assert!(matches!(r, Err(Error::Gpu(_))), "{r:?}");

    let y = (&Tensor::arange(0.0, 4.0, 1.0, &dev) + 1.0).sum_all();
    assert_eq!(y.item(), 10.0);
    dev.try_synchronize().unwrap();
}

/// `Tensor::zeros(&[100_000_000_000])` on the CPU aborted the process: now the `try_*`
/// constructors return `Error::OutOfMemory` naming the op and the size, the others panic
/// with that message (a panic can be caught, an abort cannot), and memory freed after
/// the failure serves later tensors.
#[test]
fn cpu_allocations_beyond_memory_are_errors() {
    let dev = Device::cpu();
    // 4 PiB: more than any address space, so refused even where the kernel overcommits.
    let n = 1usize << 50;
    match Tensor::try_zeros(&[n], &dev) {
        Err(e @ Error::OutOfMemory { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("zeros") && msg.contains(&(4 * n).to_string()) && msg.contains("CPU"), "{msg}");
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    assert!(matches!(Tensor::try_full(&[n], 2.0, &dev), Err(Error::OutOfMemory { .. })));
    assert_panics_with(|| Tensor::zeros(&[n], &dev), &["zeros: out of memory allocating 4503599627370496 bytes"]);
    assert_panics_with(|| Tensor::rand(&[1 << 20, 1 << 30], 0, &dev), &["rand: out of memory"]);
    assert_panics_with(
        || Tensor::zeros(&[1], &dev).broadcast_to(&[1 << 30, 1 << 20]).contiguous(),
        &["contiguous: out of memory"],
    );
    // The size, 400 GB, where the kernel does not promise it blindly.
    let overcommit = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if overcommit.trim() != "1" {
        assert!(matches!(Tensor::try_zeros(&[100_000_000_000], &dev), Err(Error::OutOfMemory { .. })));
    }
    let ok = Tensor::try_full(&[1000], 3.0, &dev).unwrap();
    assert_eq!(ok.sum_all().item(), 3000.0);
}

/// The CPU kernels allocate their outputs fallibly too: an op whose output the host cannot
/// hold panics with the out-of-memory message (naming the op family) instead of aborting.
#[test]
fn cpu_kernel_outputs_beyond_memory_panic_instead_of_aborting() {
    let dev = Device::cpu();
    let big = Tensor::zeros(&[1], &dev).broadcast_to(&[1 << 25, 1 << 25]); // a view: no memory
    assert_panics_with(|| big.add_scalar(1.0), &["elementwise: out of memory allocating 4503599627370496 bytes"]);
    assert_panics_with(|| big.softmax(1), &["out of memory"]);
    let col = Tensor::ones(&[1 << 25, 1], &dev);
    assert_panics_with(|| col.matmul(&Tensor::ones(&[1, 1 << 25], &dev)), &["matmul: out of memory"]);
}

/// Window arithmetic with huge padding, dilation or kernels panics naming the op instead of
/// wrapping into a small, wrong output.
#[test]
fn window_geometry_past_usize_panics_naming_the_op() {
    use wgrad::{ConvOptions, MaxPool2dOptions};
    let dev = Device::cpu();
    let x = Tensor::ones(&[1, 1, 4, 4], &dev);
    let w = Tensor::ones(&[1, 1, 3, 3], &dev);
    assert_panics_with(|| x.conv2d(&w, None, &ConvOptions::new().padding(usize::MAX / 2)), &["conv2d", "usize::MAX"]);
    assert_panics_with(|| x.conv2d(&w, None, &ConvOptions::new().dilation(usize::MAX)), &["conv2d", "usize::MAX"]);
    assert_panics_with(|| x.max_pool2d(&MaxPool2dOptions::new(2).dilation(usize::MAX)), &["max_pool2d", "too small"]);
    let rows = Tensor::zeros(&[1, 4], &dev).broadcast_to(&[1 << 33, 4]); // views: no memory
    assert_panics_with(
        || rows.linear(&rows, None, wgrad::Activation::None),
        &["linear: shape [8589934592, 8589934592] has more than usize::MAX elements"],
    );
}
