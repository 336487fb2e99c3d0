//! Data for any task: `TensorDataset` with targets of any shape and dtype, the loader over
//! it, `Subset` and `random_split`, the seeded `Generator` and resuming it,
//! `Tensor::randperm`, `Tensor::unfold` and forecasting windows. Each loader and tensor
//! test runs on the CPU and on the GPU when there is one.

mod common;

use common::{dev_name, devices, gpu, uniform_values};
use std::collections::HashSet;
use wgrad::data::{
    random_split, random_split_with, DataLoader, Dataset, HostBuffer, InMemoryDataset, Samples, Subset, TensorDataset,
};
use wgrad::testing::{cross_check, gradcheck, GradTolerance, Tolerance};
use wgrad::{DType, Device, Generator, Tensor};

/// `n` samples of 3 features and 2 f32 targets: sample `i` is `x = [i, i + 0.25, i + 0.5]`,
/// `y = [10 i, -i]`, so every row names its sample.
fn regression(n: usize, dev: &Device) -> TensorDataset {
    let x: Vec<f32> = (0..n).flat_map(|i| [i as f32, i as f32 + 0.25, i as f32 + 0.5]).collect();
    let y: Vec<f32> = (0..n).flat_map(|i| [10.0 * i as f32, -(i as f32)]).collect();
    TensorDataset::new(&Tensor::from_slice(&x, &[n, 3], dev), &Tensor::from_slice(&y, &[n, 2], dev))
}

/// The sample numbers of one regression batch, after checking inputs and targets agree.
fn regression_rows(x: &Tensor, y: &Tensor) -> Vec<usize> {
    assert_eq!((x.dtype(), y.dtype()), (DType::F32, DType::F32));
    let (x, y) = (x.to_vec::<f32>(), y.to_vec::<f32>());
    (0..y.len() / 2)
        .map(|k| {
            let i = x[3 * k];
            assert_eq!(&x[3 * k..3 * k + 3], &[i, i + 0.25, i + 0.5]);
            assert_eq!(&y[2 * k..2 * k + 2], &[10.0 * i, -i], "row {k}");
            i as usize
        })
        .collect()
}

/// The features `[i, -i]` and label `i` of sample `i`, for `n` samples.
fn numbered(n: usize) -> InMemoryDataset {
    let features: Vec<f32> = (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect();
    InMemoryDataset::new(features, &[2], (0..n as i32).collect())
}

// ---- TensorDataset and the loader ----

#[test]
fn the_regression_loader_yields_f32_targets_of_shape_batch_by_k() {
    for dev in devices("regression loader") {
        let data = regression(10, &Device::cpu());
        assert_eq!((data.len(), data.input_shape(), data.target_shape()), (10, &[3][..], &[2][..]));
        let mut loader = DataLoader::new(&data, 4).shuffle(5);
        for epoch in 0..2 {
            let order = loader.order(epoch);
            let mut served = Vec::new();
            let mut sizes = Vec::new();
            for (x, y) in loader.epoch(&dev) {
                assert_eq!((x.device(), y.device()), (&dev, &dev));
                let b = y.shape()[0];
                assert_eq!((x.shape(), y.shape()), (&[b, 3][..], &[b, 2][..]), "{}", dev_name(&dev));
                sizes.push(b);
                served.extend(regression_rows(&x, &y));
            }
            assert_eq!(sizes, [4, 4, 2]);
            assert_eq!(served, order, "{} epoch {epoch}", dev_name(&dev));
        }
        // drop_last and the order of a resumed epoch behave as for class-labelled data.
        let drop = DataLoader::new(&data, 4).shuffle(5).drop_last(true);
        let rows: Vec<usize> = drop.batches(1, &dev).flat_map(|(x, y)| regression_rows(&x, &y)).collect();
        assert_eq!(rows, drop.order(1)[..8]);
    }
}

#[test]
fn tensor_datasets_keep_i32_inputs_and_targets_of_any_shape() {
    for dev in devices("i32 tensor dataset") {
        let cpu = Device::cpu();
        // Token ids [5, 4] and, per sample, a [2, 3] grid of class indices.
        let tokens: Vec<i32> = (0..20).collect();
        let grid: Vec<i32> = (0..30).map(|v| v % 7).collect();
        let data = TensorDataset::new(
            &Tensor::from_slice(&tokens, &[5, 4], &dev),
            &Tensor::from_slice(&grid, &[5, 2, 3], &cpu),
        );
        assert_eq!((data.input_dtype(), data.target_dtype()), (DType::I32, DType::I32));
        let mut loader = DataLoader::new(&data, 2).shuffle(1);
        let order = loader.order(0);
        for (k, (x, y)) in loader.epoch(&dev).enumerate() {
            let b = x.shape()[0];
            assert_eq!((x.dtype(), y.dtype()), (DType::I32, DType::I32));
            assert_eq!((x.shape(), y.shape()), (&[b, 4][..], &[b, 2, 3][..]));
            let (x, y) = (x.to_vec::<i32>(), y.to_vec::<i32>());
            for (j, &i) in order[2 * k..2 * k + b].iter().enumerate() {
                assert_eq!(x[4 * j..4 * j + 4], tokens[4 * i..4 * i + 4]);
                assert_eq!(y[6 * j..6 * j + 6], grid[6 * i..6 * i + 6]);
            }
        }
        // Scalar targets give [B] batches; get() is PyTorch's dataset[i].
        let scalars =
            TensorDataset::new(&Tensor::zeros(&[3, 2], &dev), &Tensor::from_slice(&[1.5f32, 2.5, 3.5], &[3], &dev));
        assert_eq!(scalars.target_shape(), &[] as &[usize]);
        let (_, y) = DataLoader::new(&scalars, 8).epoch(&dev).next().unwrap();
        assert_eq!((y.shape(), y.to_vec::<f32>()), (&[3][..], vec![1.5, 2.5, 3.5]));
        assert_eq!(scalars.get(2).1.to_vec::<f32>(), [3.5]);
    }
}

#[test]
fn half_inputs_are_widened_and_empty_datasets_yield_nothing() {
    let cpu = Device::cpu();
    let x = Tensor::from_slice(&[0.5f32, 1.5, -2.0, 4.0], &[2, 2], &cpu).half();
    let data = TensorDataset::new(&x, &Tensor::zeros(&[2], &cpu));
    assert_eq!(data.inputs(), &HostBuffer::F32(vec![0.5, 1.5, -2.0, 4.0]));

    let empty = TensorDataset::new(&Tensor::zeros(&[0, 3], &cpu), &Tensor::zeros(&[0, 2], &cpu));
    assert!(empty.is_empty());
    let loader = DataLoader::new(&empty, 4).shuffle(3);
    assert_eq!((loader.num_batches(), loader.batches(0, &cpu).count()), (0, 0));
}

#[test]
#[should_panic(expected = "inputs of shape [5, 3] and targets of shape [4, 2] need the same number of samples")]
fn unequal_lengths_are_rejected_naming_both_shapes() {
    let cpu = Device::cpu();
    TensorDataset::new(&Tensor::zeros(&[5, 3], &cpu), &Tensor::zeros(&[4, 2], &cpu));
}

#[test]
#[should_panic(expected = "inputs of shape [] and targets of shape [1]")]
fn a_tensor_without_a_sample_axis_is_rejected() {
    let cpu = Device::cpu();
    TensorDataset::new(&Tensor::scalar(1.0, &cpu), &Tensor::zeros(&[1], &cpu));
}

/// A class-labelled data set still loads as `(features, labels [B])`, in the order the
/// loader has always used (the value computed by an independent port of the original
/// SplitMix64 Fisher-Yates): pinned, so a change of the shuffle cannot pass unnoticed (runs
/// resumed from old checkpoints rely on it).
#[test]
fn class_labelled_data_sets_keep_their_batches_and_their_order() {
    let data = numbered(10);
    let loader = DataLoader::new(&data, 4).shuffle(42);
    assert_eq!(loader.order(0), [0, 6, 9, 1, 5, 7, 8, 2, 4, 3]);
    assert_eq!(loader.order(3), Generator::for_epoch(42, 3).permutation(10));
    let (x, y) = loader.batches(0, &Device::cpu()).next().unwrap();
    assert_eq!((x.shape(), y.shape(), y.dtype()), (&[4, 2][..], &[4][..], DType::I32));
    assert_eq!(y.to_vec::<i32>(), [0, 6, 9, 1]);
    assert_eq!((data.sample_count(), data.target_shape(), data.target_dtype()), (10, &[] as &[usize], DType::I32));
}

#[test]
#[should_panic(expected = "should hold 6 target values, the data set appended 1")]
fn a_data_set_that_appends_too_few_target_values_is_caught() {
    struct Short;
    impl Samples for Short {
        fn sample_count(&self) -> usize {
            2
        }
        fn input_shape(&self) -> &[usize] {
            &[1]
        }
        fn target_shape(&self) -> &[usize] {
            &[3]
        }
        fn target_dtype(&self) -> DType {
            DType::F32
        }
        fn append_pair(&self, index: usize, inputs: &mut HostBuffer, targets: &mut HostBuffer) {
            inputs.extend_f32(&[index as f32]);
            if index == 0 {
                targets.extend_f32(&[1.0]);
            }
        }
    }
    DataLoader::new(Short, 2).epoch(&Device::cpu()).next();
}

// ---- randperm and the generator ----

#[test]
fn randperm_is_a_permutation_equal_on_every_device() {
    let cpu = Device::cpu();
    for (n, seed) in [(0, 1), (1, 1), (7, 3), (1000, 42)] {
        let p = Tensor::randperm(n, seed, &cpu);
        assert_eq!((p.shape(), p.dtype()), (&[n][..], DType::I32));
        let values = p.to_vec::<i32>();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n as i32).collect::<Vec<_>>(), "n {n}");
        let expected: Vec<i32> = Generator::new(seed).permutation(n).iter().map(|&i| i as i32).collect();
        assert_eq!(values, expected);
        if let Some(gpu) = gpu("randperm") {
            let g = Tensor::randperm(n, seed, &gpu);
            assert_eq!(g.device(), &gpu);
            assert_eq!(g.to_vec::<i32>(), values, "n {n}: GPU and CPU permutations differ");
        }
    }
    assert_ne!(Tensor::randperm(50, 1, &cpu).to_vec::<i32>(), Tensor::randperm(50, 2, &cpu).to_vec::<i32>());
    // A permutation indexes rows, on either device.
    for dev in devices("randperm index") {
        let x = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0, 4.0], &[5], &dev);
        let p = Tensor::randperm(5, 9, &dev);
        let picked: Vec<i32> = x.index_select(0, &p).to_vec::<f32>().iter().map(|&v| v as i32).collect();
        assert_eq!(picked, p.to_vec::<i32>());
    }
}

#[test]
#[should_panic(expected = "randperm: n = 2147483648 does not fit in the i32")]
fn randperm_rejects_sizes_past_i32() {
    Tensor::randperm(1 << 31, 0, &Device::cpu());
}

#[test]
fn a_restored_generator_state_gives_the_same_order() {
    let mut g = Generator::new(2024);
    let epoch0 = g.permutation(20);
    let saved = g.state();
    let after: Vec<Vec<usize>> = (0..3).map(|_| g.permutation(20)).collect();
    let draws: Vec<u64> = (0..4).map(|_| g.next_u64()).collect();

    // A "new process": only the saved word survives.
    let mut resumed = Generator::from_state(saved);
    let again: Vec<Vec<usize>> = (0..3).map(|_| resumed.permutation(20)).collect();
    assert_eq!(after, again);
    assert_eq!(draws, (0..4).map(|_| resumed.next_u64()).collect::<Vec<_>>());
    assert_eq!(resumed, g);
    assert_ne!(epoch0, after[0], "the generator did not advance");

    // Splits drawn from a restored generator repeat too.
    let data = regression(12, &Device::cpu());
    let mut a = Generator::new(5);
    a.next_u64();
    let state = a.state();
    let first = random_split_with(&data, &[6, 6], &mut a);
    let second = random_split_with(&data, &[6, 6], &mut a);
    assert_ne!(first[0].indices(), second[0].indices(), "one generator split twice the same way");
    let replay = random_split_with(&data, &[6, 6], &mut Generator::from_state(state));
    assert_eq!(first, replay);
}

// ---- random_split ----

/// Checks the subsets are disjoint and together cover `0..n`.
fn assert_partition<D: Samples>(parts: &[Subset<D>], n: usize) {
    let mut seen = HashSet::new();
    for (k, part) in parts.iter().enumerate() {
        for &i in part.indices() {
            assert!(i < n, "subset {k} holds index {i} of {n}");
            assert!(seen.insert(i), "index {i} is in two subsets");
        }
    }
    assert_eq!(seen.len(), n, "the subsets do not cover the data set");
}

#[test]
fn a_split_is_disjoint_covers_everything_and_loads() {
    let data = regression(23, &Device::cpu());
    let by_length = random_split(&data, &[10, 3, 10], 7);
    assert_eq!(by_length.iter().map(Subset::len).collect::<Vec<_>>(), [10, 3, 10]);
    assert_partition(&by_length, 23);
    // The split is randperm with the same seed, cut into consecutive pieces.
    let perm: Vec<usize> =
        Tensor::randperm(23, 7, &Device::cpu()).to_vec::<i32>().iter().map(|&i| i as usize).collect();
    assert_eq!(by_length.iter().flat_map(|s| s.indices().to_vec()).collect::<Vec<_>>(), perm);
    assert_eq!(random_split(&data, &[10, 3, 10], 7), by_length, "same seed, same split");
    assert_ne!(random_split(&data, &[10, 3, 10], 8), by_length);

    // Fractions: floor(23 * f) each, the 2 left over to the first two subsets.
    let by_fraction = random_split(&data, &[0.5, 0.3, 0.2], 7);
    assert_eq!(by_fraction.iter().map(Subset::len).collect::<Vec<_>>(), [12, 7, 4]);
    assert_partition(&by_fraction, 23);

    for dev in devices("split loader") {
        let val = &by_fraction[1];
        let mut loader = DataLoader::new(val, 3).shuffle(1);
        let rows: Vec<usize> = loader.epoch(&dev).flat_map(|(x, y)| regression_rows(&x, &y)).collect();
        let expected: Vec<usize> = loader.order(0).iter().map(|&k| val.indices()[k]).collect();
        assert_eq!(rows, expected, "{}", dev_name(&dev));
    }

    // A subset splits again, and class-labelled data splits alike.
    let halves = random_split(by_length[0].clone(), &[0.5, 0.5], 3);
    assert_eq!(halves.iter().map(Subset::len).collect::<Vec<_>>(), [5, 5]);
    let inner: HashSet<usize> =
        halves.iter().flat_map(|h| h.indices().iter().map(|&k| by_length[0].indices()[k])).collect();
    assert_eq!(inner, by_length[0].indices().iter().copied().collect());
    let mnist_like = numbered(9);
    let parts = random_split(&mnist_like, &[4usize, 5], 0);
    assert_partition(&parts, 9);
    let (_, labels) = DataLoader::new(&parts[0], 9).epoch(&Device::cpu()).next().unwrap();
    assert_eq!(labels.to_vec::<i32>(), parts[0].indices().iter().map(|&i| i as i32).collect::<Vec<_>>());
    assert_eq!(parts[1].dataset().len(), 9);
}

#[test]
#[should_panic(expected = "random_split: lengths [4, 4] add up to 8, but the data set has 10 samples")]
fn split_lengths_must_add_up_to_the_data_set() {
    random_split(&numbered(10), &[4, 4], 0);
}

#[test]
#[should_panic(
    expected = "random_split: fractions [0.5, 0.6] add up to 1.1, not 1 (splitting a data set of 10 samples)"
)]
fn split_fractions_must_add_up_to_one() {
    random_split(&numbered(10), &[0.5, 0.6], 0);
}

#[test]
#[should_panic(expected = "random_split: size -1 in [-1, 11] is negative")]
fn negative_split_sizes_are_rejected() {
    random_split(&numbered(10), &[-1, 11], 0);
}

#[test]
#[should_panic(expected = "Subset::new: index 3 is out of range for a data set of 3 samples")]
fn subset_indices_are_checked() {
    Subset::new(numbered(3), vec![0, 3]);
}

// ---- unfold and windows ----

/// The reference `unfold` on the host for a contiguous tensor.
fn unfold_reference(values: &[f32], shape: &[usize], axis: usize, size: usize, step: usize) -> (Vec<f32>, Vec<usize>) {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let len = shape[axis];
    let windows = (len - size) / step + 1;
    let mut out = Vec::new();
    for o in 0..outer {
        for w in 0..windows {
            for i in 0..inner {
                for j in 0..size {
                    out.push(values[(o * len + w * step + j) * inner + i]);
                }
            }
        }
    }
    let mut out_shape = shape.to_vec();
    out_shape[axis] = windows;
    out_shape.push(size);
    (out, out_shape)
}

const UNFOLD_CASES: [(&[usize], usize, usize, usize); 5] = [
    (&[7], 0, 3, 2),        // 3 overlapping windows
    (&[7, 3], 0, 3, 1),     // a series with channels, stride 1
    (&[2, 11, 2], 1, 4, 3), // a middle axis; the last element left over
    (&[5, 6], 1, 2, 4),     // step larger than the window: gaps
    (&[4, 5], 1, 5, 1),     // one window covering the axis
];

#[test]
fn unfold_matches_the_reference_on_every_device() {
    for dev in devices("unfold") {
        for (k, &(shape, axis, size, step)) in UNFOLD_CASES.iter().enumerate() {
            let n: usize = shape.iter().product();
            let values = uniform_values(n, -1.0, 1.0, k as u64);
            let (expected, expected_shape) = unfold_reference(&values, shape, axis, size, step);
            let x = Tensor::from_slice(&values, shape, &dev);
            let out = x.unfold(axis as isize, size, step);
            assert_eq!(out.shape(), &expected_shape[..], "{shape:?} axis {axis}");
            assert_eq!(
                out.to_vec::<f32>(),
                expected,
                "{} {shape:?} axis {axis} size {size} step {step}",
                dev_name(&dev)
            );
        }
        // A negative axis and a non-contiguous input.
        let x = Tensor::from_slice(&uniform_values(12, 0.0, 1.0, 9), &[3, 4], &dev);
        let t = x.t(); // [4, 3]
        let (expected, _) = unfold_reference(&t.contiguous().to_vec::<f32>(), &[4, 3], 1, 2, 1);
        assert_eq!(t.unfold(-1, 2, 1).to_vec::<f32>(), expected);
    }
    if let Some(gpu) = gpu("unfold cross-check") {
        cross_check(
            "unfold",
            &gpu,
            Tolerance::Exact,
            |dev| vec![Tensor::from_slice(&uniform_values(2 * 13 * 3, -1.0, 1.0, 4), &[2, 13, 3], dev)],
            |x| x[0].unfold(1, 5, 2).contiguous(),
        );
    }
}

#[test]
fn unfold_gradients_add_up_over_overlapping_windows() {
    for dev in devices("unfold gradient") {
        let x = uniform_values(2 * 7, -1.0, 1.0, 11);
        gradcheck("unfold", &dev, &[(x, vec![2, 7])], GradTolerance::default(), |x| x[0].unfold(1, 3, 2))
            .unwrap_or_else(|e| panic!("{e}"));
        // Each element's gradient counts the windows that hold it: 1, 1, 2, 1, 2, 1, 1.
        let x = Tensor::from_slice(&[0.0f32; 7], &[7], &dev).requires_grad();
        let grads = x.unfold(0, 3, 2).sum_all().backward();
        assert_eq!(grads.get(&x).unwrap().to_vec::<f32>(), [1., 1., 2., 1., 2., 1., 1.], "{}", dev_name(&dev));
    }
}

#[test]
#[should_panic(expected = "unfold: windows of size 8 every 1 do not fit axis 0 of shape [7]")]
fn unfold_rejects_a_window_longer_than_the_axis() {
    Tensor::zeros(&[7], &Device::cpu()).unfold(0, 8, 1);
}

#[test]
fn windows_cut_a_series_into_forecasting_samples() {
    let cpu = Device::cpu();
    // A series of 12 steps with 2 channels: step t is [t, 100 + t].
    let values: Vec<f32> = (0..12).flat_map(|t| [t as f32, 100.0 + t as f32]).collect();
    let series = Tensor::from_slice(&values, &[12, 2], &cpu);
    let data = TensorDataset::windows(&series, 4, 2, 3);
    assert_eq!((data.len(), data.input_shape(), data.target_shape()), (3, &[4, 2][..], &[2, 2][..]));
    // Each sample is one unfold window split in two.
    let unfolded = series.unfold(0, 6, 3).permute(&[0, 2, 1]).contiguous().to_vec::<f32>();
    for i in 0..3 {
        let (x, y) = data.get(i);
        let window = &unfolded[12 * i..12 * i + 12];
        assert_eq!(x.to_vec::<f32>(), window[..8], "sample {i}");
        assert_eq!(y.to_vec::<f32>(), window[8..], "sample {i}");
        assert_eq!(y.to_vec::<f32>()[0], (3 * i + 4) as f32);
    }
    for dev in devices("windows loader") {
        let (x, y) = DataLoader::new(&data, 2).epoch(&dev).next().unwrap();
        assert_eq!((x.shape(), y.shape()), (&[2, 4, 2][..], &[2, 2, 2][..]));
        assert_eq!(y.to_vec::<f32>(), [4., 104., 5., 105., 7., 107., 8., 108.]);
    }
    // Too short for one window: no samples; i32 series stay i32.
    assert!(TensorDataset::windows(&series, 10, 3, 1).is_empty());
    let ids = TensorDataset::windows(&Tensor::from_slice(&[1i32, 2, 3, 4], &[4], &cpu), 2, 1, 1);
    assert_eq!((ids.len(), ids.targets()), (2, &HostBuffer::I32(vec![3, 4])));
}
