//! Checkpoints: round trips across devices, the file layout PyTorch's
//! `save_file(model.state_dict())` writes, atomic replacement, and every way a file can
//! fail to fit a model, each of which must leave the model untouched.

mod common;
use common::{ForgotParameters, TempDir};
use std::path::Path;
use std::sync::OnceLock;

use safetensors::{Dtype, SafeTensors};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Optimizer, Sgd};
use wgrad::{checkpoint, Device, Error, Tensor};

fn gpu(test: &str) -> Option<Device> {
    static DEVICE: OnceLock<Option<Device>> = OnceLock::new();
    let dev = DEVICE.get_or_init(wgrad::testing::gpu_test_device).clone();
    if dev.is_none() {
        eprintln!("{test}: no GPU adapter, skipping the GPU half");
    }
    dev
}

/// `Linear(4, 3) -> ReLU -> Linear(3, 2)`: parameters `0.weight [3, 4]`, `0.bias [3]`,
/// `2.weight [2, 3]`, `2.bias [2]`.
fn mlp(seed: u64, dev: &Device) -> nn::Sequential {
    nn::Sequential::new().add(nn::Linear::with_seed(4, 3, true, seed, dev)).add(nn::ReLU).add(nn::Linear::with_seed(
        3,
        2,
        true,
        seed + 1,
        dev,
    ))
}

fn values(module: &dyn Module) -> Vec<(String, Vec<f32>)> {
    module.named_parameters().into_iter().map(|(n, t)| (n, t.to_vec::<f32>())).collect()
}

fn input(dev: &Device) -> Tensor {
    Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.25, -0.75, 1.5, 0.1, -2.0], &[2, 4], dev)
}

/// Writes a safetensors file from `(name, dtype, shape, bytes)` entries, as a foreign
/// tool would.
fn write_raw(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (name.to_string(), safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).unwrap())
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The tensors of `mlp` as `(name, dtype, shape, bytes)`, each value `fill`.
fn mlp_entries(fill: f32) -> Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)> {
    let entry = |name, shape: Vec<usize>| {
        let n = shape.iter().product();
        (name, Dtype::F32, shape, f32_bytes(&vec![fill; n]))
    };
    vec![
        entry("0.weight", vec![3, 4]),
        entry("0.bias", vec![3]),
        entry("2.weight", vec![2, 3]),
        entry("2.bias", vec![2]),
    ]
}

fn round_trip(from: &Device, to: &Device, dir: &TempDir) {
    let path = dir.path("model.safetensors");
    let saved = mlp(1, from);
    checkpoint::save(&saved, &path).unwrap();
    let loaded = mlp(100, to);
    assert_ne!(values(&saved), values(&loaded), "the two models must start different");
    checkpoint::load(&loaded, &path).unwrap();
    assert_eq!(values(&saved), values(&loaded));
    let y_saved = saved.forward(&input(from)).to_vec::<f32>();
    let y_loaded = loaded.forward(&input(to)).to_vec::<f32>();
    wgrad::testing::compare(&y_loaded, &y_saved, wgrad::testing::Tolerance::Elementwise { atol: 1e-6, rtol: 1e-6 })
        .unwrap();
}

#[test]
fn round_trip_on_the_cpu() {
    let dir = TempDir::new("rt-cpu");
    round_trip(&Device::cpu(), &Device::cpu(), &dir);
}

#[test]
fn round_trip_between_cpu_and_gpu() {
    let Some(gpu) = gpu("round_trip_between_cpu_and_gpu") else { return };
    let dir = TempDir::new("rt-gpu");
    round_trip(&gpu, &Device::cpu(), &dir);
    round_trip(&Device::cpu(), &gpu, &dir);
    round_trip(&gpu, &gpu, &dir);
}

#[test]
fn header_lists_pytorch_names_shapes_and_values() {
    let dir = TempDir::new("header");
    let path = dir.path("model.safetensors");
    let model = mlp(3, &Device::cpu());
    checkpoint::save(&model, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(names, ["0.bias", "0.weight", "2.bias", "2.weight"]);
    for (name, param) in model.named_parameters() {
        let view = file.tensor(&name).unwrap();
        assert_eq!(view.dtype(), Dtype::F32, "{name}");
        assert_eq!(view.shape(), param.shape(), "{name}");
        assert_eq!(view.data(), f32_bytes(&param.to_vec::<f32>()), "{name}: row-major little-endian f32");
    }
    let expected_shapes =
        [("0.weight", vec![3, 4]), ("0.bias", vec![3]), ("2.weight", vec![2, 3]), ("2.bias", vec![2])];
    for (name, shape) in expected_shapes {
        assert_eq!(file.tensor(name).unwrap().shape(), shape, "{name}: PyTorch's [out, in] layout");
    }
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    assert!(metadata.metadata().is_none(), "state_dict files carry no __metadata__");
}

/// The exact bytes `safetensors.torch.save_file(Linear(3, 2).state_dict(), path)`
/// writes: an 8-byte little-endian header length, the JSON header with tensors sorted by
/// name and data offsets in that order, padded with spaces to a multiple of 8, then the
/// data.
#[test]
fn file_bytes_match_what_pytorch_writes() {
    let dir = TempDir::new("bytes");
    let path = dir.path("linear.safetensors");
    let dev = Device::cpu();
    let weight = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &dev).requires_grad();
    let bias = Tensor::from_slice(&[-1.0f32, 0.5], &[2], &dev).requires_grad();
    checkpoint::save(&nn::Linear::from_parameters(weight, Some(bias)), &path).unwrap();

    let json = r#"{"bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]}}"#;
    let mut header = json.as_bytes().to_vec();
    header.resize(json.len().div_ceil(8) * 8, b' ');
    let mut expected = (header.len() as u64).to_le_bytes().to_vec();
    expected.extend(&header);
    expected.extend(f32_bytes(&[-1.0, 0.5]));
    expected.extend(f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    assert_eq!(std::fs::read(&path).unwrap(), expected);
}

#[test]
fn load_state_lists_every_tensor_sorted_by_name() {
    let dir = TempDir::new("state");
    let path = dir.path("model.safetensors");
    let model = mlp(5, &Device::cpu());
    checkpoint::save(&model, &path).unwrap();
    let state = checkpoint::load_state(&path).unwrap();
    let names: Vec<&str> = state.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["0.bias", "0.weight", "2.bias", "2.weight"]);
    for (name, shape, data) in &state {
        let param = model.named_parameters().into_iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(shape, param.shape());
        assert_eq!(data, &param.to_vec::<f32>());
    }
}

#[test]
fn save_leaves_no_temporary_file_and_replaces_an_existing_one() {
    let dir = TempDir::new("atomic");
    let path = dir.path("model.safetensors");
    let first = mlp(7, &Device::cpu());
    checkpoint::save(&first, &path).unwrap();
    assert_eq!(dir.entries(), ["model.safetensors"]);

    let second = mlp(8, &Device::cpu());
    checkpoint::save(&second, &path).unwrap();
    assert_eq!(dir.entries(), ["model.safetensors"], "the temporary file must be renamed away");
    let fresh = mlp(9, &Device::cpu());
    checkpoint::load(&fresh, &path).unwrap();
    assert_eq!(values(&fresh), values(&second), "the second save replaces the first");
}

#[test]
fn save_into_a_missing_directory_is_an_io_error_and_leaves_nothing() {
    let dir = TempDir::new("nodir");
    let path = dir.path("absent").join("model.safetensors");
    let err = checkpoint::save(&mlp(1, &Device::cpu()), &path).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    assert!(dir.entries().is_empty());
}

#[test]
fn an_optimizer_keeps_updating_the_loaded_parameters() {
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu("an_optimizer_keeps_updating_the_loaded_parameters"));
    for dev in devices {
        let dir = TempDir::new(if dev.is_cpu() { "optim-cpu" } else { "optim-gpu" });
        let path = dir.path("model.safetensors");
        let source = mlp(11, &dev);
        checkpoint::save(&source, &path).unwrap();

        let model = mlp(12, &dev);
        let mut opt = Sgd::new(model.parameters(), 0.5);
        checkpoint::load(&model, &path).unwrap();
        // d/dp sum(p) = 1 for every parameter: one step subtracts the learning rate.
        let loss = model.parameters().iter().map(|p| p.sum_all()).reduce(|a, b| a.add(&b)).unwrap();
        opt.step(&loss.backward());
        for ((name, loaded), (_, stepped)) in values(&source).into_iter().zip(values(&model)) {
            let expected: Vec<f32> = loaded.iter().map(|v| v - 0.5).collect();
            assert_eq!(stepped, expected, "{name} on {}", dev.info());
        }
    }
}

/// Loads `entries` into a fresh `mlp` on every device, expects a `Format` error whose
/// message contains each of `needles`, and checks no parameter changed.
fn expect_format_error(test: &str, entries: &[(&str, Dtype, Vec<usize>, Vec<u8>)], needles: &[&str]) {
    let dir = TempDir::new(test);
    let path = dir.path("bad.safetensors");
    write_raw(&path, entries);
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu(test));
    for dev in devices {
        let model = mlp(21, &dev);
        let before = values(&model);
        let err = checkpoint::load(&model, &path).unwrap_err();
        let Error::Format { path: p, reason } = &err else { panic!("{test}: expected a Format error, got {err:?}") };
        assert_eq!(Path::new(p), path, "{test}");
        for needle in needles {
            assert!(reason.contains(needle), "{test}: '{reason}' does not mention {needle}");
        }
        assert_eq!(values(&model), before, "{test}: a failed load changed the model on {}", dev.info());
    }
}

#[test]
fn a_missing_tensor_is_reported_and_changes_nothing() {
    // Every other tensor fits and holds new values: none of them may be written.
    let mut entries = mlp_entries(7.0);
    entries.retain(|(name, ..)| *name != "2.bias");
    expect_format_error("missing", &entries, &["'2.bias'", "[2]", "missing"]);
}

#[test]
fn an_extra_tensor_is_reported_and_changes_nothing() {
    let mut entries = mlp_entries(7.0);
    entries.push(("3.weight", Dtype::F32, vec![5, 2], f32_bytes(&[1.0; 10])));
    expect_format_error("extra", &entries, &["'3.weight'", "[5, 2]"]);
}

#[test]
fn a_shape_mismatch_names_both_shapes_and_changes_nothing() {
    // The transposed weight (a common porting mistake), last in file order so the
    // tensors before it would already have been copied by a loader that checks as it goes.
    let mut entries = mlp_entries(7.0);
    entries[2] = ("2.weight", Dtype::F32, vec![3, 2], f32_bytes(&[7.0; 6]));
    expect_format_error("shape", &entries, &["'2.weight'", "[3, 2]", "[2, 3]"]);
}

#[test]
fn a_non_f32_tensor_is_reported_and_changes_nothing() {
    let mut entries = mlp_entries(7.0);
    entries[1] = ("0.bias", Dtype::F64, vec![3], [1.0f64, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect());
    expect_format_error("dtype", &entries, &["'0.bias'", "F64", "F32", "[3]"]);
}

#[test]
fn a_missing_file_is_an_io_error_naming_the_file() {
    let dir = TempDir::new("nofile");
    let path = dir.path("nowhere.safetensors");
    let model = mlp(1, &Device::cpu());
    let before = values(&model);
    let err = checkpoint::load(&model, &path).unwrap_err();
    let Error::Io { source, .. } = &err else { panic!("expected an Io error, got {err:?}") };
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("nowhere.safetensors"), "{err}");
    assert_eq!(values(&model), before);
    assert!(matches!(checkpoint::load_state(&path), Err(Error::Io { .. })));
}

/// Loads the file at `path` (on every device) and into `load_state`, expecting `Format`
/// errors that name the file and an unchanged model.
fn expect_corrupt(test: &str, path: &Path) {
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu(test));
    for dev in devices {
        let model = mlp(31, &dev);
        let before = values(&model);
        let err = checkpoint::load(&model, path).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{test}: expected a Format error, got {err:?}");
        assert!(err.to_string().contains(&path.display().to_string()), "{test}: {err}");
        assert_eq!(values(&model), before, "{test}");
    }
    let err = checkpoint::load_state(path).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{test}: load_state gave {err:?}");
}

#[test]
fn a_truncated_file_is_a_format_error() {
    let dir = TempDir::new("truncated");
    let path = dir.path("model.safetensors");
    checkpoint::save(&mlp(1, &Device::cpu()), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // Cut in half (inside the header), just inside the data, and shorter than the length prefix.
    for keep in [bytes.len() / 2, bytes.len() - 4, 5, 0] {
        std::fs::write(&path, &bytes[..keep]).unwrap();
        expect_corrupt(&format!("truncated to {keep} bytes"), &path);
    }
}

#[test]
fn garbage_bytes_are_a_format_error() {
    let dir = TempDir::new("garbage");
    let path = dir.path("garbage.safetensors");
    let noise: Vec<u8> = (0u32..1000).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&path, &noise).unwrap();
    expect_corrupt("garbage", &path);
    // A plausible length prefix followed by something that is not JSON.
    let mut bad_json = 16u64.to_le_bytes().to_vec();
    bad_json.extend(b"{\"0.weight\": [1,");
    std::fs::write(&path, &bad_json).unwrap();
    expect_corrupt("bad json", &path);
    // Valid JSON whose offsets point past the end of the data.
    let json = br#"{"0.bias":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}   "#;
    let mut short = (json.len() as u64).to_le_bytes().to_vec();
    short.extend(json);
    short.extend([0u8; 4]);
    std::fs::write(&path, &short).unwrap();
    expect_corrupt("offsets past the end", &path);
}

// ---- buffers ----

/// `Linear(4, 3) -> BatchNorm1d(3)`: parameters `0.weight`, `0.bias`, `1.weight`,
/// `1.bias`; buffers `1.running_mean`, `1.running_var`, `1.num_batches_tracked`.
fn bn_net(seed: u64, dev: &Device) -> nn::Sequential {
    nn::Sequential::new().add(nn::Linear::with_seed(4, 3, true, seed, dev)).add(nn::BatchNorm1d::new(3, dev))
}

/// Parameters and buffers, the counter as f32 for comparison.
fn state(module: &dyn Module) -> Vec<(String, Vec<f32>)> {
    let mut all = module.named_parameters();
    all.extend(module.named_buffers());
    all.into_iter()
        .map(|(n, t)| match t.dtype() {
            wgrad::DType::F32 => (n, t.to_vec::<f32>()),
            wgrad::DType::I32 => (n, t.to_vec::<i32>().iter().map(|&v| v as f32).collect()),
            wgrad::DType::F16 => (n, t.float().to_vec::<f32>()),
        })
        .collect()
}

/// Two training steps, so the running statistics and the count are not their defaults.
fn trained_bn_net(seed: u64, dev: &Device) -> nn::Sequential {
    let model = bn_net(seed, dev);
    for step in 0..2 {
        model.forward(&Tensor::randn(&[5, 4], seed + step, &Device::cpu()).to_device(dev));
    }
    model
}

/// The tensors of `bn_net` as a foreign tool would write them, each float `fill`, the
/// counter as given.
fn bn_entries(fill: f32, counter: (Dtype, Vec<u8>)) -> Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)> {
    let entry = |name, shape: Vec<usize>| {
        let n = shape.iter().product();
        (name, Dtype::F32, shape, f32_bytes(&vec![fill; n]))
    };
    vec![
        entry("0.weight", vec![3, 4]),
        entry("0.bias", vec![3]),
        entry("1.weight", vec![3]),
        entry("1.bias", vec![3]),
        entry("1.running_mean", vec![3]),
        entry("1.running_var", vec![3]),
        ("1.num_batches_tracked", counter.0, vec![], counter.1),
    ]
}

#[test]
fn buffers_are_saved_with_pytorch_names_and_an_i64_counter() {
    let dir = TempDir::new("buffers");
    let path = dir.path("bn.safetensors");
    let model = trained_bn_net(40, &Device::cpu());
    checkpoint::save(&model, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(
        names,
        ["0.bias", "0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var", "1.weight"]
    );
    let counter = file.tensor("1.num_batches_tracked").unwrap();
    assert_eq!(counter.dtype(), Dtype::I64, "PyTorch's num_batches_tracked is torch.long");
    assert_eq!(counter.shape(), [] as [usize; 0]);
    assert_eq!(counter.data(), 2i64.to_le_bytes());
    for (name, buffer) in model.named_buffers().into_iter().filter(|(n, _)| !n.ends_with("num_batches_tracked")) {
        let view = file.tensor(&name).unwrap();
        assert_eq!(view.dtype(), Dtype::F32, "{name}");
        assert_eq!(view.data(), f32_bytes(&buffer.to_vec::<f32>()), "{name}");
    }
    let listed = checkpoint::load_state(&path).unwrap();
    let count = listed.iter().find(|(n, _, _)| n == "1.num_batches_tracked").unwrap();
    assert_eq!((count.1.as_slice(), count.2.as_slice()), (&[] as &[usize], &[2.0f32][..]));
}

#[test]
fn buffers_round_trip_across_devices() {
    let dir = TempDir::new("buffers-rt");
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu("buffers_round_trip_across_devices"));
    for from in &devices {
        for to in &devices {
            let path = dir.path("bn.safetensors");
            let saved = trained_bn_net(50, from);
            checkpoint::save(&saved, &path).unwrap();
            let loaded = bn_net(60, to);
            assert_ne!(state(&saved), state(&loaded));
            checkpoint::load(&loaded, &path).unwrap();
            assert_eq!(state(&saved), state(&loaded), "{} -> {}", from.info(), to.info());
        }
    }
}

#[test]
fn an_i32_counter_loads_too() {
    let dir = TempDir::new("i32-counter");
    let path = dir.path("bn.safetensors");
    write_raw(&path, &bn_entries(0.5, (Dtype::I32, 7i32.to_le_bytes().to_vec())));
    let model = bn_net(1, &Device::cpu());
    checkpoint::load(&model, &path).unwrap();
    let count = model.named_buffers().into_iter().find(|(n, _)| n == "1.num_batches_tracked").unwrap().1;
    assert_eq!(count.to_vec::<i32>(), [7]);
    assert_eq!(model.named_buffers()[0].1.to_vec::<f32>(), [0.5; 3]);
}

/// As [`expect_format_error`], for `bn_net`.
fn expect_bn_format_error(test: &str, entries: &[(&str, Dtype, Vec<usize>, Vec<u8>)], needles: &[&str]) {
    let dir = TempDir::new(test);
    let path = dir.path("bad.safetensors");
    write_raw(&path, entries);
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu(test));
    for dev in devices {
        let model = trained_bn_net(70, &dev);
        let before = state(&model);
        let err = checkpoint::load(&model, &path).unwrap_err();
        let Error::Format { reason, .. } = &err else { panic!("{test}: expected a Format error, got {err:?}") };
        for needle in needles {
            assert!(reason.contains(needle), "{test}: '{reason}' does not mention {needle}");
        }
        assert_eq!(state(&model), before, "{test}: a failed load changed the model on {}", dev.info());
    }
}

#[test]
fn a_counter_outside_the_i32_range_is_reported_and_changes_nothing() {
    let entries = bn_entries(7.0, (Dtype::I64, (1i64 << 40).to_le_bytes().to_vec()));
    expect_bn_format_error("counter-range", &entries, &["'1.num_batches_tracked'", "1099511627776"]);
}

#[test]
fn a_float_counter_is_reported_and_changes_nothing() {
    let entries = bn_entries(7.0, (Dtype::F32, f32_bytes(&[3.0])));
    expect_bn_format_error("counter-dtype", &entries, &["'1.num_batches_tracked'", "F32", "I64 or I32"]);
}

#[test]
fn a_missing_buffer_is_reported_and_changes_nothing() {
    // A file of the parameters alone (as an older save would have written): the running
    // statistics it lacks are reported, and the parameters it has are not loaded.
    let mut entries = bn_entries(7.0, (Dtype::I64, 3i64.to_le_bytes().to_vec()));
    entries.retain(|(name, ..)| !name.starts_with("1.running") && !name.ends_with("tracked"));
    expect_bn_format_error(
        "missing-buffer",
        &entries,
        &["'1.running_mean'", "'1.running_var'", "'1.num_batches_tracked'", "missing"],
    );
}

#[test]
fn saving_a_model_with_no_tensors_is_an_error_and_writes_nothing() {
    let dir = TempDir::new("no-tensors");
    let model = ForgotParameters { fc: nn::Linear::new(3, 2, &Device::cpu()) };
    let path = dir.path("empty.safetensors");
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| checkpoint::save(&model, &path)))
        .expect_err("a model of no tensors was saved");
    let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.starts_with("checkpoint::save: ForgotParameters has no parameters or buffers"), "{message}");
    assert!(message.contains("named_parameters"), "{message}");
    assert!(dir.entries().is_empty(), "files left behind: {:?}", dir.entries());
    // The layer it holds saves as usual.
    checkpoint::save(&model.fc, &path).unwrap();
}
