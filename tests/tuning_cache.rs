//! The matmul tuner across processes: a second process on the same adapter reads the first
//! one's choices from the cache file and tunes nothing, and a process whose tuning budget
//! is spent leaves the classes it did not time for a later process.
//!
//! Each test runs this test binary again as a child process (the tuner's choices and its
//! budget are per process), with its own cache file.

use std::path::{Path, PathBuf};
use std::process::Command;

use wgrad::testing::gpu_test_device;
use wgrad::Tensor;

/// Set in the child processes only.
const CHILD: &str = "WGRAD_TUNING_CACHE_TEST_CHILD";
const CHILD_TEST: &str = "products_of_three_shape_classes_in_a_child_process";

/// The child's work (nothing in the parent test run): products of three shape classes on
/// the GPU, each checked against the CPU, then one line per class with the configuration
/// it ran with.
#[test]
fn products_of_three_shape_classes_in_a_child_process() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let dev = gpu_test_device().expect("a GPU adapter in the child process");
    for (i, (m, k, n)) in [(33, 70, 20), (200, 64, 128), (5, 300, 7)].into_iter().enumerate() {
        let cpu = wgrad::Device::cpu();
        let a = Tensor::randn(&[m, k], 10 + i as u64, &cpu);
        let b = Tensor::randn(&[k, n], 20 + i as u64, &cpu);
        let expected = a.matmul(&b).to_vec::<f32>();
        let got = a.to_device(&dev).matmul(&b.to_device(&dev)).to_vec::<f32>();
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "[{m}x{k}] x [{k}x{n}]: {g} against {e}");
        }
    }
    let ctx = dev.gpu_context().expect("a GPU device");
    for (class, config) in wgrad::gpu::tuning::used_matmul_configs(ctx) {
        println!("used\t{class}\t{config}");
    }
}

/// Runs the child with the cache file `cache` and the tuning budget `budget_ms`; the
/// `used` lines it printed.
fn child(cache: &Path, budget_ms: &str) -> Vec<String> {
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("WGRAD_TUNING_CACHE", cache)
        .env("WGRAD_TUNING_BUDGET_MS", budget_ms)
        .env_remove("WGRAD_MATMUL_CONFIG")
        .env_remove("WGRAD_MATMUL_RECEIPT")
        .output()
        .expect("running the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // The harness prints the test's name on the line the first `used` line starts on.
    let used: Vec<String> = stdout.lines().filter_map(|l| l.find("used\t").map(|i| l[i..].to_string())).collect();
    assert_eq!(used.len(), 3, "expected three shape classes, the child printed:\n{stdout}");
    used
}

/// A fresh cache file path for one test.
fn cache_file(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgrad-tuning-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    dir.join("matmul-tuning.txt")
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_second_process_reads_the_choices_and_tunes_nothing() {
    if gpu_test_device().is_none() {
        return;
    }
    let cache = cache_file("second");
    let first = child(&cache, "60000");
    assert_eq!(lines(&cache), 3, "the first process tuned three classes and kept each");
    let written = std::fs::read_to_string(&cache).unwrap();
    let second = child(&cache, "60000");
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), written, "the second process tuned again");
    assert_eq!(first, second, "the second process chose otherwise");
    let _ = std::fs::remove_dir_all(cache.parent().unwrap());
}

#[test]
fn a_spent_budget_leaves_the_classes_to_a_later_process() {
    if gpu_test_device().is_none() {
        return;
    }
    let cache = cache_file("budget");
    // No budget at all: every class takes its first candidate untimed and none is kept.
    child(&cache, "0");
    assert_eq!(lines(&cache), 0, "an untimed choice was kept for later processes");
    child(&cache, "60000");
    assert_eq!(lines(&cache), 3, "the later process did not tune the three classes");
    let _ = std::fs::remove_dir_all(cache.parent().unwrap());
}

#[test]
fn unreadable_lines_cost_a_tuning_pass_not_the_run() {
    if gpu_test_device().is_none() {
        return;
    }
    let cache = cache_file("unreadable");
    child(&cache, "60000");
    let text = std::fs::read_to_string(&cache).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    // The last choice cut short, as a crash in the middle of a write leaves it, and lines
    // of another format.
    let cut = &lines[2][..lines[2].len() / 2];
    lines[2] = cut;
    let damaged = format!("{}\nnot a tuning line\nx\ty\tz\tw\n", lines.join("\n"));
    std::fs::write(&cache, &damaged).unwrap();
    // The child checks its products against the CPU and that three classes ran.
    child(&cache, "60000");
    let after = std::fs::read_to_string(&cache).unwrap();
    assert_eq!(after.lines().count(), damaged.lines().count() + 1, "the damaged class was not tuned again:\n{after}");
    assert!(after.starts_with(&damaged), "the readable lines changed:\n{after}");
    let _ = std::fs::remove_dir_all(cache.parent().unwrap());
}
