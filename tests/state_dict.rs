//! State dicts in memory, on the CPU and on the GPU: `state_dict` keys, order and values,
//! loading into a fresh model, strict and non-strict loads (every failure leaves the model
//! untouched), the prefix helpers for submodules, loads across devices, the file wrappers,
//! and the layers built from given tensors.

mod common;

use common::{dev_name, devices, gpu};
use wgrad::nn::{self, Forward, Module, StateDict};
use wgrad::{checkpoint, ConvOptions, DType, Device, Error, Tensor};

/// `Conv2d(2, 3, 3) -> BatchNorm2d(3) -> ReLU -> Flatten -> Linear(48, 5)`.
fn net(seed: u64, dev: &Device) -> nn::Sequential {
    nn::Sequential::new()
        .add(nn::Conv2d::with_seed(2, 3, 3, ConvOptions::new(), true, seed, dev))
        .add(nn::BatchNorm2d::new(3, dev))
        .add(nn::ReLU)
        .add(nn::Flatten::new())
        .add(nn::Linear::with_seed(48, 5, true, seed + 1, dev))
}

fn input(seed: u64, dev: &Device) -> Tensor {
    Tensor::randn(&[4, 2, 6, 6], seed, &Device::cpu()).to_device(dev)
}

/// A net whose running statistics and count are not their defaults, in eval mode.
fn trained_net(seed: u64, dev: &Device) -> nn::Sequential {
    let mut model = net(seed, dev);
    for step in 0..2 {
        model.forward(&input(100 + step, dev));
    }
    model.set_training(false);
    model
}

const KEYS: [&str; 9] = [
    "0.weight",
    "0.bias",
    "1.weight",
    "1.bias",
    "1.running_mean",
    "1.running_var",
    "1.num_batches_tracked",
    "4.weight",
    "4.bias",
];

/// Every tensor of the module's state dict as f32 values, by name.
fn snapshot(module: &dyn Module) -> Vec<(String, Vec<f32>)> {
    module
        .state_dict()
        .iter()
        .map(|(n, t)| {
            let v = match t.dtype() {
                DType::I32 => t.to_vec::<i32>().iter().map(|&v| v as f32).collect(),
                _ => t.float().to_vec::<f32>(),
            };
            (n.to_string(), v)
        })
        .collect()
}

#[test]
fn state_dict_has_pytorch_keys_order_and_values() {
    for dev in devices("keys") {
        let model = trained_net(1, &dev);
        let sd = model.state_dict();
        assert_eq!(sd.keys().collect::<Vec<_>>(), KEYS, "{}", dev_name(&dev));
        assert_eq!(sd.len(), 9);
        let params: Vec<(String, Tensor)> = model.named_parameters().into_iter().chain(model.named_buffers()).collect();
        for (name, t) in &params {
            let v = sd.get(name).unwrap();
            assert_eq!(v.shape(), t.shape(), "{name}");
            assert_eq!(v.dtype(), t.dtype(), "{name}");
        }
        assert_eq!(sd.get("1.num_batches_tracked").unwrap().to_vec::<i32>(), [2]);
        assert_eq!(sd.get("1.running_var").unwrap().shape(), &[3]);
        assert_eq!(sd.get("0.weight").unwrap().shape(), &[3, 2, 3, 3]);
        assert_eq!(sd.get("0.weight").unwrap().to_vec::<f32>(), model.parameters()[0].to_vec::<f32>());
        assert!(sd.get("2.weight").is_none());
    }
}

#[test]
fn loading_into_a_fresh_model_reproduces_its_outputs() {
    for dev in devices("fresh") {
        let model = trained_net(1, &dev);
        let mut fresh = net(9, &dev);
        fresh.set_training(false);
        let x = input(5, &dev);
        assert_ne!(fresh.forward(&x).to_vec::<f32>(), model.forward(&x).to_vec::<f32>());
        let report = fresh.load_state_dict(&model.state_dict(), true).unwrap();
        assert_eq!(report, nn::LoadReport::default());
        assert_eq!(snapshot(&fresh), snapshot(&model), "{}", dev_name(&dev));
        assert_eq!(fresh.forward(&x).to_vec::<f32>(), model.forward(&x).to_vec::<f32>(), "{}", dev_name(&dev));
        // Loaded by value, in place: another load into the fresh model leaves the source alone.
        let before = snapshot(&model);
        fresh.load_state_dict(&net(3, &dev).state_dict(), true).unwrap();
        assert_eq!(snapshot(&model), before);
        assert_ne!(snapshot(&fresh), before);
    }
}

#[test]
fn a_non_strict_load_reports_missing_and_unexpected_keys_and_loads_the_rest() {
    for dev in devices("non-strict") {
        let model = trained_net(1, &dev);
        let fresh = net(9, &dev);
        let before = snapshot(&fresh);
        let mut sd = model.state_dict();
        sd.remove("4.bias").unwrap();
        sd.remove("1.running_mean").unwrap();
        sd.insert("head.weight", Tensor::zeros(&[2, 2], &dev));
        let report = fresh.load_state_dict(&sd, false).unwrap();
        assert_eq!(report.missing_keys, ["1.running_mean", "4.bias"]);
        assert_eq!(report.unexpected_keys, ["head.weight"]);
        let (after, want) = (snapshot(&fresh), snapshot(&model));
        for (i, (name, values)) in after.iter().enumerate() {
            let expected = if name == "4.bias" || name == "1.running_mean" { &before[i].1 } else { &want[i].1 };
            assert_eq!(values, expected, "{name} on {}", dev_name(&dev));
        }
    }
}

/// Loads `sd` strictly into a fresh `net` on `dev`, expects an error naming every
/// needle, and checks nothing changed.
fn expect_strict_error(test: &str, dev: &Device, sd: &StateDict, strict: bool, needles: &[&str]) {
    let fresh = net(9, dev);
    let before = snapshot(&fresh);
    let err = fresh.load_state_dict(sd, strict).unwrap_err();
    let Error::StateDict { reason } = &err else { panic!("{test}: expected a StateDict error, got {err:?}") };
    for needle in needles {
        assert!(reason.contains(needle), "{test}: '{reason}' does not mention {needle}");
    }
    assert!(err.to_string().starts_with("load_state_dict: "), "{test}: {err}");
    assert_eq!(snapshot(&fresh), before, "{test}: a failed load changed the model on {}", dev_name(dev));
}

#[test]
fn strict_failures_name_the_key_and_change_nothing() {
    for dev in devices("strict") {
        let good = trained_net(1, &dev).state_dict();

        let mut missing = good.clone();
        missing.remove("4.bias");
        expect_strict_error("missing", &dev, &missing, true, &["'4.bias'", "[5]", "missing"]);

        let mut extra = good.clone();
        extra.insert("5.weight", Tensor::zeros(&[7, 2], &dev));
        expect_strict_error("unexpected", &dev, &extra, true, &["'5.weight'", "[7, 2]", "matches no parameter"]);

        // Last in order, so a loader that copied as it checked would already have
        // written the tensors before it. A shape error fails a non-strict load too.
        let mut shape = good.clone();
        shape.insert("4.weight", Tensor::zeros(&[48, 5], &dev));
        expect_strict_error("shape", &dev, &shape, true, &["'4.weight'", "[48, 5]", "[5, 48]"]);
        expect_strict_error("shape-non-strict", &dev, &shape, false, &["'4.weight'", "[48, 5]", "[5, 48]"]);

        let mut dtype = good.clone();
        dtype.insert("1.num_batches_tracked", Tensor::from_slice(&[3.0f32], &[], &dev));
        expect_strict_error("dtype", &dev, &dtype, true, &["'1.num_batches_tracked'", "f32", "i32"]);
        let mut half = good.clone();
        half.insert("4.bias", Tensor::zeros(&[5], &dev).half());
        expect_strict_error("half", &dev, &half, false, &["'4.bias'", "f16", "f32"]);
    }
}

#[test]
fn prefix_helpers_load_a_backbone_into_a_submodule() {
    for dev in devices("prefix") {
        let whole = nn::Sequential::new().add(trained_net(1, &dev)).add(nn::Linear::with_seed(5, 2, true, 3, &dev));
        let sd = whole.state_dict();
        assert_eq!(sd.keys().next(), Some("0.0.weight"));
        assert_eq!(sd.len(), 11);

        // `backbone.*` as a parent module would name it, loaded into the submodule alone.
        let named = sd.with_prefix("0.").prefixed("backbone.");
        assert_eq!(named.len(), 9);
        assert!(named.keys().all(|k| k.starts_with("backbone.")));
        let backbone = net(9, &dev);
        let report = backbone.load_state_dict(&named.with_prefix("backbone."), true).unwrap();
        assert!(report.missing_keys.is_empty() && report.unexpected_keys.is_empty());
        assert_eq!(snapshot(&backbone), snapshot(&trained_net(1, &dev)), "{}", dev_name(&dev));

        // Without stripping, nothing matches: a non-strict load says so and changes nothing.
        let other = net(9, &dev);
        let before = snapshot(&other);
        let report = other.load_state_dict(&named, false).unwrap();
        assert_eq!(report.missing_keys, KEYS);
        assert_eq!(report.unexpected_keys.len(), 9);
        assert_eq!(snapshot(&other), before);
        assert!(sd.with_prefix("nothing.").is_empty());
    }
}

#[test]
fn a_cpu_state_dict_loads_into_a_gpu_model_and_back() {
    let Some(gpu) = gpu("cross-device") else { return };
    let cpu = Device::cpu();
    let source = trained_net(1, &cpu);
    let target = net(9, &gpu);
    target.load_state_dict(&source.state_dict(), true).unwrap();
    let mut target = target;
    target.set_training(false);
    assert_eq!(snapshot(&target), snapshot(&source));
    for (name, t) in target.state_dict().iter() {
        let home = if name.ends_with("num_batches_tracked") { &cpu } else { &gpu };
        assert!(t.device() == home, "{name} moved to another device");
    }
    let x = input(5, &cpu);
    let (a, b) = (source.forward(&x).to_vec::<f32>(), target.forward(&x.to_device(&gpu)).to_vec::<f32>());
    assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() <= 1e-4 + 1e-4 * b.abs()), "{a:?} vs {b:?}");

    let back = net(9, &cpu);
    back.load_state_dict(&target.state_dict(), true).unwrap();
    assert_eq!(snapshot(&back), snapshot(&source));
}

#[test]
fn the_file_functions_round_trip_a_state_dict() {
    let dir = std::env::temp_dir().join(format!("wgrad-state-dict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("net.safetensors");
    for dev in devices("file") {
        let model = trained_net(1, &dev);
        checkpoint::save_state_dict(&model.state_dict().prefixed("backbone."), &path).unwrap();
        let sd = checkpoint::load_state_dict(&path).unwrap();
        let mut sorted: Vec<String> = KEYS.iter().map(|k| format!("backbone.{k}")).collect();
        sorted.sort();
        assert_eq!(sd.keys().collect::<Vec<_>>(), sorted);
        assert!(sd.values().all(|t| t.device().is_cpu()));
        assert_eq!(sd.get("backbone.1.num_batches_tracked").unwrap().dtype(), DType::I32);
        let fresh = net(9, &dev);
        fresh.load_state_dict(&sd.with_prefix("backbone."), true).unwrap();
        assert_eq!(snapshot(&fresh), snapshot(&model), "{}", dev_name(&dev));
        // `checkpoint::save` writes the same file as `save_state_dict` of the state dict.
        checkpoint::save(&model, &path).unwrap();
        let a = std::fs::read(&path).unwrap();
        checkpoint::save_state_dict(&model.state_dict(), &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), a);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn batch_norm_layers_are_built_from_given_tensors() {
    for dev in devices("bn-from") {
        let c = |v: &[f32]| Tensor::from_slice(v, &[3], &dev);
        let bn = nn::BatchNorm2d::from_parameters(
            Some(c(&[1.0, 2.0, 3.0]).requires_grad()),
            Some(c(&[0.5, 0.0, -0.5]).requires_grad()),
            Some(c(&[0.1, 0.2, 0.3])),
            Some(c(&[1.0, 4.0, 9.0])),
        )
        .eps(0.0)
        .momentum(Some(0.2));
        assert_eq!(bn.num_features(), 3);
        let names: Vec<String> = bn.state_dict().keys().map(str::to_string).collect();
        assert_eq!(names, ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]);
        let mut bn = bn;
        bn.set_training(false);
        let y = bn.forward(&Tensor::from_slice(&[1.1f32, 2.2, 3.3], &[1, 3, 1, 1], &dev)).to_vec::<f32>();
        let want = [1.0 * 1.0 + 0.5, 2.0 * 2.0 / 2.0, 3.0 * 3.0 / 3.0 - 0.5];
        assert!(y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5), "{y:?}");

        let plain = nn::BatchNorm1d::from_parameters(None, None, Some(c(&[0.0; 3])), Some(c(&[1.0; 3])));
        assert!(plain.weight().is_none() && plain.num_batches_tracked().is_some());
        let affine_only = nn::BatchNorm1d::from_parameters(Some(c(&[1.0; 3])), Some(c(&[0.0; 3])), None, None);
        assert!(affine_only.running_mean().is_none() && affine_only.num_batches_tracked().is_none());
    }
}

fn panic_message(f: impl FnOnce()) -> String {
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_err();
    err.downcast_ref::<String>().cloned().or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string())).unwrap()
}

#[test]
fn batch_norm_from_parameters_names_the_layer_and_the_shapes() {
    let dev = Device::cpu();
    let msg = panic_message(|| {
        nn::BatchNorm2d::from_parameters(
            Some(Tensor::ones(&[3], &dev)),
            Some(Tensor::zeros(&[3], &dev)),
            Some(Tensor::zeros(&[4], &dev)),
            Some(Tensor::ones(&[4], &dev)),
        );
    });
    assert!(
        msg.contains("BatchNorm2d") && msg.contains("running_mean") && msg.contains("[4]") && msg.contains("[3]"),
        "{msg}"
    );
    let msg = panic_message(|| {
        nn::BatchNorm1d::from_parameters(Some(Tensor::ones(&[3], &dev)), None, None, None);
    });
    assert!(msg.contains("BatchNorm1d") && msg.contains("bias"), "{msg}");
    let msg = panic_message(|| {
        nn::BatchNorm1d::from_parameters(None, None, None, None);
    });
    assert!(msg.contains("BatchNorm1d"), "{msg}");
}

#[test]
fn layer_norm_is_built_from_given_tensors() {
    let dev = Device::cpu();
    let w = Tensor::from_slice(&[2.0f32, 2.0], &[2], &dev).requires_grad();
    let ln = nn::LayerNorm::from_parameters(w, Some(Tensor::from_slice(&[1.0f32, 1.0], &[2], &dev)));
    assert_eq!(ln.normalized_shape(), &[2]);
    assert_eq!(ln.state_dict().keys().collect::<Vec<_>>(), ["weight", "bias"]);
    let y = ln.forward(&Tensor::from_slice(&[1.0f32, 3.0], &[1, 2], &dev)).to_vec::<f32>();
    assert!((y[0] + 1.0).abs() < 1e-3 && (y[1] - 3.0).abs() < 1e-3, "{y:?}");
    let msg = panic_message(|| {
        nn::LayerNorm::from_parameters(Tensor::ones(&[2], &dev), Some(Tensor::ones(&[3], &dev)));
    });
    assert!(msg.contains("LayerNorm") && msg.contains("[3]") && msg.contains("[2]"), "{msg}");
}

#[test]
fn state_dict_insert_replaces_in_place_and_remove_keeps_order() {
    let dev = Device::cpu();
    let mut sd = StateDict::new();
    assert!(sd.insert("a", Tensor::zeros(&[1], &dev)).is_none());
    sd.insert("b", Tensor::zeros(&[2], &dev));
    sd.insert("c", Tensor::zeros(&[3], &dev));
    assert!(sd.insert("a", Tensor::ones(&[4], &dev)).is_some());
    assert_eq!(sd.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(sd.get("a").unwrap().shape(), &[4]);
    sd.remove("b");
    assert_eq!(sd.keys().collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(sd.get("c").unwrap().shape(), &[3]);
    assert!(sd.contains_key("c") && !sd.contains_key("b"));
}
