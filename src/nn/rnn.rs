//! Recurrent layers: [`LSTM`], [`GRU`] and [`RNN`], as PyTorch's `nn.LSTM`, `nn.GRU` and
//! `nn.RNN`: the same parameters with the same names, shapes, gate order and
//! initialisation, the same options and the same return values, so weights and code move
//! across.
//!
//! Each layer and direction runs as one fused op ([`Tensor::rnn_layer`]); the modules stack
//! layers, run the reverse direction of bidirectional layers, concatenate the two
//! directions' outputs, and apply dropout between layers while training.
//!
//! The options are an [`RnnOptions`] value given to the constructor rather than builder
//! methods on the layer: the number of layers and directions and the bias flag decide
//! which parameters exist, and drawing them once, when the layer is built, keeps a layer's
//! weights a function of its seed alone.
//!
//! Not supported from PyTorch's list: `proj_size` (LSTM projections) and `PackedSequence`
//! objects, whose role the `lengths` argument of `forward_with_lengths` plays.

use super::{Dropout, Forward, Module, Visitor, VisitorMut};
use crate::{init, random, Device, RnnMode, RnnWeights, Tensor};

/// The cell nonlinearity of [`RNN`] (PyTorch's `nonlinearity='tanh'` or `'relu'`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RnnNonlinearity {
    /// `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`, PyTorch's default.
    #[default]
    Tanh,
    /// `h' = relu(W_ih x + b_ih + W_hh h + b_hh)`.
    Relu,
}

/// The options of [`LSTM`], [`GRU`] and [`RNN`], with PyTorch's defaults: one layer, with
/// biases, time-major input, no dropout, one direction, `tanh` (which only [`RNN`] reads).
///
/// They are given to a constructor (`with_options`, `with_seed`) instead of being set by
/// builder methods on a built layer: the number of layers and directions and the bias
/// flag decide which parameters exist, so a layer draws its parameters once, when it is
/// built, and its weights depend on its seed alone.
///
/// ```
/// use wgrad::nn::{Forward, LSTM, Module, RnnOptions};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let lstm = LSTM::with_options(28, 16, RnnOptions::new().num_layers(2).batch_first(true), &dev);
/// let x = Tensor::randn(&[4, 28, 28], 0, &dev); // [batch, time, features]
/// let (y, (h_n, c_n)) = lstm.forward(&x);
/// assert_eq!(y.shape(), &[4, 28, 16]);
/// assert_eq!(h_n.shape(), &[2, 4, 16]); // [num_layers * num_directions, batch, hidden]
/// assert_eq!(c_n.shape(), &[2, 4, 16]);
/// assert_eq!(lstm.describe(), "LSTM(28, 16, num_layers=2, batch_first=True)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RnnOptions {
    /// Stacked layers; each layer after the first reads the previous layer's output.
    pub num_layers: usize,
    /// Whether the layers have `bias_ih` and `bias_hh`.
    pub bias: bool,
    /// Input and output as `[B, T, features]` instead of `[T, B, features]` (the states stay
    /// `[num_layers * num_directions, B, H]`, as in PyTorch).
    pub batch_first: bool,
    /// Dropout probability on the output of every layer but the last, while training.
    pub dropout: f32,
    /// Whether every layer also runs over the sequence backwards, its outputs
    /// concatenated to the forward ones (`2 * hidden_size` features).
    pub bidirectional: bool,
    /// The cell nonlinearity of [`RNN`]; [`LSTM`] and [`GRU`] accept only the default.
    pub nonlinearity: RnnNonlinearity,
}

impl Default for RnnOptions {
    fn default() -> Self {
        RnnOptions {
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
            nonlinearity: RnnNonlinearity::Tanh,
        }
    }
}

impl RnnOptions {
    /// PyTorch's defaults.
    pub fn new() -> RnnOptions {
        RnnOptions::default()
    }

    /// Stacked layers (at least 1).
    pub fn num_layers(mut self, num_layers: usize) -> RnnOptions {
        self.num_layers = num_layers;
        self
    }

    /// With `false`, the layers have no `bias_ih` and `bias_hh`.
    pub fn bias(mut self, bias: bool) -> RnnOptions {
        self.bias = bias;
        self
    }

    /// Input and output as `[B, T, features]`.
    pub fn batch_first(mut self, batch_first: bool) -> RnnOptions {
        self.batch_first = batch_first;
        self
    }

    /// Dropout probability (in `[0, 1]`) between layers while training.
    pub fn dropout(mut self, p: f32) -> RnnOptions {
        self.dropout = p;
        self
    }

    /// Run every layer in both directions.
    pub fn bidirectional(mut self, bidirectional: bool) -> RnnOptions {
        self.bidirectional = bidirectional;
        self
    }

    /// The cell nonlinearity of [`RNN`].
    pub fn nonlinearity(mut self, nonlinearity: RnnNonlinearity) -> RnnOptions {
        self.nonlinearity = nonlinearity;
        self
    }

    fn directions(&self) -> usize {
        1 + self.bidirectional as usize
    }
}

/// The parameters of one layer and direction.
struct LayerParams {
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias: Option<(Tensor, Tensor)>,
}

impl LayerParams {
    fn weights(&self) -> RnnWeights<'_> {
        RnnWeights {
            weight_ih: &self.weight_ih,
            weight_hh: &self.weight_hh,
            bias_ih: self.bias.as_ref().map(|b| &b.0),
            bias_hh: self.bias.as_ref().map(|b| &b.1),
        }
    }
}

/// What the three modules share: the stack of layers and how to run it.
struct Recurrent {
    mode: RnnMode,
    input_size: usize,
    hidden_size: usize,
    options: RnnOptions,
    /// Layer-major: index `layer * num_directions + direction`, as PyTorch orders `h_n`.
    layers: Vec<LayerParams>,
    dropout: Dropout,
    training: bool,
}

/// `(name, shape)` of every parameter in PyTorch's order: per layer, per direction,
/// `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`.
fn parameter_specs(mode: RnnMode, input_size: usize, hidden: usize, o: &RnnOptions) -> Vec<(String, Vec<usize>)> {
    let rows = mode.gates() * hidden;
    let mut specs = Vec::new();
    for layer in 0..o.num_layers {
        let layer_input = if layer == 0 { input_size } else { hidden * o.directions() };
        for direction in 0..o.directions() {
            let suffix = format!("l{layer}{}", if direction == 1 { "_reverse" } else { "" });
            specs.push((format!("weight_ih_{suffix}"), vec![rows, layer_input]));
            specs.push((format!("weight_hh_{suffix}"), vec![rows, hidden]));
            if o.bias {
                specs.push((format!("bias_ih_{suffix}"), vec![rows]));
                specs.push((format!("bias_hh_{suffix}"), vec![rows]));
            }
        }
    }
    specs
}

impl Recurrent {
    fn check_options(mode: RnnMode, hidden: usize, o: &RnnOptions) {
        let name = mode.name();
        assert!(hidden > 0, "{name}: hidden_size must be positive, got {hidden}");
        assert!(o.num_layers >= 1, "{name}: num_layers must be at least 1, got {}", o.num_layers);
        assert!(
            (0.0..=1.0).contains(&o.dropout),
            "{name}: dropout should be a number in range [0, 1] representing the probability of an element being \
             zeroed, got {}",
            o.dropout
        );
        assert!(
            mode == RnnMode::RnnTanh || mode == RnnMode::RnnRelu || o.nonlinearity == RnnNonlinearity::Tanh,
            "{name}: nonlinearity applies to RNN only, got {:?}",
            o.nonlinearity
        );
        if o.dropout > 0.0 && o.num_layers == 1 {
            log::warn!("{name}: dropout={} acts between layers only, and there is one layer (num_layers=1)", o.dropout);
        }
    }

    /// The layer around parameters in `parameter_specs` order; `seed` seeds the dropout
    /// masks.
    fn from_tensors(
        mode: RnnMode,
        input_size: usize,
        hidden: usize,
        options: RnnOptions,
        params: Vec<Tensor>,
        seed: u64,
    ) -> Self {
        let mut params = params.into_iter();
        let layers = (0..options.num_layers * options.directions())
            .map(|_| {
                let mut next = || params.next().expect("one tensor per parameter spec");
                let (weight_ih, weight_hh) = (next(), next());
                let bias = options.bias.then(|| (next(), next()));
                LayerParams { weight_ih, weight_hh, bias }
            })
            .collect();
        let dropout = Dropout::with_seed(options.dropout, seed ^ 0x6472_6f70);
        Recurrent { mode, input_size, hidden_size: hidden, options, layers, dropout, training: true }
    }

    /// Every parameter uniform in `[-1/sqrt(H), 1/sqrt(H)]`, as PyTorch's
    /// `RNNBase.reset_parameters`, each from its own seed derived from `seed`.
    fn new(mode: RnnMode, input_size: usize, hidden: usize, options: RnnOptions, seed: u64, device: &Device) -> Self {
        Recurrent::check_options(mode, hidden, &options);
        let bound = 1.0 / (hidden as f32).sqrt();
        let params = parameter_specs(mode, input_size, hidden, &options)
            .iter()
            .enumerate()
            .map(|(i, (_, shape))| {
                let seed = seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                init::uniform(shape, -bound, bound, seed, device).requires_grad()
            })
            .collect();
        Recurrent::from_tensors(mode, input_size, hidden, options, params, seed)
    }

    fn from_parameters(
        mode: RnnMode,
        input_size: usize,
        hidden: usize,
        options: RnnOptions,
        params: Vec<Tensor>,
    ) -> Self {
        Recurrent::check_options(mode, hidden, &options);
        let specs = parameter_specs(mode, input_size, hidden, &options);
        let name = mode.name();
        assert_eq!(
            params.len(),
            specs.len(),
            "{name}: {} parameters given, the options need {} ({})",
            params.len(),
            specs.len(),
            specs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        );
        for ((label, shape), p) in specs.iter().zip(&params) {
            assert_eq!(p.shape(), shape.as_slice(), "{name}: {label} of shape {:?} should be {shape:?}", p.shape());
        }
        Recurrent::from_tensors(mode, input_size, hidden, options, params, random::next_seed())
    }

    /// PyTorch's names: per layer, per direction, `weight_ih_l{k}`, `weight_hh_l{k}`,
    /// `bias_ih_l{k}`, `bias_hh_l{k}` (`_reverse` for the backward direction).
    fn visit(&self, v: &mut Visitor<'_>) {
        for (i, l) in self.layers.iter().enumerate() {
            let suffix = self.suffix(i);
            v.parameter(&format!("weight_ih_{suffix}"), &l.weight_ih);
            v.parameter(&format!("weight_hh_{suffix}"), &l.weight_hh);
            if let Some((b_ih, b_hh)) = &l.bias {
                v.parameter(&format!("bias_ih_{suffix}"), b_ih);
                v.parameter(&format!("bias_hh_{suffix}"), b_hh);
            }
        }
        // The masks between layers: a stream, not a tensor, so the state dict stays PyTorch's.
        v.module("dropout", &self.dropout);
    }

    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        let suffixes: Vec<String> = (0..self.layers.len()).map(|i| self.suffix(i)).collect();
        for (l, suffix) in self.layers.iter_mut().zip(suffixes) {
            v.parameter(&format!("weight_ih_{suffix}"), &mut l.weight_ih);
            v.parameter(&format!("weight_hh_{suffix}"), &mut l.weight_hh);
            if let Some((b_ih, b_hh)) = &mut l.bias {
                v.parameter(&format!("bias_ih_{suffix}"), b_ih);
                v.parameter(&format!("bias_hh_{suffix}"), b_hh);
            }
        }
    }

    /// `l{layer}` or `l{layer}_reverse` for entry `index` of `layers`.
    fn suffix(&self, index: usize) -> String {
        let d = self.options.directions();
        format!("l{}{}", index / d, if index % d == 1 { "_reverse" } else { "" })
    }

    fn weights(&self, layer: usize, reverse: bool) -> RnnWeights<'_> {
        let o = &self.options;
        assert!(
            layer < o.num_layers && (!reverse || o.bidirectional),
            "{}: no layer {layer}{} (num_layers={}, bidirectional={})",
            self.mode.name(),
            if reverse { " in reverse" } else { "" },
            o.num_layers,
            o.bidirectional
        );
        self.layers[layer * o.directions() + reverse as usize].weights()
    }

    /// Runs the stack. Returns the output and `h_n` (and `c_n` for the LSTM).
    fn run(
        &self,
        x: &Tensor,
        lengths: Option<&[usize]>,
        h0: Option<&Tensor>,
        c0: Option<&Tensor>,
    ) -> (Tensor, Tensor, Option<Tensor>) {
        let name = self.mode.name();
        let o = &self.options;
        let layout = if o.batch_first { "[B, T, input_size]" } else { "[T, B, input_size]" };
        assert!(
            x.rank() == 2 || x.rank() == 3,
            "{name}: input must be {layout}, or [T, input_size] for one unbatched sequence, got shape {:?}",
            x.shape()
        );
        let unbatched = x.rank() == 2;
        let time_major = if unbatched {
            x.unsqueeze(1)
        } else if o.batch_first {
            x.transpose(0, 1)
        } else {
            x.clone()
        };
        assert_eq!(
            time_major.dim(2),
            self.input_size,
            "{name}: input of shape {:?} has {} features, expected input_size={}",
            x.shape(),
            time_major.dim(2),
            self.input_size
        );
        let (batch, dirs) = (time_major.dim(1), o.directions());
        let states = o.num_layers * dirs;
        let expected: Vec<usize> =
            if unbatched { vec![states, self.hidden_size] } else { vec![states, batch, self.hidden_size] };
        for (label, s) in [("h0", h0), ("c0", c0)] {
            if let Some(s) = s {
                assert_eq!(
                    s.shape(),
                    expected.as_slice(),
                    "{name}: {label} of shape {:?} should be {expected:?} (num_layers * num_directions, {}hidden_size)",
                    s.shape(),
                    if unbatched { "" } else { "batch, " }
                );
            }
        }
        if let Some(lengths) = lengths {
            assert_eq!(
                lengths.len(),
                batch,
                "{name}: {} lengths given for a batch of {batch} sequences (input of shape {:?})",
                lengths.len(),
                x.shape()
            );
        }
        let batched = |s: Option<&Tensor>| s.map(|s| if unbatched { s.unsqueeze(1) } else { s.clone() });
        let (h0, c0) = (batched(h0), batched(c0));

        let mut layer_input = time_major;
        let (mut h_n, mut c_n) = (Vec::with_capacity(states), Vec::new());
        for layer in 0..o.num_layers {
            let mut outputs = Vec::with_capacity(dirs);
            for direction in 0..dirs {
                let index = layer * dirs + direction;
                let initial = |s: &Option<Tensor>| s.as_ref().map(|s| s.narrow(0, index, 1).squeeze(0));
                let (h, c) = (initial(&h0), initial(&c0));
                let weights = self.layers[index].weights();
                let out = layer_input.rnn_layer(self.mode, &weights, h.as_ref(), c.as_ref(), direction == 1, lengths);
                outputs.push(out.output);
                h_n.push(out.h_n);
                c_n.extend(out.c_n);
            }
            let mut out = if dirs == 2 { Tensor::cat(&outputs, 2) } else { outputs.pop().expect("one direction") };
            if layer + 1 < o.num_layers {
                out = self.dropout.forward(&out);
            }
            layer_input = out;
        }
        let (mut output, mut h_n) = (layer_input, Tensor::stack(&h_n, 0));
        let mut c_n = (!c_n.is_empty()).then(|| Tensor::stack(&c_n, 0));
        if unbatched {
            output = output.squeeze(1);
            h_n = h_n.squeeze(1);
            c_n = c_n.map(|c| c.squeeze(1));
        } else if o.batch_first {
            output = output.transpose(0, 1);
        }
        (output, h_n, c_n)
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        self.dropout.set_training(training);
    }

    /// PyTorch's repr: options at their defaults are left out (and, as in PyTorch, the
    /// nonlinearity is never shown).
    fn describe(&self) -> String {
        let o = &self.options;
        let mut s = format!("{}({}, {}", self.mode.name(), self.input_size, self.hidden_size);
        if o.num_layers != 1 {
            s += &format!(", num_layers={}", o.num_layers);
        }
        if !o.bias {
            s += ", bias=False";
        }
        if o.batch_first {
            s += ", batch_first=True";
        }
        if o.dropout != 0.0 {
            s += &format!(", dropout={}", o.dropout);
        }
        if o.bidirectional {
            s += ", bidirectional=True";
        }
        s + ")"
    }
}

/// Implements the constructors, accessors and `Module` of one recurrent layer type.
macro_rules! recurrent_common {
    ($ty:ident) => {
        impl $ty {
            /// A one-layer, one-direction layer with biases, initialised from this thread's
            /// seed stream (see [`crate::manual_seed`]).
            pub fn new(input_size: usize, hidden_size: usize, device: &Device) -> $ty {
                $ty::with_options(input_size, hidden_size, RnnOptions::new(), device)
            }

            /// A layer with the given options, initialised from this thread's seed stream.
            pub fn with_options(input_size: usize, hidden_size: usize, options: RnnOptions, device: &Device) -> $ty {
                $ty::with_seed(input_size, hidden_size, options, random::next_seed(), device)
            }

            /// A layer initialised from an explicit seed: every parameter uniform in
            /// `[-1/sqrt(hidden_size), 1/sqrt(hidden_size)]`, as PyTorch initialises it.
            pub fn with_seed(
                input_size: usize,
                hidden_size: usize,
                options: RnnOptions,
                seed: u64,
                device: &Device,
            ) -> $ty {
                $ty { inner: Recurrent::new($ty::mode(&options), input_size, hidden_size, options, seed, device) }
            }

            /// A layer with the given parameters (which should require gradients), in the
            /// order and with the shapes [`Module::named_parameters`] lists: per layer and
            /// direction `weight_ih`, `weight_hh`, then, with biases, `bias_ih` and `bias_hh`.
            /// Panics when the count or a shape does not fit the options.
            pub fn from_parameters(
                input_size: usize,
                hidden_size: usize,
                options: RnnOptions,
                parameters: Vec<Tensor>,
            ) -> $ty {
                let inner =
                    Recurrent::from_parameters($ty::mode(&options), input_size, hidden_size, options, parameters);
                $ty { inner }
            }

            /// The options the layer was built with.
            pub fn options(&self) -> RnnOptions {
                self.inner.options
            }

            /// Features of each input step.
            pub fn input_size(&self) -> usize {
                self.inner.input_size
            }

            /// Features of the hidden state of each layer and direction.
            pub fn hidden_size(&self) -> usize {
                self.inner.hidden_size
            }

            /// The parameters of layer `layer` in one direction (`reverse` for the backward
            /// direction of a bidirectional layer).
            pub fn weights(&self, layer: usize, reverse: bool) -> RnnWeights<'_> {
                self.inner.weights(layer, reverse)
            }
        }

        impl Forward for $ty {
            /// The output sequence alone; the inherent `forward` also returns the states.
            fn forward(&self, x: &Tensor) -> Tensor {
                self.inner.run(x, None, None, None).0
            }
        }

        impl Module for $ty {
            /// PyTorch's names: `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`,
            /// `weight_ih_l0_reverse`, ..., layer by layer.
            fn visit(&self, v: &mut Visitor<'_>) {
                self.inner.visit(v);
            }

            fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
                self.inner.visit_mut(v);
            }

            /// Dropout between layers acts only while training.
            fn set_training(&mut self, training: bool) {
                self.inner.set_training(training);
            }

            fn is_training(&self) -> bool {
                self.inner.training
            }

            fn describe(&self) -> String {
                self.inner.describe()
            }
        }
    };
}

/// A multi-layer long short-term memory network, as `torch.nn.LSTM`. For each step,
///
/// ```text
/// i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)      f = sigmoid(W_if x + b_if + W_hf h + b_hf)
/// g = tanh(W_ig x + b_ig + W_hg h + b_hg)         o = sigmoid(W_io x + b_io + W_ho h + b_ho)
/// c' = f * c + i * g                               h' = o * tanh(c')
/// ```
///
/// with the gates stacked in the order i, f, g, o in `weight_ih_l{k}` (`[4H, input]`),
/// `weight_hh_l{k}` (`[4H, H]`), `bias_ih_l{k}` and `bias_hh_l{k}` (`[4H]`).
///
/// ```
/// use wgrad::nn::{Forward, LSTM, Module};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let lstm = LSTM::new(10, 20, &dev);
/// let (y, (h_n, c_n)) = lstm.forward(&Tensor::randn(&[5, 3, 10], 0, &dev));
/// assert_eq!((y.shape(), h_n.shape(), c_n.shape()), (&[5, 3, 20][..], &[1, 3, 20][..], &[1, 3, 20][..]));
/// let names: Vec<String> = lstm.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]);
/// ```
#[allow(clippy::upper_case_acronyms)] // PyTorch's name
pub struct LSTM {
    inner: Recurrent,
}

impl LSTM {
    fn mode(_options: &RnnOptions) -> RnnMode {
        RnnMode::Lstm
    }

    /// The output `[T, B, D * H]` (`[B, T, D * H]` with `batch_first`) and `(h_n, c_n)`,
    /// each `[num_layers * D, B, H]`, from zero initial states. D is 2 for bidirectional
    /// layers, else 1; an unbatched `[T, input_size]` input gives `[T, D * H]` and states
    /// `[num_layers * D, H]`.
    pub fn forward(&self, x: &Tensor) -> (Tensor, (Tensor, Tensor)) {
        self.forward_impl(x, None, None)
    }

    /// As [`LSTM::forward`], from the initial states `(h0, c0)`, each
    /// `[num_layers * D, B, H]`.
    pub fn forward_with_state(&self, x: &Tensor, state: (&Tensor, &Tensor)) -> (Tensor, (Tensor, Tensor)) {
        self.forward_impl(x, None, Some(state))
    }

    /// As [`LSTM::forward`] on a padded batch: sequence `b` is `lengths[b]` steps long
    /// (`1..=T`), and what follows it is padding that changes neither the states nor the
    /// gradients. Outputs at padded steps are zero and `(h_n, c_n)` are the states at each
    /// sequence's own last step, as with PyTorch's packed sequences. `state` is `(h0, c0)`
    /// or `None` for zeros.
    pub fn forward_with_lengths(
        &self,
        x: &Tensor,
        lengths: &[usize],
        state: Option<(&Tensor, &Tensor)>,
    ) -> (Tensor, (Tensor, Tensor)) {
        self.forward_impl(x, Some(lengths), state)
    }

    fn forward_impl(
        &self,
        x: &Tensor,
        lengths: Option<&[usize]>,
        state: Option<(&Tensor, &Tensor)>,
    ) -> (Tensor, (Tensor, Tensor)) {
        let (y, h_n, c_n) = self.inner.run(x, lengths, state.map(|s| s.0), state.map(|s| s.1));
        (y, (h_n, c_n.expect("the LSTM has a cell state")))
    }
}

recurrent_common!(LSTM);

/// A multi-layer gated recurrent unit network, as `torch.nn.GRU`. For each step,
///
/// ```text
/// r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)      z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
/// n = tanh(W_in x + b_in + r * (W_hn h + b_hn))    h' = (1 - z) * n + z * h
/// ```
///
/// with the gates stacked in the order r, z, n in `weight_ih_l{k}` (`[3H, input]`),
/// `weight_hh_l{k}` (`[3H, H]`) and the biases (`[3H]`). The reset gate scales the
/// recurrent projection of `n` together with its bias `b_hn`, as in PyTorch and cuDNN.
///
/// ```
/// use wgrad::nn::{Forward, GRU, Module, RnnOptions};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let gru = GRU::with_options(4, 6, RnnOptions::new().bidirectional(true), &dev);
/// let (y, h_n) = gru.forward(&Tensor::randn(&[5, 2, 4], 0, &dev));
/// assert_eq!((y.shape(), h_n.shape()), (&[5, 2, 12][..], &[2, 2, 6][..]));
/// assert_eq!(gru.describe(), "GRU(4, 6, bidirectional=True)");
/// ```
#[allow(clippy::upper_case_acronyms)] // PyTorch's name
pub struct GRU {
    inner: Recurrent,
}

impl GRU {
    fn mode(_options: &RnnOptions) -> RnnMode {
        RnnMode::Gru
    }
}

/// An Elman recurrent network with `tanh` or `relu`, as `torch.nn.RNN`:
/// `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)` for each step (`relu` with
/// [`RnnOptions::nonlinearity`]), with `weight_ih_l{k}` `[H, input]`, `weight_hh_l{k}`
/// `[H, H]` and biases `[H]`.
///
/// ```
/// use wgrad::nn::{Forward, Module, RNN, RnnNonlinearity, RnnOptions};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let rnn = RNN::with_options(3, 5, RnnOptions::new().nonlinearity(RnnNonlinearity::Relu), &dev);
/// let (y, h_n) = rnn.forward(&Tensor::randn(&[4, 2, 3], 0, &dev));
/// assert!(y.to_vec::<f32>().iter().all(|&v| v >= 0.0));
/// assert_eq!(h_n.shape(), &[1, 2, 5]);
/// ```
#[allow(clippy::upper_case_acronyms)] // PyTorch's name
pub struct RNN {
    inner: Recurrent,
}

impl RNN {
    fn mode(options: &RnnOptions) -> RnnMode {
        match options.nonlinearity {
            RnnNonlinearity::Tanh => RnnMode::RnnTanh,
            RnnNonlinearity::Relu => RnnMode::RnnRelu,
        }
    }
}

/// Implements the `forward` family of a layer whose only state is `h`.
macro_rules! hidden_only_forward {
    ($ty:ident) => {
        impl $ty {
            /// The output `[T, B, D * H]` (`[B, T, D * H]` with `batch_first`) and `h_n`
            /// `[num_layers * D, B, H]`, from a zero initial state. D is 2 for
            /// bidirectional layers, else 1; an unbatched `[T, input_size]` input gives
            /// `[T, D * H]` and `h_n` `[num_layers * D, H]`.
            pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
                self.forward_impl(x, None, None)
            }

            /// As `forward`, from the initial state `h0` (`[num_layers * D, B, H]`).
            pub fn forward_with_state(&self, x: &Tensor, h0: &Tensor) -> (Tensor, Tensor) {
                self.forward_impl(x, None, Some(h0))
            }

            /// As `forward` on a padded batch: sequence `b` is `lengths[b]` steps long
            /// (`1..=T`), and what follows it is padding that changes neither the state nor
            /// the gradients. Outputs at padded steps are zero and `h_n` is the state at each
            /// sequence's own last step, as with PyTorch's packed sequences. `h0` defaults
            /// to zeros.
            pub fn forward_with_lengths(&self, x: &Tensor, lengths: &[usize], h0: Option<&Tensor>) -> (Tensor, Tensor) {
                self.forward_impl(x, Some(lengths), h0)
            }

            fn forward_impl(&self, x: &Tensor, lengths: Option<&[usize]>, h0: Option<&Tensor>) -> (Tensor, Tensor) {
                let (y, h_n, _) = self.inner.run(x, lengths, h0, None);
                (y, h_n)
            }
        }
    };
}

hidden_only_forward!(GRU);
recurrent_common!(GRU);
hidden_only_forward!(RNN);
recurrent_common!(RNN);
