//! Models of one's own, on the CPU and on the GPU: `#[derive(Module)]` (names, buffers,
//! containers, attributes, modes, descriptions), `Sequential` with named children and
//! `ModuleList`, freezing (no gradient, no update, no graph, by name with errors) and
//! `to_device` of whole models.

mod common;

use common::{dev_name, devices, gpu};
use wgrad::nn::{self, Forward, Module, ModuleList};
use wgrad::optim::{Adam, Optimizer, Sgd};
use wgrad::{loss, ConvOptions, Device, Error, Tensor};

/// A residual block: its own parameters under `fc` and `norm`.
#[derive(Module)]
struct Block {
    fc: nn::Linear,
    norm: nn::LayerNorm,
}

impl Block {
    fn new(width: usize, seed: u64, dev: &Device) -> Block {
        Block { fc: nn::Linear::with_seed(width, width, true, seed, dev), norm: nn::LayerNorm::new(&[width], dev) }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.norm.forward(&x.add(&self.fc.forward(x).relu()))
    }
}

/// Two inputs (an image and side features), every kind of field the derive registers.
#[derive(Module)]
struct TwoInput {
    conv: nn::Conv2d,
    bn: nn::BatchNorm2d,
    side: nn::Linear,
    blocks: Vec<Block>,
    /// A learned per-class bias: a parameter tensor as a field.
    logit_bias: Tensor,
    /// Absent layers register nothing.
    extra: Option<nn::Linear>,
    head: nn::Sequential,
    dropout: nn::Dropout,
    /// A running count the forward pass keeps: saved, never trained.
    #[module(buffer)]
    calls: Tensor,
    #[module(skip)]
    width: usize,
}

const WIDTH: usize = 6;

impl TwoInput {
    fn new(seed: u64, dev: &Device) -> TwoInput {
        TwoInput {
            conv: nn::Conv2d::with_seed(1, 3, 3, ConvOptions::new(), true, seed, dev),
            bn: nn::BatchNorm2d::new(3, dev),
            side: nn::Linear::with_seed(2, WIDTH - 3, true, seed + 1, dev),
            blocks: (0..2).map(|i| Block::new(WIDTH, seed + 2 + i, dev)).collect(),
            logit_bias: Tensor::zeros(&[4], dev).requires_grad(),
            extra: None,
            head: nn::Sequential::new().add_named("fc", nn::Linear::with_seed(WIDTH, 4, true, seed + 9, dev)),
            dropout: nn::Dropout::with_seed(0.25, seed),
            calls: Tensor::zeros(&[1], dev),
            width: WIDTH,
        }
    }

    /// `image [N, 1, 6, 6]` and `features [N, 2]` to logits `[N, 4]`.
    fn forward(&self, image: &Tensor, features: &Tensor) -> Tensor {
        let a = self.bn.forward(&self.conv.forward(image)).relu().mean(&[2, 3], false);
        let b = self.side.forward(features);
        let mut x = self.dropout.forward(&Tensor::cat(&[a, b], 1));
        assert_eq!(x.dim(1), self.width);
        for block in &self.blocks {
            x = block.forward(&x);
        }
        self.head.forward(&x).add(&self.logit_bias)
    }
}

fn inputs(seed: u64, dev: &Device) -> (Tensor, Tensor) {
    let cpu = Device::cpu();
    (Tensor::randn(&[5, 1, 6, 6], seed, &cpu).to_device(dev), Tensor::randn(&[5, 2], seed + 1, &cpu).to_device(dev))
}

fn names(pairs: Vec<(String, Tensor)>) -> Vec<String> {
    pairs.into_iter().map(|(n, _)| n).collect()
}

const PARAMETERS: [&str; 17] = [
    "conv.weight",
    "conv.bias",
    "bn.weight",
    "bn.bias",
    "side.weight",
    "side.bias",
    "blocks.0.fc.weight",
    "blocks.0.fc.bias",
    "blocks.0.norm.weight",
    "blocks.0.norm.bias",
    "blocks.1.fc.weight",
    "blocks.1.fc.bias",
    "blocks.1.norm.weight",
    "blocks.1.norm.bias",
    "logit_bias",
    "head.fc.weight",
    "head.fc.bias",
];

#[test]
fn derive_registers_every_field_under_its_name() {
    let dev = Device::cpu();
    let mut model = TwoInput::new(1, &dev);
    assert_eq!(names(model.named_parameters()), PARAMETERS);
    assert_eq!(names(model.named_buffers()), ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked", "calls"]);
    let expected: usize = model.parameters().iter().map(Tensor::numel).sum();
    assert_eq!(model.num_parameters(), expected);
    // The state dict keeps each module's tensors together: bn's buffers follow its parameters.
    let keys: Vec<String> = model.state_dict().keys().map(str::to_string).collect();
    assert_eq!(keys[2..7], ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]);
    assert_eq!(keys.last().unwrap(), "calls");
    // An optional layer appears once present.
    model.extra = Some(nn::Linear::new(WIDTH, WIDTH, &dev));
    let with_extra = names(model.named_parameters());
    assert_eq!(with_extra[15..17], ["extra.weight", "extra.bias"]);
}

#[test]
fn derive_sets_modes_and_describes_as_pytorch() {
    let dev = Device::cpu();
    let mut model = TwoInput::new(1, &dev);
    assert!(model.is_training());
    model.set_training(false);
    assert!(
        !model.is_training() && !model.bn.is_training() && !model.dropout.is_training() && !model.head.is_training()
    );
    nn::eval(&mut model);
    model.set_training(true);
    assert!(model.is_training() && model.bn.is_training());
    let text = model.describe();
    let expected = "TwoInput(\n  (conv): Conv2d(1, 3, kernel_size=(3, 3), stride=(1, 1))\n  (bn): BatchNorm2d(3, eps=1e-05, \
                    momentum=0.1, affine=True, track_running_stats=True)\n  (side): Linear(in_features=2, out_features=3, \
                    bias=True)\n  (blocks): ModuleList(\n    (0-1): 2 x Block(\n      (fc): Linear(in_features=6, \
                    out_features=6, bias=True)\n      (norm): LayerNorm((6,), eps=1e-05, elementwise_affine=True)\n    )\n  )\n  \
                    (head): Sequential(\n    (fc): Linear(in_features=6, out_features=4, bias=True)\n  )\n  (dropout): \
                    Dropout(p=0.25)\n)";
    assert_eq!(text, expected);
}

/// Tuple structs (fields named by index), generic structs and renamed fields.
#[test]
fn derive_handles_tuple_generic_and_renamed_structs() {
    #[derive(Module)]
    struct Pair(nn::Linear, #[module(skip)] f32, nn::Linear);

    #[derive(Module)]
    struct Wrapper<M: Module> {
        #[module(rename = "module")]
        inner: M,
        extras: ModuleList<Box<dyn Module>>,
    }

    let dev = Device::cpu();
    let pair = Pair(nn::Linear::new(2, 3, &dev), 0.5, nn::Linear::new(3, 1, &dev));
    assert_eq!(names(pair.named_parameters()), ["0.weight", "0.bias", "2.weight", "2.bias"]);
    assert_eq!(pair.1, 0.5);

    let mut extras: ModuleList<Box<dyn Module>> = ModuleList::new();
    extras.push(Box::new(nn::Linear::new(1, 1, &dev)));
    extras.push(Box::new(nn::BatchNorm1d::new(2, &dev)));
    let wrapped = Wrapper { inner: pair, extras };
    let all = names(wrapped.named_parameters());
    assert_eq!(all[..2], ["module.0.weight", "module.0.bias"]);
    assert_eq!(all[4..], ["extras.0.weight", "extras.0.bias", "extras.1.weight", "extras.1.bias"]);
    assert_eq!(names(wrapped.named_buffers())[0], "extras.1.running_mean");
    assert!(wrapped.describe().contains("(extras): ModuleList(\n    (0): Linear("), "{}", wrapped.describe());
}

/// A derived model trains as a hand-written one would: gradients reach every registered
/// parameter, and the state dict moves it to a fresh instance exactly.
#[test]
fn derived_model_trains_and_round_trips_its_state() {
    for dev in devices("derived_model_trains_and_round_trips_its_state") {
        let model = TwoInput::new(3, &dev);
        let (image, features) = inputs(10, &dev);
        let labels = Tensor::from_slice(&[0i32, 1, 2, 3, 1], &[5], &dev);
        let mut opt = Adam::new(model.parameters(), 1e-2);
        for _ in 0..3 {
            let loss = loss::cross_entropy(&model.forward(&image, &features), &labels);
            let grads = loss.backward();
            for (name, p) in model.named_parameters() {
                assert!(grads.get(&p).is_some(), "{}: no gradient for {name}", dev_name(&dev));
            }
            opt.step(&grads);
        }
        let mut trained = model;
        trained.set_training(false);
        let mut fresh = TwoInput::new(99, &dev);
        fresh.set_training(false);
        let report = fresh.load_state_dict(&trained.state_dict(), true).unwrap();
        assert!(report.missing_keys.is_empty() && report.unexpected_keys.is_empty());
        let a: Vec<f32> = trained.forward(&image, &features).to_vec();
        let b: Vec<f32> = fresh.forward(&image, &features).to_vec();
        assert_eq!(a, b, "{}", dev_name(&dev));
        assert_eq!(fresh.bn.num_batches_tracked().unwrap().to_vec::<i32>(), [3]);
    }
}

#[test]
fn sequential_children_by_name() {
    let dev = Device::cpu();
    let mut model = nn::Sequential::new()
        .add(nn::Linear::new(4, 8, &dev))
        .add_named("act", nn::ReLU)
        .add_named("head", nn::Linear::new(8, 3, &dev));
    assert_eq!(model.names().collect::<Vec<_>>(), ["0", "act", "head"]);
    assert_eq!(names(model.named_parameters()), ["0.weight", "0.bias", "head.weight", "head.bias"]);
    assert!(model.get("act").is_some() && model.get("tail").is_none());
    model.set_training(false);
    let old = model.replace("head", nn::Dropout::new(0.5));
    assert_eq!(old.describe(), "Linear(in_features=8, out_features=3, bias=True)");
    // The replacement takes the container's mode.
    assert!(!model.get("head").unwrap().is_training());
    assert_eq!(model.describe(), "Sequential(\n  (0): Linear(in_features=4, out_features=8, bias=True)\n  (act): ReLU()\n  (head): Dropout(p=0.5)\n)");
    assert_eq!(nn::Sequential::new().describe(), "Sequential()");
}

#[test]
#[should_panic(expected = "Sequential: a child named 'fc' already exists (children: fc)")]
fn sequential_refuses_a_duplicate_name() {
    let dev = Device::cpu();
    let _ = nn::Sequential::new().add_named("fc", nn::Linear::new(1, 1, &dev)).add_named("fc", nn::ReLU);
}

#[test]
#[should_panic(expected = "Sequential::replace: no child named 'haed' (children: 0, head)")]
fn sequential_replace_names_the_children() {
    let dev = Device::cpu();
    let mut model = nn::Sequential::new().add(nn::ReLU).add_named("head", nn::Linear::new(1, 1, &dev));
    model.replace("haed", nn::ReLU);
}

#[test]
#[should_panic(expected = "Sequential: 'a.b' is not a child name")]
fn sequential_refuses_a_dotted_name() {
    let _ = nn::Sequential::new().add_named("a.b", nn::ReLU);
}

#[test]
fn module_list_names_by_index() {
    let dev = Device::cpu();
    let mut list: ModuleList<nn::Linear> = (0..2).map(|_| nn::Linear::new(2, 2, &dev)).collect();
    list.push(nn::Linear::new(2, 1, &dev));
    assert_eq!(list.len(), 3);
    assert_eq!(names(list.named_parameters())[4..], ["2.weight", "2.bias"]);
    assert_eq!(list[2].weight.shape(), &[1, 2]);
    assert_eq!(
        list.describe(),
        "ModuleList(\n  (0-1): 2 x Linear(in_features=2, out_features=2, bias=True)\n  (2): Linear(in_features=2, \
         out_features=1, bias=True)\n)"
    );
    assert_eq!(ModuleList::<nn::Linear>::new().describe(), "ModuleList()");
}

/// Values of every parameter, for bitwise comparisons.
fn values(model: &impl Module) -> Vec<(String, Vec<f32>)> {
    model.named_parameters().into_iter().map(|(n, t)| (n, t.to_vec::<f32>())).collect()
}

/// Freezing the feature extractor: its parameters get no gradient and keep their values
/// through optimizer steps (with weight decay, which would move them if they were
/// updated at all), the rest trains; unfreezing brings them back.
#[test]
fn frozen_parameters_get_no_gradient_and_no_update() {
    for dev in devices("frozen_parameters_get_no_gradient_and_no_update") {
        let model = TwoInput::new(5, &dev);
        let (image, features) = inputs(20, &dev);
        let labels = Tensor::from_slice(&[3i32, 1, 0, 2, 1], &[5], &dev);
        model.conv.freeze();
        assert_eq!(model.freeze_submodule("blocks.0").unwrap(), 4);
        let frozen = |name: &str| name.starts_with("conv.") || name.starts_with("blocks.0.");
        let trainable: usize =
            model.named_parameters().iter().filter(|(n, _)| !frozen(n)).map(|(_, t)| t.numel()).sum();
        assert_eq!(model.num_trainable_parameters(), trainable);
        let mut opt = Sgd::new(model.parameters(), 0.1).momentum(0.9).weight_decay(0.1);
        let before = values(&model);
        for _ in 0..2 {
            let loss = loss::cross_entropy(&model.forward(&image, &features), &labels);
            let grads = loss.backward();
            for (name, p) in model.named_parameters() {
                assert_eq!(grads.get(&p).is_some(), !frozen(&name), "{}: {name}", dev_name(&dev));
            }
            opt.step(&grads);
        }
        for ((name, a), (_, b)) in before.iter().zip(values(&model)) {
            assert_eq!(a == &b, frozen(name), "{}: {name} changed = {}", dev_name(&dev), a != &b);
        }
        model.unfreeze();
        assert_eq!(model.num_trainable_parameters(), model.num_parameters());
        let grads = loss::cross_entropy(&model.forward(&image, &features), &labels).backward();
        assert!(model.parameters().iter().all(|p| grads.get(p).is_some()));
    }
}

/// A frozen network records no graph: with nothing that requires a gradient, its output
/// is an ordinary tensor, as under `no_grad`, and training a head on top of it is exactly
/// training that head on features computed without a graph.
#[test]
fn a_frozen_network_records_no_graph() {
    for dev in devices("a_frozen_network_records_no_graph") {
        let features = nn::Sequential::new()
            .add(nn::Conv2d::with_seed(1, 2, 3, ConvOptions::new(), true, 7, &dev))
            .add(nn::ReLU)
            .add(nn::Flatten::new());
        features.freeze();
        let x = Tensor::randn(&[3, 1, 5, 5], 1, &Device::cpu()).to_device(&dev);
        let y = features.forward(&x);
        assert!(!y.is_tracked(), "{}", dev_name(&dev));

        let labels = Tensor::from_slice(&[0i32, 1, 1], &[3], &dev);
        let train_head = |input: &Tensor| {
            let head = nn::Linear::with_seed(18, 2, true, 3, &dev);
            let mut opt = Adam::new(head.parameters(), 0.01);
            for _ in 0..3 {
                let grads = loss::cross_entropy(&head.forward(input), &labels).backward();
                assert_eq!(grads.len(), 2);
                opt.step(&grads);
            }
            values(&head)
        };
        let with_frozen = train_head(&features.forward(&x));
        let features_without_graph = wgrad::no_grad(|| features.forward(&x));
        assert_eq!(with_frozen, train_head(&features_without_graph), "{}", dev_name(&dev));
    }
}

/// Freezing acts on every handle of a parameter at once: the optimizer built before the
/// freeze skips it, and a later `requires_grad()` unfreezes it.
#[test]
fn freezing_reaches_the_optimizer_handles() {
    let dev = Device::cpu();
    let layer = nn::Linear::with_seed(2, 2, true, 1, &dev);
    let mut opt = Sgd::new(layer.parameters(), 0.5);
    layer.weight.freeze();
    assert!(layer.parameters()[0].is_frozen() && !layer.parameters()[0].is_tracked());
    let w0 = layer.weight.to_vec::<f32>();
    let x = Tensor::ones(&[1, 2], &dev);
    let grads = layer.forward(&x).sum_all().backward();
    assert_eq!(grads.len(), 1);
    opt.step(&grads);
    assert_eq!(layer.weight.to_vec::<f32>(), w0);
    let again = layer.weight.clone().requires_grad();
    assert!(!layer.weight.is_frozen() && again.grad_id() == layer.weight.grad_id());
}

#[test]
fn freezing_an_unknown_submodule_is_an_error_that_freezes_nothing() {
    let dev = Device::cpu();
    let model = TwoInput::new(1, &dev);
    let err = model.freeze_submodule("block").unwrap_err();
    let Error::NotInModule(message) = &err else { panic!("{err:?}") };
    assert!(message.starts_with("freeze_submodule: 'block' is not part of the model; its submodules and parameters are: conv, conv.weight, conv.bias, bn, "), "{message}");
    assert!(message.contains("blocks.0.fc.weight"), "{message}");
    // A prefix of a name is not a submodule.
    assert!(model.freeze_submodule("blocks.0.f").is_err());
    assert!(model.unfreeze_submodule("calls").unwrap_err().to_string().contains("'calls' holds only buffers"));
    assert_eq!(model.num_trainable_parameters(), model.num_parameters());
    assert_eq!(model.freeze_submodule("logit_bias").unwrap(), 1);
}

#[test]
#[should_panic(expected = "freeze: the tensor of shape [2, 2] is the result of an op, not a parameter")]
fn freezing_an_op_result_panics() {
    let w = Tensor::ones(&[2, 2], &Device::cpu()).requires_grad();
    w.mul_scalar(2.0).freeze();
}

/// A whole model moves to the GPU and back: same values, parameters still require
/// gradients (frozen ones stay frozen), batch norm's count stays in host memory, and the
/// moved model trains on its new device.
#[test]
fn to_device_moves_a_whole_model() {
    let Some(gpu) = gpu("to_device_moves_a_whole_model") else { return };
    let cpu = Device::cpu();
    let mut model = TwoInput::new(4, &cpu);
    model.set_training(false);
    model.conv.freeze();
    let (image, features) = inputs(30, &cpu);
    let expected: Vec<f32> = model.forward(&image, &features).to_vec();
    let state = values(&model);

    model.to_device(&gpu).unwrap();
    for (name, t) in model.state_dict().iter() {
        let host_count = name == "bn.num_batches_tracked";
        assert_eq!(t.device().is_cpu(), host_count, "{name}");
    }
    assert!(model.parameters().iter().all(|p| p.grad_id().is_some()));
    assert!(model.conv.weight.is_frozen() && !model.side.weight.is_frozen());
    let on_gpu: Vec<f32> = model.forward(&image.to_device(&gpu), &features.to_device(&gpu)).to_vec();
    // Batch norm, layer norm and the GEMMs reduce in another order on the GPU.
    wgrad::testing::compare(&on_gpu, &expected, common::within(1e-5, 1e-4)).unwrap();

    model.set_training(true);
    let mut opt = Adam::new(model.parameters(), 1e-2);
    let labels = Tensor::from_slice(&[0i32, 1, 2, 3, 0], &[5], &gpu);
    let grads =
        loss::cross_entropy(&model.forward(&image.to_device(&gpu), &features.to_device(&gpu)), &labels).backward();
    opt.step(&grads);
    assert_eq!(model.bn.num_batches_tracked().unwrap().to_vec::<i32>(), [1]);

    model.to_device(&cpu).unwrap();
    assert!(model.state_dict().values().all(|t| t.device().is_cpu()));
    let after = values(&model);
    assert_eq!(after[0], state[0], "the frozen conv weight did not move");
    assert_ne!(after[4], state[4], "side.weight trained on the GPU");
}

/// Random streams (dropout's mask counters) are shown under dotted names, apart from the
/// state dict, and putting one back makes the layer draw the mask it drew at that point.
#[test]
fn random_streams_are_named_saved_and_put_back() {
    let dev = Device::cpu();
    #[derive(Module)]
    struct Net {
        encoder: nn::Sequential,
        lstm: nn::LSTM,
        attention: nn::MultiheadAttention,
    }
    let net = Net {
        encoder: nn::Sequential::new()
            .add(nn::Linear::with_seed(4, 4, true, 1, &dev))
            .add(nn::Dropout::with_seed(0.5, 3)),
        lstm: nn::LSTM::with_options(4, 4, nn::RnnOptions::new().num_layers(2).dropout(0.2), &dev),
        attention: nn::MultiheadAttention::new(4, 2, &dev),
    };
    let names: Vec<String> = net.random_streams().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["encoder.1.rng", "lstm.dropout.rng", "attention.dropout_rng"]);
    assert!(net.state_dict().keys().all(|k| !k.contains("rng")), "streams are not tensors of the state dict");

    let x = Tensor::randn(&[3, 4], 5, &dev);
    let first = net.encoder.forward(&x).to_vec::<f32>();
    let _second = net.encoder.forward(&x);
    assert_eq!(net.random_streams()[0], ("encoder.1.rng".to_string(), 2));
    let mut positions = net.random_streams();
    positions[0].1 = 0;
    net.load_random_streams(&positions).unwrap();
    assert_eq!(net.encoder.forward(&x).to_vec::<f32>(), first, "the first mask again");

    // Names that are not exactly the model's change nothing.
    let err = net.load_random_streams(&[("encoder.1.rng".to_string(), 9)]).unwrap_err();
    assert!(matches!(&err, Error::StateDict { reason } if reason.contains("lstm.dropout.rng")), "{err}");
    assert_eq!(net.random_streams()[0].1, 1);
}
