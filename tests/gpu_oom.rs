//! Out of memory on a GPU device: a real allocation failure, made quickly and without
//! using much memory by running the software adapter (whose device memory is host memory)
//! in a child process whose address space is capped a little above what it already uses.
//! A binary of its own, as the check runs a child process with a process-wide limit.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::process::Command;

use wgrad::gpu::GpuBuffer;
use wgrad::{Device, Error, Tensor};

/// The child's body, run by `gpu_out_of_memory_is_an_error_and_the_device_recovers`.
#[test]
fn oom_child() {
    if std::env::var_os("WGRAD_OOM_CHILD").is_none() {
        return;
    }
    let dev = Device::software().expect("the parent checked for a software adapter");
    let ctx = dev.gpu_context().unwrap().clone();
    // Compile the kernels the checks below use before the cap: the JIT needs room.
    assert_eq!((&Tensor::full(&[4], 1.0, &dev) + 1.0).to_vec::<f32>(), vec![2.0; 4]);
    assert_eq!(Tensor::zeros(&[4], &dev).to_vec::<f32>(), vec![0.0; 4]);

    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let vm_kib: u64 =
        status.lines().find(|l| l.starts_with("VmSize")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let cap = (vm_kib << 10) + (512 << 20);
    let limit = libc::rlimit { rlim_cur: cap, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit only reads the struct passed to it.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);

    // Buffers are not touched until a kernel writes them, so this uses little memory.
    const MIB: u64 = 1 << 20;
    let mut held = Vec::new();
    let error = loop {
        assert!(held.len() < 64, "no out-of-memory error after {} buffers of 64 MiB", held.len());
        match GpuBuffer::try_new(&ctx, 64 * MIB, "oom test") {
            Ok(b) => held.push(b),
            Err(e) => break e,
        }
    };
    match &error {
        Error::OutOfMemory { op, bytes, .. } => assert_eq!((op.as_str(), *bytes), ("oom test", 64 * MIB)),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    let msg = error.to_string();
    assert!(msg.contains("out of memory") && msg.contains("67108864"), "{msg}");
    match Tensor::try_zeros(&[16 << 20], &dev) {
        Err(Error::OutOfMemory { op, .. }) => assert_eq!(op, "zeros"),
        other => panic!("expected OutOfMemory from try_zeros, got {other:?}"),
    }
    assert!(!held.is_empty());

    // Freed tensors go to the buffer pool; a request of another size class, larger than
    // what was left when the error came, makes the pool release them.
    drop(held);
    let n = 24 << 20; // 96 MiB
    let t = Tensor::try_full(&[n], 3.0, &dev).expect("memory freed after the error serves new tensors");
    assert_eq!(t.narrow(0, n - 2, 2).to_vec::<f32>(), vec![3.0; 2]);
    dev.try_synchronize().unwrap();
    assert_eq!((&Tensor::full(&[3], 1.0, &dev) + 1.0).to_vec::<f32>(), vec![2.0; 3]);
    println!("oom child done");
}

#[test]
fn gpu_out_of_memory_is_an_error_and_the_device_recovers() {
    let Ok(dev) = Device::software() else {
        eprintln!("gpu_out_of_memory: no software adapter, skipping");
        return;
    };
    // llvmpipe's GL driver reserves a buffer's memory on first use, not when wgpu creates
    // it: creation never fails there, so there is no error to check (see README.md, "The
    // GL back-end").
    if dev.gpu_context().unwrap().adapter.backend == wgpu::Backend::Gl {
        eprintln!("gpu_out_of_memory: the GL back-end reports no out-of-memory at buffer creation; skipping");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "oom_child", "--nocapture", "--test-threads=1"])
        .env("WGRAD_OOM_CHILD", "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("oom child done"), "child failed:\n{stdout}\n{stderr}");
}
