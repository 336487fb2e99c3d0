//! `nn::summary`: Keras' MNIST CNN row by row, frozen parameters, buffers, and a derived
//! model summarized through a forward closure.

use wgrad::nn::{self, Conv2d, Forward, Linear, MaxPool2d, Module};
use wgrad::{Device, Tensor};

/// The Keras MNIST example's CNN (as `examples/common/models.rs::keras_cnn`).
fn keras_cnn(dev: &Device) -> nn::Sequential {
    nn::Sequential::new()
        .add(Conv2d::new(1, 32, 3, dev))
        .add(nn::ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(32, 64, 3, dev))
        .add(nn::ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(64, 64, 3, dev))
        .add(nn::ReLU)
        .add(nn::Flatten::new())
        .add(Linear::new(64 * 3 * 3, 64, dev))
        .add(nn::ReLU)
        .add(Linear::new(64, 10, dev))
}

#[test]
fn the_keras_cnn_has_keras_counts_and_shapes() {
    let dev = Device::cpu();
    let model = keras_cnn(&dev);
    let s = nn::summary(&model, &Tensor::zeros(&[1, 1, 28, 28], &dev));
    let rows: Vec<(&str, &str, Vec<usize>, usize)> = s
        .layers
        .iter()
        .map(|l| (l.name.as_str(), l.kind.as_str(), l.output_shape.clone().unwrap(), l.parameters))
        .collect();
    let expected: Vec<(&str, &str, Vec<usize>, usize)> = vec![
        ("0", "Conv2d", vec![1, 32, 26, 26], 320),
        ("1", "ReLU", vec![1, 32, 26, 26], 0),
        ("2", "MaxPool2d", vec![1, 32, 13, 13], 0),
        ("3", "Conv2d", vec![1, 64, 11, 11], 18_496),
        ("4", "ReLU", vec![1, 64, 11, 11], 0),
        ("5", "MaxPool2d", vec![1, 64, 5, 5], 0),
        ("6", "Conv2d", vec![1, 64, 3, 3], 36_928),
        ("7", "ReLU", vec![1, 64, 3, 3], 0),
        ("8", "Flatten", vec![1, 576], 0),
        ("9", "Linear", vec![1, 64], 36_928),
        ("10", "ReLU", vec![1, 64], 0),
        ("11", "Linear", vec![1, 10], 650),
    ];
    assert_eq!(rows, expected);
    assert_eq!(s.model, "Sequential");
    assert_eq!(s.output_shape, [1, 10]);
    assert_eq!((s.total_parameters, s.trainable_parameters, s.non_trainable_parameters), (93_322, 93_322, 0));
    assert_eq!((s.trainable_bytes, s.non_trainable_bytes, s.buffer_bytes), (93_322 * 4, 0, 0));
    let text = s.to_string();
    assert!(text.starts_with("Model: Sequential\n"), "{text}");
    assert!(text.contains("\n0 (Conv2d)     [1, 32, 26, 26]      320  yes\n"), "{text}");
    assert!(text.contains("\n1 (ReLU)       [1, 32, 26, 26]        0\n"), "{text}");
    assert!(text.contains("\nTotal params: 93,322 (364.54 KB)\n"), "{text}");
    assert!(text.contains("\nNon-trainable params: 0 (0.00 B)\n"), "{text}");
}

#[test]
fn frozen_layers_and_buffers_are_counted_apart() {
    let dev = Device::cpu();
    let mut model = nn::Sequential::new()
        .add_named("features", Linear::new(3, 4, &dev))
        .add_named("norm", nn::BatchNorm1d::new(4, &dev))
        .add_named("head", Linear::new(4, 2, &dev));
    model.freeze_submodule("features").unwrap();
    model.get("head").unwrap().named_parameters()[1].1.freeze(); // the head's bias alone
    nn::eval(&mut model);
    let s = nn::summary(&model, &Tensor::randn(&[5, 3], 0, &dev));
    let trainable: Vec<(usize, usize)> = s.layers.iter().map(|l| (l.parameters, l.trainable_parameters)).collect();
    assert_eq!(trainable, [(16, 0), (8, 8), (10, 8)]);
    assert_eq!((s.total_parameters, s.trainable_parameters, s.non_trainable_parameters), (34, 16, 18));
    assert_eq!((s.trainable_bytes, s.non_trainable_bytes), (64, 72));
    // running_mean and running_var (4 each, f32) and num_batches_tracked (one i32).
    assert_eq!((s.buffer_elements, s.buffer_bytes), (9, 36));
    let text = s.to_string();
    assert!(text.contains("features (Linear)") && text.contains("  no\n"), "{text}");
    assert!(text.contains("  partly\n") && text.contains("Buffers: 9 (36.00 B)"), "{text}");
}

#[derive(Module)]
struct TwoTower {
    conv: nn::Conv2d,
    blocks: Vec<Linear>,
    head: Linear,
    scale: Tensor,
}

#[test]
fn any_module_gets_a_row_per_parameter_holder_and_its_output_shape() {
    let dev = Device::cpu();
    let model = TwoTower {
        conv: Conv2d::new(1, 4, 3, &dev),
        blocks: (0..2).map(|_| Linear::new(3, 3, &dev)).collect(),
        head: Linear::new(4 + 3, 2, &dev),
        scale: Tensor::ones(&[2], &dev).requires_grad(),
    };
    let (image, side) = (Tensor::zeros(&[2, 1, 6, 6], &dev), Tensor::zeros(&[2, 3], &dev));
    let s = nn::summary_with(&model, || {
        let a = model.conv.forward(&image).mean(&[2, 3], false);
        let mut b = side.clone();
        for block in &model.blocks {
            b = block.forward(&b);
        }
        model.head.forward(&Tensor::cat(&[a, b], 1)).mul(&model.scale)
    });
    let rows: Vec<(&str, &str, usize)> =
        s.layers.iter().map(|l| (l.name.as_str(), l.kind.as_str(), l.parameters)).collect();
    assert_eq!(
        rows,
        [
            ("conv", "Conv2d", 40),
            ("blocks.0", "Linear", 12),
            ("blocks.1", "Linear", 12),
            ("head", "Linear", 16),
            ("", "", 2)
        ]
    );
    assert!(s.layers.iter().all(|l| l.output_shape.is_none()));
    assert_eq!(s.output_shape, [2, 2]);
    assert_eq!(s.total_parameters, model.num_parameters());
    let text = s.to_string();
    assert!(text.contains("\nOutput shape: [2, 2]\n") && text.contains("(own) (TwoTower)"), "{text}");
}
