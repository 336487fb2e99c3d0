//! Weights moving between PyTorch and wgrad, both ways, on a model written as a user would
//! write one: a `#[derive(Module)]` struct whose fields are named as the attributes of the
//! PyTorch model in `scripts/torch_interop.py` (`conv`, `bn`, `pool`, `rnn`, a list of
//! `blocks`, `head`), with a forward method of two inputs.
//!
//! - PyTorch to wgrad: the state dict PyTorch saved (`tests/data/torch_interop/`) loads
//!   strictly, and the model's outputs match PyTorch's on every device.
//! - wgrad to wgrad: a saved model loads into a fresh one with identical outputs.
//! - wgrad to PyTorch: wgrad writes its checkpoint, the inputs and its outputs to a folder;
//!   when `WGRAD_TORCH_PYTHON` names a Python with torch, the script loads them into the
//!   PyTorch model (strict, same dtypes) and compares outputs. Without it the test checks
//!   the files' names and dtypes, and says that it skipped the PyTorch side.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{dev_name, devices, TempDir};
use safetensors::{Dtype, SafeTensors};
use wgrad::nn::{self, Forward, Module, StateDict};
use wgrad::testing::{compare, Tolerance};
use wgrad::{checkpoint, init, ConvOptions, DType, Device, Tensor};

// The shapes of scripts/torch_interop.py.
const C: usize = 3;
const T: usize = 5;
const F: usize = 4;
const CONV_OUT: usize = 6;
const HIDDEN: usize = 8;
const NUM_BLOCKS: usize = 2;
const CLASSES: usize = 4;
const FEATURES: usize = CONV_OUT + HIDDEN;

/// Agreement with PyTorch's float32 CPU outputs, which are of order 1. Each of the model's
/// sums (at most 27 products: conv, LSTM gates over 5 steps and 2 layers, two blocks) runs
/// in another order than PyTorch's, and on a GPU WGSL's `exp` and `tanh` (the LSTM's gates)
/// may be a few ulp off: measured, the largest difference is 1.2e-7 on the CPU and 2.4e-7
/// on lavapipe, one or two ulp. The bound leaves 10 to 20 times that for GPUs whose
/// transcendentals are less exact, and is still tight enough to see a batch norm `eps` of
/// 1e-4 instead of 1e-5 (4.5e-6 here). Coarser mistakes are far outside it, measured:
/// swapping the LSTM's i and f gates moves the outputs by 7e-3, the head's weight 1% off by
/// 1.5e-2, batch statistics in place of the running ones by 0.28. The script's reverse
/// check uses the same bound.
const TORCH_TOL: Tolerance = Tolerance::Elementwise { atol: 2e-6, rtol: 2e-6 };

/// `features + relu(norm(fc(features)))`, as `Block` in the script.
#[derive(Module)]
struct Block {
    fc: nn::Linear,
    norm: nn::LayerNorm,
}

impl Block {
    fn new(seed: u64, dev: &Device) -> Block {
        Block {
            fc: nn::Linear::with_seed(FEATURES, FEATURES, true, seed, dev),
            norm: nn::LayerNorm::from_parameters(
                init::uniform(&[FEATURES], 0.5, 1.5, seed + 1, dev).requires_grad(),
                Some(init::uniform(&[FEATURES], -0.5, 0.5, seed + 2, dev).requires_grad()),
            ),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.add(&self.norm.forward(&self.fc.forward(x)).relu())
    }
}

/// `InteropNet` of the script: the same attributes under the same names, in the same order.
#[derive(Module)]
struct InteropNet {
    conv: nn::Conv2d,
    bn: nn::BatchNorm2d,
    pool: nn::MaxPool2d,
    rnn: nn::LSTM,
    blocks: nn::ModuleList<Block>,
    head: nn::Linear,
}

impl InteropNet {
    /// A model with wgrad's own weights drawn from `seed` (the batch norm and layer norm
    /// affine parameters uniform around 1 and 0 rather than exactly 1 and 0), in training mode.
    fn new(seed: u64, dev: &Device) -> InteropNet {
        let rnn_options = nn::RnnOptions::new().num_layers(2).batch_first(true);
        InteropNet {
            conv: nn::Conv2d::with_seed(C, CONV_OUT, 3, ConvOptions::new().padding(1), true, seed, dev),
            bn: nn::BatchNorm2d::from_parameters(
                Some(init::uniform(&[CONV_OUT], 0.5, 1.5, seed + 1, dev).requires_grad()),
                Some(init::uniform(&[CONV_OUT], -0.5, 0.5, seed + 2, dev).requires_grad()),
                Some(Tensor::zeros(&[CONV_OUT], dev)),
                Some(Tensor::ones(&[CONV_OUT], dev)),
            ),
            pool: nn::MaxPool2d::new(2),
            rnn: nn::LSTM::with_seed(F, HIDDEN, rnn_options, seed + 3, dev),
            blocks: (0..NUM_BLOCKS as u64).map(|i| Block::new(seed + 10 * (i + 1), dev)).collect(),
            head: nn::Linear::with_seed(FEATURES, CLASSES, true, seed + 4, dev),
        }
    }

    /// `image` `[N, C, H, W]` and `sequence` `[N, T, F]` to logits `[N, CLASSES]`.
    fn forward(&self, image: &Tensor, sequence: &Tensor) -> Tensor {
        let a = self.pool.forward(&self.bn.forward(&self.conv.forward(image)).relu()).mean(&[2, 3], false);
        let (_, (h_n, _)) = self.rnn.forward(sequence); // h_n: [num_layers, N, HIDDEN]
        let last_layer = h_n.narrow(0, h_n.shape()[0] - 1, 1).squeeze(0);
        let mut x = Tensor::cat(&[a, last_layer], 1);
        for block in &self.blocks {
            x = block.forward(&x);
        }
        self.head.forward(&x)
    }
}

/// A model of wgrad's own weights whose batch norm has seen two training batches (running
/// statistics off their defaults, `num_batches_tracked` 2), in evaluation mode.
fn trained_model(seed: u64, dev: &Device) -> InteropNet {
    let mut model = InteropNet::new(seed, dev);
    for step in 0..2 {
        let image = Tensor::randn(&[4, C, 8, 8], 100 + step, &Device::cpu()).mul_scalar(4.0).add_scalar(1.0);
        let sequence = Tensor::randn(&[4, T, F], 200 + step, &Device::cpu());
        model.forward(&image.to_device(dev), &sequence.to_device(dev));
    }
    nn::eval(&mut model);
    model
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("data").join("torch_interop")
}

/// The inputs and PyTorch's output from `io.safetensors`, as CPU tensors.
fn pytorch_io() -> (Tensor, Tensor, Tensor) {
    let io = checkpoint::load_state_dict(data_dir().join("io.safetensors")).unwrap();
    let get = |name: &str| io.get(name).unwrap_or_else(|| panic!("io.safetensors has no '{name}'")).clone();
    (get("image"), get("sequence"), get("output"))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `model.state_dict().keys()` of the script's model, in PyTorch's order (registration
/// order, a module's parameters before its buffers; `pool` has neither).
const PYTORCH_KEYS: [&str; 25] = [
    "conv.weight",
    "conv.bias",
    "bn.weight",
    "bn.bias",
    "bn.running_mean",
    "bn.running_var",
    "bn.num_batches_tracked",
    "rnn.weight_ih_l0",
    "rnn.weight_hh_l0",
    "rnn.bias_ih_l0",
    "rnn.bias_hh_l0",
    "rnn.weight_ih_l1",
    "rnn.weight_hh_l1",
    "rnn.bias_ih_l1",
    "rnn.bias_hh_l1",
    "blocks.0.fc.weight",
    "blocks.0.fc.bias",
    "blocks.0.norm.weight",
    "blocks.0.norm.bias",
    "blocks.1.fc.weight",
    "blocks.1.fc.bias",
    "blocks.1.norm.weight",
    "blocks.1.norm.bias",
    "head.weight",
    "head.bias",
];

#[test]
fn derived_model_names_its_tensors_as_pytorch_does() {
    let model = InteropNet::new(1, &Device::cpu());
    let ours: Vec<String> = model.state_dict().keys().map(str::to_string).collect();
    assert_eq!(ours, PYTORCH_KEYS, "the derived model's state dict is not PyTorch's, name for name");
    // The file holds the same names (safetensors stores them sorted, not in this order).
    let file = checkpoint::load_state_dict(data_dir().join("state_dict.safetensors")).unwrap();
    let mut in_file: Vec<&str> = file.keys().collect();
    let mut expected = PYTORCH_KEYS.to_vec();
    in_file.sort_unstable();
    expected.sort_unstable();
    assert_eq!(in_file, expected);
}

#[test]
fn pytorch_state_dict_loads_strictly_and_gives_pytorch_outputs() {
    let path = data_dir().join("state_dict.safetensors");
    let (image, sequence, expected) = pytorch_io();
    assert_eq!(image.shape(), [2, C, 8, 8]);
    assert_eq!(sequence.shape(), [2, T, F]);
    assert_eq!(expected.shape(), [2, CLASSES]);
    let expected = expected.to_vec::<f32>();
    for dev in devices("pytorch_state_dict_loads_strictly_and_gives_pytorch_outputs") {
        let mut model = InteropNet::new(1, &dev);
        let state = checkpoint::load_state_dict(&path).unwrap();
        let report = model.load_state_dict(&state, true).unwrap();
        assert!(report.missing_keys.is_empty() && report.unexpected_keys.is_empty());
        let counter = model.bn.num_batches_tracked().unwrap();
        assert_eq!(counter.to_vec::<i32>(), [3], "PyTorch ran three training batches");
        let running_var = model.bn.running_var().unwrap().to_vec::<f32>();
        // The script's training batches are scaled by 4: their conv outputs vary by about 5.
        assert!(running_var.iter().all(|&v| v > 1.5), "running_var {running_var:?} is near its default of 1");
        nn::eval(&mut model);

        let output = model.forward(&image.to_device(&dev), &sequence.to_device(&dev)).to_vec::<f32>();
        let diff = max_abs_diff(&output, &expected);
        eprintln!("{}: max |wgrad - pytorch| = {diff:.3e} over {} outputs", dev_name(&dev), output.len());
        compare(&output, &expected, TORCH_TOL).unwrap_or_else(|e| panic!("{}: {e}", dev_name(&dev)));

        // The same file through checkpoint::load gives the same model.
        let mut other = InteropNet::new(2, &dev);
        checkpoint::load(&other, &path).unwrap();
        nn::eval(&mut other);
        let again = other.forward(&image.to_device(&dev), &sequence.to_device(&dev)).to_vec::<f32>();
        compare(&again, &output, Tolerance::Exact).unwrap_or_else(|e| panic!("{}: {e}", dev_name(&dev)));
    }
}

#[test]
fn wgrad_checkpoint_loads_into_a_fresh_model_with_identical_outputs() {
    let (image, sequence, _) = pytorch_io();
    let dir = TempDir::new("torch-interop-round-trip");
    for dev in devices("wgrad_checkpoint_loads_into_a_fresh_model_with_identical_outputs") {
        let path = dir.path(&format!("{}.safetensors", dev_name(&dev)));
        let model = trained_model(7, &dev);
        checkpoint::save(&model, &path).unwrap();

        let mut fresh = InteropNet::new(8, &dev);
        let state = checkpoint::load_state_dict(&path).unwrap();
        fresh.load_state_dict(&state, true).unwrap();
        nn::eval(&mut fresh);
        for ((name, a), (_, b)) in model.state_dict().iter().zip(fresh.state_dict().iter()) {
            let (a, b) = match a.dtype() {
                DType::I32 => (
                    a.to_vec::<i32>().iter().map(|&v| v as f32).collect(),
                    b.to_vec::<i32>().iter().map(|&v| v as f32).collect(),
                ),
                _ => (a.to_vec::<f32>(), b.to_vec::<f32>()),
            };
            compare(&b, &a, Tolerance::Exact).unwrap_or_else(|e| panic!("{}: '{name}': {e}", dev_name(&dev)));
        }
        let (image, sequence) = (image.to_device(&dev), sequence.to_device(&dev));
        let expected = model.forward(&image, &sequence).to_vec::<f32>();
        let output = fresh.forward(&image, &sequence).to_vec::<f32>();
        compare(&output, &expected, Tolerance::Exact).unwrap_or_else(|e| panic!("{}: {e}", dev_name(&dev)));
    }
}

/// The folder the reverse check writes to: `WGRAD_TORCH_INTEROP_DIR` when set (kept, to run
/// the script by hand), else a temporary folder.
enum OutDir {
    Kept(PathBuf),
    Temp(TempDir),
}

impl OutDir {
    fn root(&self) -> &Path {
        match self {
            OutDir::Kept(p) => p,
            OutDir::Temp(t) => t.root(),
        }
    }
}

/// Writes `model`'s checkpoint and, in the layout of the script's `io.safetensors`, the
/// inputs and its output to `dir`.
fn write_for_pytorch(model: &InteropNet, image: &Tensor, sequence: &Tensor, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    checkpoint::save(model, dir.join("state_dict.safetensors")).unwrap();
    let output = model.forward(image, sequence);
    let mut io = StateDict::new();
    io.insert("image", image.clone());
    io.insert("sequence", sequence.clone());
    io.insert("output", output);
    checkpoint::save_state_dict(&io, dir.join("io.safetensors")).unwrap();
}

#[test]
fn wgrad_checkpoint_loads_in_pytorch() {
    let (image, sequence, _) = pytorch_io();
    let out = match std::env::var_os("WGRAD_TORCH_INTEROP_DIR") {
        Some(dir) => OutDir::Kept(PathBuf::from(dir)),
        None => OutDir::Temp(TempDir::new("torch-interop-reverse")),
    };
    let mut folders = Vec::new();
    for dev in devices("wgrad_checkpoint_loads_in_pytorch") {
        let dir = out.root().join(dev_name(&dev));
        let model = trained_model(11, &dev);
        write_for_pytorch(&model, &image.to_device(&dev), &sequence.to_device(&dev), &dir);

        // What PyTorch will read: its names, float32, and an int64 counter (torch.long).
        let bytes = std::fs::read(dir.join("state_dict.safetensors")).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut names = file.names();
        names.sort();
        assert_eq!(names.len(), PYTORCH_KEYS.len());
        for name in names {
            let view = file.tensor(name).unwrap();
            let want = if name.ends_with("num_batches_tracked") { Dtype::I64 } else { Dtype::F32 };
            assert_eq!(view.dtype(), want, "'{name}'");
        }
        assert_eq!(file.tensor("bn.num_batches_tracked").unwrap().data(), 2i64.to_le_bytes());
        folders.push(dir);
    }

    let Some(python) = std::env::var_os("WGRAD_TORCH_PYTHON") else {
        eprintln!(
            "wgrad_checkpoint_loads_in_pytorch: WGRAD_TORCH_PYTHON is not set, so PyTorch did not check \
             the files; set it to a Python with torch to run scripts/torch_interop.py --check-wgrad"
        );
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join("torch_interop.py");
    for dir in folders {
        let run = Command::new(&python)
            .arg(&script)
            .arg("--check-wgrad")
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("could not run {} (WGRAD_TORCH_PYTHON): {e}", Path::new(&python).display()));
        let stdout = String::from_utf8_lossy(&run.stdout);
        eprintln!("{}:\n{stdout}{}", dir.display(), String::from_utf8_lossy(&run.stderr));
        assert!(run.status.success() && stdout.contains("PASS"), "PyTorch's check of {} failed", dir.display());
    }
}
