//! A model's table of layers, output shapes and parameter counts, as Keras'
//! `model.summary()` (and torchinfo's `summary`).
//!
//! Output shapes need a forward pass, and only a [`Sequential`] lets us run its children
//! one by one: [`summary`] gives it one row per child with that child's output shape.
//! Any other [`Module`] shows its children only through [`Module::visit`], as names of
//! tensors, and its forward pass is its own method with its own inputs; so
//! [`summary_with`] gives one row per submodule that holds parameters (grouped by the
//! dotted names of [`Module::named_parameters`]), no per-row output shape, and the output
//! shape of the whole model from a forward closure the caller passes. Layer types come
//! from [`Module::describe`] (PyTorch's repr), where it names them.

use std::collections::HashMap;
use std::fmt;

use super::{Module, Sequential};
use crate::Tensor;

/// One row of a [`Summary`]: a layer (a child of a `Sequential`) or a parameter-holding
/// submodule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSummary {
    /// The PyTorch dotted name (`"0"`, `"features"`, `"blocks.1"`); empty for parameters
    /// held by the model itself.
    pub name: String,
    /// The layer's type (`"Conv2d"`), from its `describe`; empty when it is not known.
    pub kind: String,
    /// The shape of the layer's output in the summary's forward pass; `None` where only
    /// the whole model was run ([`summary_with`]).
    pub output_shape: Option<Vec<usize>>,
    /// Scalar parameters of the layer.
    pub parameters: usize,
    /// Of those, the ones not frozen.
    pub trainable_parameters: usize,
}

/// A model's layers with their output shapes and parameter counts, and the totals. Its
/// `Display` is a Keras-style table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The model's type, from its `describe`.
    pub model: String,
    /// One row per layer, in registration order.
    pub layers: Vec<LayerSummary>,
    /// The shape of the model's output in the summary's forward pass.
    pub output_shape: Vec<usize>,
    /// Scalar parameters in all.
    pub total_parameters: usize,
    /// Scalar parameters that are not frozen ([`Tensor::is_frozen`]).
    pub trainable_parameters: usize,
    /// Scalar parameters that are frozen.
    pub non_trainable_parameters: usize,
    /// Bytes the trainable parameters take (4 per `f32`, 2 per `f16`).
    pub trainable_bytes: usize,
    /// Bytes the frozen parameters take.
    pub non_trainable_bytes: usize,
    /// Scalars in buffers (batch norm's running statistics).
    pub buffer_elements: usize,
    /// Bytes the buffers take.
    pub buffer_bytes: usize,
}

/// The summary of a [`Sequential`]: one row per child, in order, with the shape of its
/// output when `input` goes through the model. Runs one forward pass under `no_grad`, in
/// the model's current mode: in training mode a batch norm updates its running
/// statistics and a dropout advances its random stream, so summarize in evaluation mode
/// ([`super::eval`]) to leave the model as it was.
///
/// ```
/// use wgrad::nn::{self, Module};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let model = nn::Sequential::new()
///     .add(nn::Linear::new(4, 8, &dev))
///     .add(nn::ReLU)
///     .add(nn::Linear::new(8, 3, &dev));
/// model.named_parameters()[0].1.freeze(); // the first weight
/// let s = nn::summary(&model, &Tensor::zeros(&[2, 4], &dev));
/// assert_eq!(s.layers[0].output_shape, Some(vec![2, 8]));
/// assert_eq!(s.layers[1].kind, "ReLU");
/// assert_eq!((s.total_parameters, s.trainable_parameters, s.non_trainable_parameters), (67, 35, 32));
/// println!("{s}");
/// ```
pub fn summary(model: &Sequential, input: &Tensor) -> Summary {
    let mut layers = Vec::new();
    let output = crate::no_grad(|| {
        let mut x = input.clone();
        for (name, layer) in model.iter() {
            x = layer.forward(&x);
            let (parameters, trainable_parameters) = count(&layer.named_parameters());
            layers.push(LayerSummary {
                name: name.to_string(),
                kind: type_name(&layer.describe()),
                output_shape: Some(x.shape().to_vec()),
                parameters,
                trainable_parameters,
            });
        }
        x
    });
    totals(model, layers, output.shape().to_vec())
}

/// The summary of any [`Module`]: one row per submodule that holds parameters (named as
/// in [`Module::named_parameters`], `""` for the model's own), and the output shape of the
/// whole model from `forward`, which the caller writes as the model's forward pass (run
/// under `no_grad`, in the model's current mode, as [`summary`]). Rows have no output
/// shape: a module's forward pass cannot be split into its children's from outside.
///
/// ```
/// use wgrad::nn::{self, Forward, Module};
/// use wgrad::{Device, Tensor};
///
/// #[derive(Module)]
/// struct TwoInputs {
///     image: nn::Linear,
///     side: nn::Linear,
/// }
///
/// let dev = Device::cpu();
/// let model = TwoInputs { image: nn::Linear::new(4, 2, &dev), side: nn::Linear::new(3, 2, &dev) };
/// let (a, b) = (Tensor::zeros(&[5, 4], &dev), Tensor::zeros(&[5, 3], &dev));
/// let s = nn::summary_with(&model, || model.image.forward(&a).add(&model.side.forward(&b)));
/// let rows: Vec<(&str, &str, usize)> =
///     s.layers.iter().map(|l| (l.name.as_str(), l.kind.as_str(), l.parameters)).collect();
/// assert_eq!(rows, [("image", "Linear", 10), ("side", "Linear", 8)]);
/// assert_eq!(s.output_shape, [5, 2]);
/// ```
pub fn summary_with<M: Module + ?Sized>(model: &M, forward: impl FnOnce() -> Tensor) -> Summary {
    let output = crate::no_grad(forward);
    let kinds = child_types(&model.describe());
    let mut layers: Vec<LayerSummary> = Vec::new();
    for (name, p) in model.named_parameters() {
        let owner = name.rsplit_once('.').map_or("", |(owner, _)| owner);
        let row = match layers.iter().position(|l| l.name == owner) {
            Some(i) => &mut layers[i],
            None => {
                layers.push(LayerSummary {
                    name: owner.to_string(),
                    kind: kinds.get(owner).cloned().unwrap_or_default(),
                    output_shape: None,
                    parameters: 0,
                    trainable_parameters: 0,
                });
                layers.last_mut().expect("just pushed")
            }
        };
        row.parameters += p.numel();
        if !p.is_frozen() {
            row.trainable_parameters += p.numel();
        }
    }
    totals(model, layers, output.shape().to_vec())
}

/// (all, trainable) scalar counts of `params`.
fn count(params: &[(String, Tensor)]) -> (usize, usize) {
    let all = params.iter().map(|(_, p)| p.numel()).sum();
    let trainable = params.iter().filter(|(_, p)| !p.is_frozen()).map(|(_, p)| p.numel()).sum();
    (all, trainable)
}

fn bytes(t: &Tensor) -> usize {
    t.numel() * t.dtype().size_bytes()
}

fn totals<M: Module + ?Sized>(model: &M, layers: Vec<LayerSummary>, output_shape: Vec<usize>) -> Summary {
    let params = model.named_parameters();
    let buffers = model.named_buffers();
    let (total_parameters, trainable_parameters) = count(&params);
    let trainable_bytes = params.iter().filter(|(_, p)| !p.is_frozen()).map(|(_, p)| bytes(p)).sum();
    let non_trainable_bytes = params.iter().filter(|(_, p)| p.is_frozen()).map(|(_, p)| bytes(p)).sum();
    Summary {
        model: type_name(&model.describe()),
        layers,
        output_shape,
        total_parameters,
        trainable_parameters,
        non_trainable_parameters: total_parameters - trainable_parameters,
        trainable_bytes,
        non_trainable_bytes,
        buffer_elements: buffers.iter().map(|(_, b)| b.numel()).sum(),
        buffer_bytes: buffers.iter().map(|(_, b)| bytes(b)).sum(),
    }
}

/// The type at the start of a PyTorch-style repr: `"Conv2d"` from `"Conv2d(1, 32, ...)"`.
fn type_name(describe: &str) -> String {
    describe.split(|c: char| c == '(' || c.is_whitespace()).next().unwrap_or("").to_string()
}

/// The dotted path of every child a PyTorch-style repr lists (`  (name): Type(...)`,
/// indented two spaces per level), with its type. A run of equal list entries printed as
/// `(0-2): 3 x Block(...)` stands for each of `0`, `1` and `2`.
fn child_types(describe: &str) -> HashMap<String, String> {
    let mut types = HashMap::new();
    // Per level, the names an entry stands for (several for a run of equal entries).
    let mut path: Vec<Vec<String>> = Vec::new();
    for line in describe.lines().skip(1) {
        let trimmed = line.trim_start();
        let depth = (line.len() - trimmed.len()) / 2;
        let Some((name, rest)) = trimmed.strip_prefix('(').and_then(|t| t.split_once("): ")) else { continue };
        if depth == 0 {
            continue;
        }
        let (names, rest) = match (name.split_once('-'), rest.split_once(" x ")) {
            (Some((first, last)), Some((_, rest))) => match (first.parse::<usize>(), last.parse::<usize>()) {
                (Ok(first), Ok(last)) => ((first..=last).map(|i| i.to_string()).collect(), rest),
                _ => (vec![name.to_string()], rest),
            },
            _ => (vec![name.to_string()], rest),
        };
        path.truncate(depth - 1);
        path.push(names);
        let mut paths = vec![String::new()];
        for level in &path {
            paths = paths
                .iter()
                .flat_map(|p| level.iter().map(move |n| if p.is_empty() { n.clone() } else { format!("{p}.{n}") }))
                .collect();
        }
        for p in paths {
            types.insert(p, type_name(rest));
        }
    }
    types
}

/// `93322` as `93,322`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Bytes in Keras' units: `364.54 KB` (powers of 1024).
fn human_bytes(b: usize) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", units[unit])
}

fn shape_text(shape: &[usize]) -> String {
    format!("{shape:?}")
}

/// A Keras-style table:
///
/// ```text
/// Model: Sequential
/// ______________________________________________
/// Layer (type)  Output shape  Param #  Trainable
/// ==============================================
/// 0 (Linear)    [2, 8]             40  partly
/// 1 (ReLU)      [2, 8]              0
/// 2 (Linear)    [2, 3]             27  yes
/// ==============================================
/// Output shape: [2, 3]
/// Total params: 67 (268.00 B)
/// Trainable params: 35 (140.00 B)
/// Non-trainable params: 32 (128.00 B)
/// Buffers: 0 (0.00 B)
/// ______________________________________________
/// ```
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 4]> = self
            .layers
            .iter()
            .map(|l| {
                let label = match (l.name.is_empty(), l.kind.is_empty()) {
                    (true, _) => format!("(own) ({})", self.model),
                    (false, true) => l.name.clone(),
                    (false, false) => format!("{} ({})", l.name, l.kind),
                };
                let trainable = match (l.parameters, l.trainable_parameters) {
                    (0, _) => "",
                    (p, t) if p == t => "yes",
                    (_, 0) => "no",
                    _ => "partly",
                };
                let shape = l.output_shape.as_deref().map_or_else(|| "-".to_string(), shape_text);
                [label, shape, thousands(l.parameters), trainable.to_string()]
            })
            .collect();
        let header = ["Layer (type)", "Output shape", "Param #", "Trainable"];
        let width = |c: usize| rows.iter().map(|r| r[c].len()).chain([header[c].len()]).max().unwrap_or(0);
        let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
        let line_width = w0 + w1 + w2 + w3 + 6;
        writeln!(f, "Model: {}", self.model)?;
        writeln!(f, "{}", "_".repeat(line_width))?;
        writeln!(f, "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}", header[0], header[1], header[2], header[3])?;
        writeln!(f, "{}", "=".repeat(line_width))?;
        for [a, b, c, d] in &rows {
            writeln!(f, "{}", format!("{a:<w0$}  {b:<w1$}  {c:>w2$}  {d:<w3$}").trim_end())?;
        }
        writeln!(f, "{}", "=".repeat(line_width))?;
        writeln!(f, "Output shape: {}", shape_text(&self.output_shape))?;
        let total_bytes = self.trainable_bytes + self.non_trainable_bytes;
        writeln!(f, "Total params: {} ({})", thousands(self.total_parameters), human_bytes(total_bytes))?;
        writeln!(
            f,
            "Trainable params: {} ({})",
            thousands(self.trainable_parameters),
            human_bytes(self.trainable_bytes)
        )?;
        writeln!(
            f,
            "Non-trainable params: {} ({})",
            thousands(self.non_trainable_parameters),
            human_bytes(self.non_trainable_bytes)
        )?;
        writeln!(f, "Buffers: {} ({})", thousands(self.buffer_elements), human_bytes(self.buffer_bytes))?;
        write!(f, "{}", "_".repeat(line_width))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_sizes_print_as_keras_prints_them() {
        assert_eq!(thousands(93322), "93,322");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(human_bytes(93322 * 4), "364.54 KB");
        assert_eq!(human_bytes(0), "0.00 B");
    }

    #[test]
    fn child_types_follow_the_repr_nesting() {
        let repr = "Net(\n  (conv): Conv2d(1, 4, kernel_size=(3, 3))\n  (blocks): Sequential(\n    (0): Linear(in_features=8)\n  )\n  (head): Linear(in_features=8)\n)";
        let types = child_types(repr);
        assert_eq!(types["conv"], "Conv2d");
        assert_eq!(types["blocks"], "Sequential");
        assert_eq!(types["blocks.0"], "Linear");
        assert_eq!(types["head"], "Linear");
        let runs = "Net(\n  (blocks): ModuleList(\n    (0-1): 2 x Block(\n      (fc): Linear(in_features=8)\n    )\n    (2): Linear(in_features=8)\n  )\n)";
        let types = child_types(runs);
        assert_eq!(
            (types["blocks.0"].as_str(), types["blocks.1"].as_str(), types["blocks.2"].as_str()),
            ("Block", "Block", "Linear")
        );
        assert_eq!((types["blocks.0.fc"].as_str(), types["blocks.1.fc"].as_str()), ("Linear", "Linear"));
    }
}
