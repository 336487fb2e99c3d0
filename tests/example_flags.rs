//! The examples' flags: every value checked before the device opens or the data loads
//! (`examples/common/flags.rs`, compiled in here), and the examples themselves run on bad
//! flags and on a run whose loss becomes NaN, when `cargo test` has built them.

#[path = "../examples/common/flags.rs"]
mod flags;

mod common;
use common::TempDir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use flags::{check_writable, Args, ALLOW_NONFINITE_LOSS};

const WITH_VALUE: [&str; 12] = [
    "device",
    "data",
    "train",
    "test",
    "epochs",
    "batch-size",
    "seed",
    "lr",
    "save",
    "validation-split",
    "early-stopping",
    "checkpoint-dir",
];

fn parse(args: &[&str]) -> Result<Option<Args>, String> {
    Args::from_iter(args.iter().map(|a| a.to_string()), &WITH_VALUE, &[ALLOW_NONFINITE_LOSS])
}

fn args(list: &[&str]) -> Args {
    parse(list).unwrap().expect("not --help")
}

// ---- parsing ----

#[test]
fn values_switches_help_and_mistakes_parse_as_they_should() {
    let a = args(&["--epochs", "3", "--lr=0.5", "--allow-nonfinite-loss", "--epochs=4"]);
    assert_eq!(a.get("epochs"), Some("4"), "the last value wins");
    assert_eq!(a.get("lr"), Some("0.5"));
    assert!(a.has(ALLOW_NONFINITE_LOSS));
    assert!(!args(&[]).has(ALLOW_NONFINITE_LOSS));
    assert!(parse(&["--epochs", "3", "--help"]).unwrap().is_none());
    assert!(parse(&["-h"]).unwrap().is_none());

    for (bad, expected) in [
        (&["--bogus", "1"][..], "unknown argument '--bogus'"),
        (&["epochs", "1"][..], "unknown argument 'epochs'"),
        (&["--epochs"][..], "--epochs needs a value"),
        (&["--allow-nonfinite-loss=yes"][..], "--allow-nonfinite-loss takes no value"),
    ] {
        let message = parse(bad).unwrap_err();
        assert!(message.contains(expected), "{bad:?}: {message}");
    }
}

// ---- values ----

#[test]
fn counts_must_be_whole_numbers_of_at_least_one() {
    assert_eq!(args(&[]).count("epochs", 15), Ok(15));
    assert_eq!(args(&["--epochs", "2"]).count("epochs", 15), Ok(2));
    for bad in ["0", "-1", "1.5", "", "many", "99999999999999999999999"] {
        let message = args(&["--batch-size", bad]).count("batch-size", 32).unwrap_err();
        assert!(message.contains("--batch-size must be a whole number of at least 1"), "{message}");
        assert!(message.contains(&format!("'{bad}'")), "{message}");
    }
}

#[test]
fn learning_rates_must_be_finite_and_positive() {
    assert_eq!(args(&[]).learning_rate("lr", 1e-3), Ok(1e-3));
    assert_eq!(args(&["--lr", "3e-4"]).learning_rate("lr", 1e-3), Ok(3e-4));
    for bad in ["0", "-1", "nan", "NaN", "inf", "-inf", "1e39", "fast"] {
        let message = args(&["--lr", bad]).learning_rate("lr", 1e-3).unwrap_err();
        assert!(message.contains("--lr must be a finite number above 0"), "{bad}: {message}");
    }
}

#[test]
fn seeds_take_any_u64_and_devices_the_four_names() {
    assert_eq!(args(&["--seed", "0"]).seed("seed", 7), Ok(0));
    assert_eq!(args(&["--seed", "18446744073709551615"]).seed("seed", 7), Ok(u64::MAX));
    assert!(args(&["--seed", "-1"]).seed("seed", 7).unwrap_err().contains("--seed must be a whole number"));
    assert_eq!(args(&[]).device(), Ok("auto"));
    for name in ["auto", "gpu", "software", "cpu"] {
        assert_eq!(args(&["--device", name]).device(), Ok(name));
    }
    let message = args(&["--device", "cuda"]).device().unwrap_err();
    assert!(message.contains("auto, gpu, software or cpu, not 'cuda'"), "{message}");
}

#[test]
fn input_paths_must_exist() {
    let dir = TempDir::new("inputs");
    let file = dir.0.join("train.csv");
    std::fs::write(&file, "text,label\n").unwrap();
    let (dir_s, file_s) = (dir.0.display().to_string(), file.display().to_string());
    assert_eq!(args(&["--data", &dir_s]).existing_dir("data"), Ok(Some(dir.0.clone())));
    assert_eq!(args(&[]).existing_dir("data"), Ok(None));
    assert!(args(&["--data", &file_s]).existing_dir("data").unwrap_err().contains("not a folder"));
    let missing = dir.0.join("nowhere").display().to_string();
    assert!(args(&["--data", &missing]).existing_dir("data").unwrap_err().contains(&missing));
    assert_eq!(args(&["--train", &file_s]).existing_file("train"), Ok(Some(file.clone())));
    assert!(args(&["--train", &dir_s]).existing_file("train").unwrap_err().contains("a folder, not a file"));
    assert!(args(&["--train", &missing]).existing_file("train").unwrap_err().contains(&missing));
}

#[test]
fn an_output_file_needs_a_folder_that_takes_a_new_file() {
    let dir = TempDir::new("outputs");
    let target = dir.0.join("model.safetensors");
    let target_s = target.display().to_string();
    assert_eq!(args(&["--save", &target_s]).output_file("save"), Ok(Some(target.clone())));
    // The check leaves nothing behind.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
    assert_eq!(args(&[]).output_file("save"), Ok(None));

    let missing = dir.0.join("no-such-folder").join("model.safetensors");
    let message = args(&["--save", &missing.display().to_string()]).output_file("save").unwrap_err();
    assert!(message.contains("does not exist") && message.contains("no-such-folder"), "{message}");
    let message = args(&["--save", &dir.0.display().to_string()]).output_file("save").unwrap_err();
    assert!(message.contains("a folder, not a file"), "{message}");

    // A folder that refuses new files (unless this runs as root, who may write anyway).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let locked = dir.0.join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        let writable_anyway = std::fs::File::create(locked.join("probe")).is_ok();
        let result = check_writable(&locked.join("model.safetensors"));
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
        if !writable_anyway {
            assert!(result.unwrap_err().contains("cannot create a file"));
        }
    }
}

#[test]
fn fractions_optional_counts_and_output_folders_are_checked() {
    assert_eq!(args(&["--validation-split", "0.1"]).fraction("validation-split"), Ok(Some(0.1)));
    assert_eq!(args(&[]).fraction("validation-split"), Ok(None));
    for bad in ["0", "1", "-0.1", "1.5", "nan", "a tenth"] {
        let err = args(&["--validation-split", bad]).fraction("validation-split").unwrap_err();
        assert!(err.contains("between 0 and 1"), "{bad}: {err}");
    }
    assert_eq!(args(&["--early-stopping", "3"]).optional_count("early-stopping"), Ok(Some(3)));
    assert_eq!(args(&[]).optional_count("early-stopping"), Ok(None));
    assert!(args(&["--early-stopping", "0"]).optional_count("early-stopping").is_err());

    let dir = TempDir::new("output-dir");
    let new = dir.0.join("a").join("b");
    let flag = new.display().to_string();
    assert_eq!(args(&["--checkpoint-dir", &flag]).output_dir("checkpoint-dir"), Ok(Some(new.clone())));
    assert!(new.is_dir(), "the folder is created");
    let file = dir.0.join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = args(&["--checkpoint-dir", &file.display().to_string()]).output_dir("checkpoint-dir").unwrap_err();
    assert!(err.contains("not a folder"), "{err}");
}

// ---- the examples themselves ----

/// The example `name` as `cargo test` builds it, beside this test's own binary; `None`
/// (and a note) when it is absent or older than a source file, as after
/// `cargo test --test example_flags`, which builds no examples.
fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources =
        [root.join("src"), root.join("examples").join("common"), root.join("examples").join(format!("{name}.rs"))];
    let newest = sources.iter().filter_map(|p| newest_file(p)).max();
    match (built, newest) {
        (Some(built), Some(newest)) if built >= newest => Some(path),
        _ => {
            eprintln!("SKIPPING the {name} example runs: it is not built or older than its sources (run `cargo test`)");
            None
        }
    }
}

/// The latest modification time of `path` or, for a folder, of any file under it.
fn newest_file(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path).ok()?.filter_map(|e| e.ok()).filter_map(|e| newest_file(&e.path())).max()
}

/// Runs `exe` with `args` on the CPU; its status code, stdout and stderr.
fn run(exe: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(exe).args(args).env("WGRAD_DEVICE", "cpu").output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_examples_refuse_bad_flags_before_opening_the_device() {
    let dir = TempDir::new("examples");
    let missing_save = dir.0.join("missing").join("out.safetensors").display().to_string();
    let training_cases: [(&[&str], &str); 9] = [
        (&["--batch-size", "0"], "--batch-size must be a whole number of at least 1"),
        (&["--epochs", "0"], "--epochs must be a whole number of at least 1"),
        (&["--lr", "-1"], "--lr must be a finite number above 0"),
        (&["--lr", "nan"], "--lr must be a finite number above 0"),
        (&["--lr", "inf"], "--lr must be a finite number above 0"),
        (&["--save", &missing_save], "does not exist"),
        (&["--device", "tpu"], "--device must be auto, gpu, software or cpu"),
        (&["--validation-split", "1"], "--validation-split must be a number between 0 and 1"),
        (&["--resume"], "--resume continues from --checkpoint-dir"),
    ];
    // fine_tune has no validation split or resumption: its runs are short, and three.
    let trainer_flags = |name: &str, flags: &[&str]| {
        name != "fine_tune" || !flags[0].starts_with("--validation") && flags[0] != "--resume"
    };
    for name in ["mnist_mlp", "mnist_cnn", "mnist_lstm", "text_classifier", "fine_tune"] {
        let Some(exe) = example(name) else { continue };
        for (flags, expected) in training_cases.into_iter().filter(|(flags, _)| trainer_flags(name, flags)) {
            let (code, stdout, stderr) = run(&exe, flags);
            assert_eq!(code, 2, "{name} {flags:?}: {stderr}");
            assert!(stderr.contains(expected), "{name} {flags:?}: {stderr}");
            assert!(stdout.is_empty(), "{name} {flags:?} went on to print: {stdout}");
        }
    }
    // --plot draws only in a build with the plot feature, and into a folder.
    let a_file = dir.0.join("a-file");
    std::fs::write(&a_file, b"x").unwrap();
    let expected = if cfg!(feature = "plot") { "not a folder" } else { "--features plot" };
    for name in ["mnist_mlp", "text_classifier"] {
        let Some(exe) = example(name) else { continue };
        let (code, stdout, stderr) = run(&exe, &["--plot", &a_file.display().to_string()]);
        assert_eq!(code, 2, "{name} --plot: {stderr}");
        assert!(stderr.contains(expected) && stdout.is_empty(), "{name} --plot: {stderr}");
    }
    // --distributed trains over MPI, which a build without the mpi feature cannot.
    if !cfg!(feature = "mpi") {
        for name in ["mnist_mlp", "mnist_cnn"] {
            let Some(exe) = example(name) else { continue };
            let (code, stdout, stderr) = run(&exe, &["--distributed"]);
            assert_eq!(code, 2, "{name} --distributed: {stderr}");
            assert!(stderr.contains("--features mpi") && stdout.is_empty(), "{name} --distributed: {stderr}");
        }
    }
    let (data_flag, data_value) = ("--data", dir.0.join("nowhere").display().to_string());
    if let Some(exe) = example("mnist_mlp") {
        let (code, _, stderr) = run(&exe, &[data_flag, &data_value]);
        assert_eq!(code, 2, "{stderr}");
    }
    if let Some(exe) = example("text_classifier") {
        let (code, _, stderr) = run(&exe, &["--train", &data_value]);
        assert_eq!(code, 2, "{stderr}");
    }
    if let Some(exe) = example("fine_tune") {
        let fine_tune_cases: [(&[&str], &str); 5] = [
            (&["--train-size", "0"], "--train-size must be a whole number of at least 1"),
            (&["--pretrain-epochs", "0"], "--pretrain-epochs must be a whole number of at least 1"),
            (&["--backbone-lr", "0"], "--backbone-lr must be a finite number above 0"),
            (&["--from", &data_value], "--from"),
            (&[data_flag, &data_value], "--data"),
        ];
        for (flags, expected) in fine_tune_cases {
            let (code, stdout, stderr) = run(&exe, flags);
            assert_eq!(code, 2, "fine_tune {flags:?}: {stderr}");
            assert!(stderr.contains(expected), "fine_tune {flags:?}: {stderr}");
            assert!(stdout.is_empty(), "fine_tune {flags:?} went on to print: {stdout}");
        }
    }
    if let Some(exe) = example("bench") {
        for flags in [&["--runs", "0"][..], &["--json", &missing_save], &["--device", "tpu"]] {
            let (code, stdout, stderr) = run(&exe, flags);
            assert_eq!(code, 2, "bench {flags:?}: {stderr}");
            assert!(stdout.is_empty(), "bench {flags:?} went on to print: {stdout}");
        }
    }
    if let Some(exe) = example("device_check") {
        let (code, _, stderr) = run(&exe, &["--device", "tpu"]);
        assert_eq!(code, 2, "{stderr}");
    }
}

/// An MNIST-format folder of `train` and 8 test images of 28x28 noise.
fn write_tiny_mnist(dir: &Path, train: u32) {
    let idx = |magic: u32, dims: &[u32], data: Vec<u8>| {
        let mut out = magic.to_be_bytes().to_vec();
        dims.iter().for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
        out.extend(data);
        out
    };
    for (prefix, count) in [("train", train), ("t10k", 8)] {
        let pixels = (0..count * 784).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), idx(0x803, &[count, 28, 28], pixels)).unwrap();
        let labels = (0..count).map(|i| (i % 10) as u8).collect();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), idx(0x801, &[count], labels)).unwrap();
    }
}

#[test]
fn a_training_run_whose_loss_becomes_nan_stops_naming_epoch_and_step() {
    let Some(exe) = example("mnist_mlp") else { return };
    let dir = TempDir::new("nan-run");
    write_tiny_mnist(&dir.0, 40);
    let data = dir.0.display().to_string();
    let save = dir.0.join("model.safetensors");
    // A learning rate this large throws the weights to infinity within a step or two.
    let flags = ["--device", "cpu", "--data", &data, "--epochs", "2", "--batch-size", "8", "--lr", "1e30"];
    let (code, stdout, stderr) = run(&exe, &[&flags[..], &["--save", &save.display().to_string()]].concat());
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("at epoch 1/2, step "), "{stderr}");
    assert!(stderr.contains("/5 (") && stderr.contains("--allow-nonfinite-loss"), "{stderr}");
    assert!(!stdout.contains("test accuracy"), "{stdout}");
    assert!(!save.exists(), "a stopped run saves nothing");

    let (code, stdout, stderr) = run(&exe, &[&flags[..], &["--allow-nonfinite-loss"]].concat());
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("test accuracy"), "{stdout}");
}

#[test]
fn an_empty_training_set_stops_the_example_naming_the_file() {
    let Some(exe) = example("mnist_mlp") else { return };
    let dir = TempDir::new("empty-run");
    write_tiny_mnist(&dir.0, 0);
    let (code, stdout, stderr) = run(&exe, &["--device", "cpu", "--data", &dir.0.display().to_string()]);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("train-images-idx3-ubyte") && stderr.contains("no images"), "{stderr}");
}
