//! Device selection through the environment: `WGRAD_DEVICE` with `auto`, and what adapter
//! probing prints without `XDG_RUNTIME_DIR`. A binary of its own, because these tests set
//! process-wide environment variables and run child processes.

use std::process::Command;

use wgrad::{Device, Error};

/// `--device auto` (which is `Device::by_name("auto")`) honours `WGRAD_DEVICE` as
/// `Device::auto()` does, and an unknown value is an error listing the valid names. One
/// test, so no other test of this binary sees the variable change under it.
#[test]
fn wgrad_device_applies_to_the_auto_name() {
    std::env::set_var("WGRAD_DEVICE", "cpu");
    assert!(Device::by_name("auto").unwrap().is_cpu());

    std::env::set_var("WGRAD_DEVICE", "software");
    // The software adapter where there is one, else the error saying there is none;
    // never the CPU, which is what `auto` picks on such a machine without the variable.
    match Device::by_name(" Auto ") {
        Ok(dev) => {
            let ctx = dev.gpu_context().unwrap_or_else(|| panic!("WGRAD_DEVICE=software gave {}", dev.info()));
            assert!(ctx.adapter.is_software(), "{}", dev.info());
        }
        Err(Error::NoAdapter { wanted, .. }) => assert_eq!(wanted, "software"),
        Err(e) => panic!("WGRAD_DEVICE=software: {e}"),
    }

    for bogus in ["bogus", "tpu"] {
        std::env::set_var("WGRAD_DEVICE", bogus);
        for result in [Device::by_name("auto"), Device::auto()] {
            match result {
                Err(e @ Error::BadDeviceVar(_)) => {
                    let msg = e.to_string();
                    for word in [bogus, "auto", "gpu", "software", "cpu", "WGRAD_DEVICE"] {
                        assert!(msg.contains(word), "{msg:?} does not name {word}");
                    }
                }
                other => panic!("WGRAD_DEVICE={bogus}: expected BadDeviceVar, got {other:?}"),
            }
        }
    }

    // An explicit name is not overridden by the variable.
    assert!(Device::by_name("cpu").unwrap().is_cpu());
    std::env::set_var("WGRAD_DEVICE", "auto");
    assert!(Device::by_name("auto").is_ok());
    std::env::remove_var("WGRAD_DEVICE");
}

/// The body run in a child process by `probing_without_xdg_runtime_dir_prints_nothing`.
#[test]
fn probe_child() {
    if std::env::var_os("WGRAD_PROBE_CHILD").is_none() {
        return;
    }
    let _ = wgrad::list_adapters();
    let _ = Device::auto();
    let _ = Device::software();
}

/// Without `XDG_RUNTIME_DIR` (containers, CI, ssh), probing the adapters prints nothing
/// on stderr: Mesa's device-select layer used to print `error: XDG_RUNTIME_DIR is invalid
/// or not set in the environment.` twice, the first lines of every run that then trained
/// on the CPU. Checked with the Vulkan drivers this machine has and with none (GL only).
#[test]
fn probing_without_xdg_runtime_dir_prints_nothing() {
    let exe = std::env::current_exe().unwrap();
    for no_vulkan in [false, true] {
        let mut cmd = Command::new(&exe);
        cmd.args(["--exact", "probe_child", "--nocapture", "--test-threads=1"])
            .env("WGRAD_PROBE_CHILD", "1")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("NODEVICE_SELECT")
            .env_remove("WGRAD_DEVICE")
            .env_remove("RUST_LOG");
        if no_vulkan {
            cmd.env("VK_ICD_FILENAMES", "/nonexistent").env("VK_DRIVER_FILES", "/nonexistent");
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
        assert!(stdout.contains("probe_child"), "the child ran no test: {stdout}");
        for text in [&stderr, &stdout] {
            assert!(
                !text.contains("XDG_RUNTIME_DIR") && !text.to_lowercase().contains("error"),
                "probing (no Vulkan driver: {no_vulkan}) printed:\n{text}"
            );
        }
    }
}
