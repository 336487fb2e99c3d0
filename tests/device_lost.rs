//! A lost GPU device is an `Err` from every fallible call and a clear panic elsewhere. A
//! binary of its own, because the device it destroys is shared by the whole process.

use std::panic::{catch_unwind, AssertUnwindSafe};

use wgrad::testing::gpu_test_device;
use wgrad::{Error, Tensor};

#[test]
fn a_lost_device_is_an_error_from_the_fallible_calls() {
    let Some(dev) = gpu_test_device() else { return };
    let t = Tensor::full(&[4], 1.5, &dev);
    assert_eq!(t.to_vec::<f32>(), vec![1.5; 4]);
    dev.gpu_context().unwrap().device.destroy();

    for result in [dev.try_synchronize(), t.try_to_vec::<f32>().map(drop), Tensor::try_zeros(&[2], &dev).map(drop)] {
        match result {
            Err(e @ Error::Gpu(_)) => assert!(e.to_string().contains("lost"), "{e}"),
            other => panic!("expected a lost-device error, got {other:?}"),
        }
    }
    let panicked = catch_unwind(AssertUnwindSafe(|| t.to_vec::<f32>())).unwrap_err();
    let msg = panicked.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("to_vec") && msg.contains("lost"), "{msg}");
}
