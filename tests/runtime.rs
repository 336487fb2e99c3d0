//! The GPU runtime itself: buffer reuse, dispatch folding past the per-dimension
//! workgroup limit, size limits, batching, and device selection.

use wgrad::testing::gpu_test_device;
use wgrad::{Device, Error, Tensor};

#[test]
fn a_repeated_loop_does_not_grow_the_buffer_pool() {
    let Some(dev) = gpu_test_device() else { return };
    let w = Tensor::randn(&[33, 17], 1, &dev);
    let step = |i: u64| {
        let x = Tensor::randn(&[8, 33], i, &dev);
        let y = x.matmul(&w).relu().softmax(1);
        let loss = (&y * 2.0 - 1.0).square().mean_all();
        loss.item()
    };
    // Warm up so every size class the loop needs has been created once.
    for i in 0..3 {
        step(i);
    }
    let before = dev.pool_stats().unwrap();
    for i in 3..40 {
        assert!(step(i).is_finite());
    }
    let after = dev.pool_stats().unwrap();
    // Other tests share the device and may allocate concurrently, so allow a little
    // slack; without reuse the loop alone would create hundreds of buffers.
    assert!(
        after.buffers_created - before.buffers_created < 20,
        "the pool grew from {before:?} to {after:?} over 37 identical steps"
    );
    assert!(after.buffers_reused > before.buffers_reused + 100);
}

#[test]
fn dispatches_past_the_workgroup_limit_are_folded() {
    let Some(dev) = gpu_test_device() else { return };
    // 65,535 workgroups of 256 cover 16,776,960 elements; go past that.
    let n = 65_535 * 256 + 300;
    let x = Tensor::full(&[n], 2.0, &dev).affine(3.0, 1.0);
    let v: Vec<f32> = x.to_vec();
    assert_eq!(v.len(), n);
    assert!(v.iter().all(|&e| e == 7.0), "an element past the fold was not written");
    // One workgroup per row: more rows than a grid dimension allows.
    let rows = 70_001;
    let m = Tensor::arange(0.0, rows as f32, 1.0, &dev).reshape(&[rows as isize, 1]);
    let s: Vec<f32> = m.sum(&[1], false).to_vec();
    assert_eq!(s.len(), rows);
    assert!(s.iter().enumerate().all(|(i, &e)| e == i as f32));
}

#[test]
fn a_tensor_over_the_binding_limit_is_an_error_naming_both_sizes() {
    let Some(dev) = gpu_test_device() else { return };
    let limit = dev.gpu_context().unwrap().limits.max_storage_buffer_binding_size;
    let n = (limit / 4 + 1) as usize;
    let data = vec![0.0f32; n];
    match Tensor::try_from_slice(&data, &[n], &dev) {
        Err(Error::TooLarge { bytes, limit: l, .. }) => {
            assert_eq!(bytes, (n * 4) as u64);
            assert_eq!(l, limit.min(dev.gpu_context().unwrap().limits.max_buffer_size));
            let msg = Error::TooLarge { bytes, limit: l, adapter: "x".into() }.to_string();
            assert!(msg.contains(&bytes.to_string()) && msg.contains(&l.to_string()), "{msg}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn many_small_ops_run_in_batches_and_read_back_in_order() {
    let Some(dev) = gpu_test_device() else { return };
    // More dispatches than one batch holds, each depending on the last.
    let mut x = Tensor::zeros(&[7], &dev);
    for _ in 0..600 {
        x = x.add_scalar(1.0);
    }
    assert_eq!(x.to_vec::<f32>(), vec![600.0; 7]);
}

#[test]
fn device_names_and_errors() {
    assert!(Device::by_name("cpu").unwrap().is_cpu());
    match Device::by_name("tpu") {
        Err(e @ Error::BadDeviceVar(_)) => assert!(e.to_string().contains("tpu")),
        other => panic!("expected BadDeviceVar, got {other:?}"),
    }
    let no_adapter = Error::NoAdapter { wanted: "hardware GPU", found: vec![] };
    assert!(no_adapter.to_string().contains("mesa-vulkan-drivers"));
    let listed = Error::NoAdapter { wanted: "hardware GPU", found: vec!["llvmpipe | Vulkan | Cpu".into()] };
    assert!(listed.to_string().contains("llvmpipe | Vulkan | Cpu"));
    assert!(Device::cpu().info().starts_with("CPU"));
}

#[test]
fn auto_never_picks_a_software_adapter() {
    // Whatever this machine has, `auto` (without WGRAD_DEVICE) yields hardware or the CPU.
    if std::env::var_os("WGRAD_DEVICE").is_some() {
        return;
    }
    let dev = Device::auto().unwrap();
    if let Some(ctx) = dev.gpu_context() {
        assert!(!ctx.adapter.is_software(), "auto picked {}", dev.info());
    }
}

#[test]
fn software_device_reports_its_adapter_and_limits() {
    let Some(dev) = gpu_test_device() else { return };
    let info = dev.info();
    assert!(info.contains("max storage binding") && info.contains("driver"), "{info}");
    dev.synchronize();
}

#[test]
fn threads_probing_adapters_at_once_do_not_collide() {
    // wgpu's GL back-end shares one EGL context between its instance, its adapters and the
    // devices opened on them; probing from several threads at once, or while another
    // thread runs kernels, once failed in eglMakeCurrent (BadAccess). CI runs this file on
    // GL too.
    let threads: Vec<_> = (0..6)
        .map(|i| {
            std::thread::spawn(move || {
                let listed = wgrad::list_adapters();
                let auto = Device::auto().unwrap();
                if let Some(dev) = gpu_test_device() {
                    let x = Tensor::full(&[33], i as f32, &dev).add_scalar(1.0);
                    assert_eq!(x.to_vec::<f32>(), vec![i as f32 + 1.0; 33]);
                }
                (listed.len(), auto.is_cpu())
            })
        })
        .collect();
    let results: Vec<(usize, bool)> =
        threads.into_iter().map(|t| t.join().expect("a probing thread panicked")).collect();
    assert!(results.windows(2).all(|w| w[0] == w[1]), "threads saw different adapters: {results:?}");
}
