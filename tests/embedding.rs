//! Embedding: the lookup against `index_select`, the sort-based weight gradient against a
//! direct accumulation on the host (bit for bit, on both devices, run after run), the
//! grouping of positions by index against a stable sort, finite-difference gradients,
//! `padding_idx`, frozen pretrained tables, the layer, and the error messages.
//!
//! Sizes are chosen for the GPU sort: position counts that are not powers of two, more
//! than a workgroup (256) and more than one sort block (512 pairs), and above 1024 so that
//! merges span blocks and run the global-memory stage; embedding widths that are not
//! multiples of 4; tables with rows that no index names.

mod common;

use common::{dev_name, devices, gpu, randn};
use wgrad::nn::{Embedding, Forward, Module};
use wgrad::optim::{Optimizer, Sgd};
use wgrad::testing::{check_poison, compare, cross_check, gradcheck, GradTolerance, Tolerance};
use wgrad::{checkpoint, set_embedding_index_checks, Device, Tensor};

// ---- helpers ----

/// Pseudo-random indices in `0..rows`, skewed so that a few rows take most positions:
/// every other position picks one of the first three rows.
fn skewed_indices(n: usize, rows: usize, seed: u64) -> Vec<i32> {
    let u = common::uniform_values(n, 0.0, 1.0, seed);
    u.iter()
        .enumerate()
        .map(|(p, &x)| {
            let span = if p % 2 == 0 { rows.min(3) } else { rows };
            ((x * span as f32) as usize).min(span - 1) as i32
        })
        .collect()
}

/// The weight gradient accumulated directly: for each position in increasing order, its
/// gradient row added into the row it looked up. The reference for the sort-based kernels,
/// which must add the same values in the same order.
fn host_accumulation(grad: &[f32], indices: &[i32], rows: usize, dim: usize, padding: Option<usize>) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * dim];
    for (p, &i) in indices.iter().enumerate() {
        if i < 0 || i as usize >= rows || Some(i as usize) == padding {
            continue;
        }
        for c in 0..dim {
            out[i as usize * dim + c] += grad[p * dim + c];
        }
    }
    out
}

/// The gradient of `sum(embedding(weight, indices) * gy)` with respect to the table.
fn weight_grad(
    weight: &[f32],
    dim: usize,
    indices: &[i32],
    index_shape: &[usize],
    gy: &[f32],
    padding: Option<usize>,
    dev: &Device,
) -> Tensor {
    let rows = weight.len() / dim;
    let w = Tensor::from_slice(weight, &[rows, dim], dev).requires_grad();
    let idx = Tensor::from_slice(indices, index_shape, dev);
    let y = w.embedding(&idx, padding);
    let grads = y.backward_with(&Tensor::from_slice(gy, y.shape(), dev));
    grads.wrt(&w).clone()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The message of the panic `f` raises.
fn panic_message(f: impl FnOnce()) -> String {
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

// ---- the lookup ----

#[test]
fn lookup_matches_index_select_for_any_index_shape() {
    for dev in devices("lookup_matches_index_select_for_any_index_shape") {
        let w = randn(&[11, 7], 1, &dev);
        let idx_values = [3i32, 0, 10, 3, 3, 7, 1, 0, 9, 10, 2, 3, 5, 5, 4];
        let idx = Tensor::from_slice(&idx_values, &[3, 5], &dev);
        let y = w.embedding(&idx, None);
        assert_eq!(y.shape(), &[3, 5, 7]);
        let expected = w.index_select(0, &idx.reshape(&[-1])).reshape(&[3, 5, 7]);
        compare(&y.to_vec::<f32>(), &expected.to_vec::<f32>(), Tolerance::Exact)
            .unwrap_or_else(|e| panic!("{}: {e}", dev_name(&dev)));

        // A transposed table is read through its strides.
        let wt = randn(&[7, 11], 2, &dev).t();
        let y = wt.embedding(&idx, None);
        let expected = wt.contiguous().embedding(&idx, None);
        assert_eq!(y.to_vec::<f32>(), expected.to_vec::<f32>(), "{}: transposed table", dev_name(&dev));

        // A 0-d index gives one row; an empty index tensor an empty result.
        let one = w.embedding(&Tensor::from_slice(&[4i32], &[], &dev), None);
        assert_eq!(one.shape(), &[7]);
        assert_eq!(one.to_vec::<f32>(), w.narrow(0, 4, 1).to_vec::<f32>());
        let none = w.embedding(&Tensor::from_slice::<i32>(&[], &[0, 4], &dev), None);
        assert_eq!(none.shape(), &[0, 4, 7]);
        // A table with zero-length vectors.
        let flat = Tensor::zeros(&[5, 0], &dev).embedding(&Tensor::from_slice(&[4i32, 0, 4], &[3], &dev), None);
        assert_eq!(flat.shape(), &[3, 0]);
    }
}

#[test]
fn gpu_lookup_matches_the_cpu_and_writes_every_element() {
    let Some(gpu) = gpu("gpu_lookup_matches_the_cpu_and_writes_every_element") else { return };
    // 87 positions of a 5-wide table: 435 outputs, two workgroups, the second partial.
    let idx: Vec<i32> = skewed_indices(87, 13, 3);
    let idx2 = idx.clone();
    cross_check(
        "embedding [3, 29] of [13, 5]",
        &gpu,
        Tolerance::Exact,
        move |d| vec![randn(&[13, 5], 4, d), Tensor::from_slice(&idx, &[3, 29], d)],
        |x| x[0].embedding(&x[1], None),
    );
    // A slice of a transposed table: a view with an offset and a column stride.
    cross_check(
        "embedding of a strided [13, 3] view",
        &gpu,
        Tolerance::Exact,
        move |d| vec![randn(&[5, 17], 5, d), Tensor::from_slice(&idx2, &[87], d)],
        |x| x[0].t().narrow(0, 2, 13).narrow(1, 1, 3).embedding(&x[1], None),
    );
}

// ---- the gradient ----

/// (positions, rows, dim): one position; fewer positions than a workgroup; more than a
/// workgroup; just over one sort block; over two blocks (a global merge stage); one row
/// (every index equal); many more rows than positions (rows no index names, and more row
/// starts than a workgroup).
const GRAD_CASES: [(usize, usize, usize); 7] =
    [(1, 4, 3), (7, 5, 1), (300, 13, 5), (513, 7, 3), (1100, 13, 2), (700, 1, 3), (50, 300, 3)];

#[test]
fn gradient_accumulates_repeated_indices_like_the_host() {
    for dev in devices("gradient_accumulates_repeated_indices_like_the_host") {
        for (seed, &(n, rows, dim)) in GRAD_CASES.iter().enumerate() {
            let seed = seed as u64 * 10;
            let idx = skewed_indices(n, rows, seed);
            let weight = common::uniform_values(rows * dim, -1.0, 1.0, seed + 1);
            let gy = common::uniform_values(n * dim, -1.0, 1.0, seed + 2);
            let dw = weight_grad(&weight, dim, &idx, &[n], &gy, None, &dev);
            assert_eq!(dw.shape(), &[rows, dim]);
            check_poison(&dw).unwrap_or_else(|e| panic!("{} n={n}: {e}", dev_name(&dev)));
            let expected = host_accumulation(&gy, &idx, rows, dim, None);
            assert_eq!(
                bits(&dw.to_vec::<f32>()),
                bits(&expected),
                "{}: gradient of {n} positions into [{rows}, {dim}]",
                dev_name(&dev)
            );
        }
        // Every index equal, in a table of several rows, from a 2-D index tensor.
        let idx = vec![4i32; 600];
        let gy = common::uniform_values(600 * 5, -1.0, 1.0, 77);
        let dw = weight_grad(&[0.0; 9 * 5], 5, &idx, &[20, 30], &gy, None, &dev);
        assert_eq!(
            bits(&dw.to_vec::<f32>()),
            bits(&host_accumulation(&gy, &idx, 9, 5, None)),
            "{}: all indices equal",
            dev_name(&dev)
        );
    }
}

/// Values whose f32 sum depends on the order of the additions, so that an order other
/// than increasing position shows: a large value first, small ones that are lost when
/// added to it, its negation halfway, then small ones that count.
fn order_sensitive(n: usize, dim: usize) -> Vec<f32> {
    let small = common::uniform_values(n * dim, 0.5, 1.0, 99);
    (0..n * dim)
        .map(|i| match i / dim {
            0 => 3.0e7,
            p if p == n / 2 => -3.0e7,
            _ => small[i],
        })
        .collect()
}

#[test]
fn gradient_is_the_same_bits_run_after_run_and_on_both_devices() {
    let (n, rows, dim) = (1100, 3, 3);
    // All positions on one row, so the sum runs over every gradient row.
    let idx = vec![1i32; n];
    let gy = order_sensitive(n, dim);
    let weight = vec![0.0f32; rows * dim];
    let expected = host_accumulation(&gy, &idx, rows, dim, None);
    // The test can fail: summed in reverse order the same values give other bits.
    let reversed: f32 = (0..n).rev().fold(0.0, |acc, p| acc + gy[p * dim]);
    assert_ne!(reversed.to_bits(), expected[dim].to_bits(), "the data does not detect a changed order");

    let cpu = weight_grad(&weight, dim, &idx, &[n], &gy, None, &Device::cpu()).to_vec::<f32>();
    assert_eq!(bits(&cpu), bits(&expected), "cpu");
    let Some(gpu) = gpu("gradient_is_the_same_bits_run_after_run_and_on_both_devices") else { return };
    // Skewed indices over several rows as well, where the sort really reorders positions.
    let mixed = skewed_indices(n, 7, 5);
    let mixed_expected = host_accumulation(&gy, &mixed, 7, dim, None);
    for run in 0..3 {
        let dw = weight_grad(&weight, dim, &idx, &[n], &gy, None, &gpu).to_vec::<f32>();
        assert_eq!(bits(&dw), bits(&expected), "gpu run {run}: one row");
        let dw = weight_grad(&vec![0.0; 7 * dim], dim, &mixed, &[n], &gy, None, &gpu).to_vec::<f32>();
        assert_eq!(bits(&dw), bits(&mixed_expected), "gpu run {run}: skewed rows");
    }
}

#[test]
fn gradients_pass_finite_difference_checks() {
    // The same tolerances as the autograd suite; the rule is linear, so the only error is
    // the rounding of the f32 evaluations.
    let tol = GradTolerance { eps: 1e-3, atol: 5e-4, rtol: 5e-3 };
    let weight = common::uniform_values(5 * 3, -1.0, 1.0, 8);
    let idx = [1i32, 4, 1, 0, 1, 4];
    for dev in devices("gradients_pass_finite_difference_checks") {
        let result = gradcheck("embedding", &dev, &[(weight.clone(), vec![5, 3])], tol, |x| {
            x[0].embedding(&Tensor::from_slice(&idx, &[2, 3], x[0].device()), None)
        });
        result.unwrap_or_else(|e| panic!("{e}"));
        // padding_idx withholds a true derivative, so the padding row (row 1, which most
        // positions name) is a constant here and only the other rows are inputs: their
        // gradients must still be exact.
        let others = weight[..12].to_vec();
        let result = gradcheck("embedding with padding_idx", &dev, &[(others, vec![4, 3])], tol, |x| {
            let d = x[0].device();
            let table = Tensor::cat(&[x[0].narrow(0, 0, 1), Tensor::full(&[1, 3], 0.5, d), x[0].narrow(0, 1, 3)], 0);
            table.embedding(&Tensor::from_slice(&idx, &[2, 3], d), Some(1))
        });
        result.unwrap_or_else(|e| panic!("{e}"));
        // Through a view of the table: the gradient flows back through the transpose.
        let result = gradcheck("embedding of a transposed table", &dev, &[(weight.clone(), vec![3, 5])], tol, |x| {
            x[0].t().embedding(&Tensor::from_slice(&idx, &[6], x[0].device()), None).tanh()
        });
        result.unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn the_padding_row_gets_no_gradient_but_is_looked_up_as_stored() {
    for dev in devices("the_padding_row_gets_no_gradient_but_is_looked_up_as_stored") {
        let (n, rows, dim) = (300, 6, 5);
        let idx = skewed_indices(n, rows, 12);
        let weight = common::uniform_values(rows * dim, 1.0, 2.0, 13);
        let gy = common::uniform_values(n * dim, -1.0, 1.0, 14);
        let dw = weight_grad(&weight, dim, &idx, &[n], &gy, Some(2), &dev).to_vec::<f32>();
        assert!(dw[2 * dim..3 * dim].iter().all(|&v| v == 0.0), "{}: padding row {:?}", dev_name(&dev), dw);
        assert_eq!(bits(&dw), bits(&host_accumulation(&gy, &idx, rows, dim, Some(2))), "{}", dev_name(&dev));
        // The forward pass reads the padding row like any other.
        let w = Tensor::from_slice(&weight, &[rows, dim], &dev);
        let y = w.embedding(&Tensor::from_slice(&[2i32], &[1], &dev), Some(2));
        assert_eq!(y.to_vec::<f32>(), weight[2 * dim..3 * dim]);
    }
}

// ---- grouping positions by index ----

/// The grouping by a stable sort on the host: in-range values by value, the rest last.
fn host_groups(values: &[i32], groups: usize) -> (Vec<i32>, Vec<i32>) {
    let key = |v: i32| if v >= 0 && (v as usize) < groups { v as i64 } else { i64::MAX };
    let mut order: Vec<i32> = (0..values.len() as i32).collect();
    order.sort_by_key(|&p| key(values[p as usize]));
    let offsets = (0..=groups as i64).map(|g| values.iter().filter(|&&v| key(v) < g).count() as i32).collect();
    (order, offsets)
}

#[test]
fn group_by_index_matches_a_stable_sort() {
    for dev in devices("group_by_index_matches_a_stable_sort") {
        for (groups, n) in
            [(37, 0), (37, 1), (37, 2), (37, 255), (37, 511), (37, 512), (37, 513), (300, 1100), (5, 2049)]
        {
            // Values from -3 to groups + 2: some out of range on both sides.
            let values: Vec<i32> = common::uniform_values(n, -3.0, groups as f32 + 3.0, n as u64)
                .iter()
                .map(|v| v.floor() as i32)
                .collect();
            let t = Tensor::from_slice(&values, &[n], &dev);
            let (order, offsets) = t.group_by_index(groups);
            assert_eq!((order.shape(), offsets.shape()), (&[n][..], &[groups + 1][..]));
            let (expected_order, expected_offsets) = host_groups(&values, groups);
            let what = format!("{}: {n} values in {groups} groups", dev_name(&dev));
            assert_eq!(order.to_vec::<i32>(), expected_order, "{what}: order");
            assert_eq!(offsets.to_vec::<i32>(), expected_offsets, "{what}: offsets");
        }
    }
}

// ---- frozen and pretrained tables ----

#[test]
fn a_frozen_pretrained_table_gets_no_gradient() {
    for dev in devices("a_frozen_pretrained_table_gets_no_gradient") {
        let table = randn(&[6, 4], 20, &dev);
        let emb = Embedding::from_pretrained(table.clone(), true);
        assert_eq!(emb.weight.to_vec::<f32>(), table.to_vec::<f32>());
        assert!(emb.named_parameters().is_empty(), "a frozen table is no parameter");
        let buffers: Vec<String> = emb.named_buffers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(buffers, ["weight"]);
        let idx = Tensor::from_slice(&[5i32, 0, 5], &[3], &dev);
        // Downstream parameters still train; the table is not part of the graph.
        let scale = Tensor::ones(&[4], &dev).requires_grad();
        let y = emb.forward(&idx);
        assert!(!y.is_tracked(), "{}: output of a frozen table is tracked", dev_name(&dev));
        let grads = y.mul(&scale).sum_all().backward();
        assert!(grads.get(&emb.weight).is_none());
        assert!(grads.get(&scale).is_some());

        // Not frozen: a parameter with the table's values and a gradient.
        let emb = Embedding::from_pretrained(table.clone(), false);
        assert_eq!(emb.parameters().len(), 1);
        let grads = emb.forward(&idx).sum_all().backward();
        let dw = grads.wrt(&emb.weight).to_vec::<f32>();
        let mut expected = vec![0.0f32; 24];
        expected[..4].fill(1.0);
        expected[20..].fill(2.0);
        assert_eq!(dw, expected, "{}", dev_name(&dev));

        // A pretrained padding row keeps its values (as PyTorch's from_pretrained).
        let emb = Embedding::from_pretrained(table.clone(), false).padding_idx(Some(-1));
        assert_eq!(emb.padding_idx, Some(5));
        assert_eq!(emb.weight.to_vec::<f32>(), table.to_vec::<f32>());
    }
}

#[test]
fn a_pretrained_view_is_copied_into_a_trainable_table() {
    for dev in devices("a_pretrained_view_is_copied_into_a_trainable_table") {
        let big = randn(&[9, 4], 21, &dev);
        let view = big.narrow(0, 2, 5);
        let emb = Embedding::from_pretrained(view.clone(), false);
        assert_eq!(emb.weight.to_vec::<f32>(), view.to_vec::<f32>());
        // An optimizer accepts it (parameters must own their storage) and updates only it.
        let mut opt = Sgd::new(emb.parameters(), 0.5);
        let grads = emb.forward(&Tensor::from_slice(&[1i32], &[1], &dev)).sum_all().backward();
        opt.step(&grads);
        let after = emb.weight.to_vec::<f32>();
        let before = view.to_vec::<f32>();
        for (i, (&a, &b)) in after.iter().zip(&before).enumerate() {
            let expected = if i / 4 == 1 { b - 0.5 } else { b };
            assert_eq!(a, expected, "{}: element {i}", dev_name(&dev));
        }
        assert_eq!(big.narrow(0, 2, 5).to_vec::<f32>(), before, "the source table changed");
    }
}

// ---- the layer ----

#[test]
fn the_layer_draws_a_standard_normal_table_and_zeroes_the_padding_row() {
    let dev = Device::cpu();
    let emb = Embedding::with_seed(1000, 64, 3, &dev);
    assert_eq!(emb.weight.shape(), &[1000, 64]);
    assert_eq!((emb.num_embeddings(), emb.embedding_dim()), (1000, 64));
    let v = emb.weight.to_vec::<f32>();
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
    // 64,000 samples: the mean's standard error is 0.004, the variance's 0.0056.
    assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "mean {mean}, variance {var}");
    assert_eq!(emb.describe(), "Embedding(1000, 64)");
    let names: Vec<String> = emb.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight"]);

    for dev in devices("the_layer_draws_a_standard_normal_table_and_zeroes_the_padding_row") {
        let emb = Embedding::with_seed(10, 3, 4, &dev).padding_idx(Some(-3));
        assert_eq!(emb.padding_idx, Some(7));
        assert_eq!(emb.describe(), "Embedding(10, 3, padding_idx=7)");
        let w = emb.weight.to_vec::<f32>();
        assert!(w[21..24].iter().all(|&x| x == 0.0), "{}: padding row {:?}", dev_name(&dev), &w[21..24]);
        assert!(w[..21].iter().chain(&w[24..]).all(|&x| x != 0.0));
        // A training step moves the rows looked up, except the padding row.
        let mut opt = Sgd::new(emb.parameters(), 0.1);
        let idx = Tensor::from_slice(&[[1i32, 7, 1], [9, 7, 0]].concat(), &[2, 3], &dev);
        let y = emb.forward(&idx);
        assert_eq!(y.shape(), &[2, 3, 3]);
        opt.step(&y.square().sum_all().backward());
        let after = emb.weight.to_vec::<f32>();
        for row in 0..10 {
            let moved = (0..3).any(|c| after[row * 3 + c] != w[row * 3 + c]);
            assert_eq!(moved, [0, 1, 9].contains(&row), "{}: row {row}", dev_name(&dev));
        }
    }
}

#[test]
fn a_frozen_table_round_trips_through_a_checkpoint_as_weight() {
    let dev = Device::cpu();
    let path = std::env::temp_dir().join(format!("wgrad-embedding-{}.safetensors", std::process::id()));
    let saved = Embedding::from_pretrained(randn(&[4, 3], 30, &dev), true);
    checkpoint::save(&saved, &path).unwrap();
    let state = checkpoint::load_state(&path).unwrap();
    assert_eq!(state.len(), 1);
    assert_eq!((state[0].0.as_str(), &state[0].1), ("weight", &vec![4, 3]));
    // It loads into a trainable layer of the same shape, and back.
    let trainable = Embedding::with_seed(4, 3, 1, &dev);
    checkpoint::load(&trainable, &path).unwrap();
    assert_eq!(trainable.weight.to_vec::<f32>(), saved.weight.to_vec::<f32>());
    std::fs::remove_file(&path).unwrap();
}

// ---- errors ----

#[test]
fn an_index_outside_the_table_panics_on_the_cpu_naming_index_and_size() {
    let dev = Device::cpu();
    let w = Tensor::zeros(&[11, 2], &dev);
    for bad in [11, -1, 1000] {
        let msg = panic_message(|| {
            w.embedding(&Tensor::from_slice(&[0i32, bad, 3], &[3], &dev), None);
        });
        assert!(
            msg.contains("embedding") && msg.contains(&format!("index {bad} ")) && msg.contains("11 rows"),
            "unhelpful message: {msg}"
        );
    }
}

#[test]
fn gpu_indices_outside_the_table_read_zeros_unless_checks_are_on() {
    let Some(gpu) = gpu("gpu_indices_outside_the_table_read_zeros_unless_checks_are_on") else { return };
    // The only test of this binary that depends on the process-wide switch.
    set_embedding_index_checks(false);
    let weight = common::uniform_values(11 * 3, 1.0, 2.0, 40);
    let idx = [3i32, -1, 11, 0, i32::MIN, i32::MAX, 3];
    let w = Tensor::from_slice(&weight, &[11, 3], &gpu);
    let y = w.embedding(&Tensor::from_slice(&idx, &[7], &gpu), None).to_vec::<f32>();
    for (p, &i) in idx.iter().enumerate() {
        let expected: Vec<f32> =
            if (0..11).contains(&i) { weight[i as usize * 3..i as usize * 3 + 3].to_vec() } else { vec![0.0; 3] };
        assert_eq!(y[p * 3..p * 3 + 3], expected, "position {p} (index {i})");
    }
    // They contribute to no row of the gradient.
    let gy = common::uniform_values(7 * 3, -1.0, 1.0, 41);
    let dw = weight_grad(&weight, 3, &idx, &[7], &gy, None, &gpu).to_vec::<f32>();
    assert_eq!(bits(&dw), bits(&host_accumulation(&gy, &idx, 11, 3, None)));

    set_embedding_index_checks(true);
    let msg = panic_message(|| {
        w.embedding(&Tensor::from_slice(&idx, &[7], &gpu), None);
    });
    set_embedding_index_checks(false);
    assert!(msg.contains("index -1 ") && msg.contains("11 rows"), "unhelpful message: {msg}");
}

#[test]
fn bad_arguments_panic_with_the_op_and_the_shapes() {
    let dev = Device::cpu();
    let w = Tensor::zeros(&[10, 4], &dev);
    let idx = Tensor::from_slice(&[1i32, 2], &[2], &dev);
    let cases: Vec<(String, Box<dyn FnOnce() + '_>)> = vec![
        ("[2, 5, 4]".into(), Box::new(|| drop(Tensor::zeros(&[2, 5, 4], &dev).embedding(&idx, None)))),
        ("indices must be an i32 tensor".into(), Box::new(|| drop(w.embedding(&Tensor::zeros(&[2], &dev), None)))),
        (
            "padding_idx 10 is out of range for a weight of 10 rows".into(),
            Box::new(|| drop(w.embedding(&idx, Some(10)))),
        ),
        (
            "padding_idx 10 must be within num_embeddings (10)".into(),
            Box::new(|| drop(Embedding::new(10, 4, &dev).padding_idx(Some(10)))),
        ),
        (
            "padding_idx -11 must be within num_embeddings (10)".into(),
            Box::new(|| drop(Embedding::new(10, 4, &dev).padding_idx(Some(-11)))),
        ),
        (
            "embeddings must be [num_embeddings, embedding_dim], got shape [4]".into(),
            Box::new(|| drop(Embedding::from_pretrained(Tensor::zeros(&[4], &dev), true))),
        ),
        ("group_by_index: needs an i32 tensor".into(), Box::new(|| drop(Tensor::zeros(&[3], &dev).group_by_index(2)))),
    ];
    for (expected, f) in cases {
        let msg = panic_message(f);
        assert!(msg.contains(&expected), "expected a message containing {expected:?}, got {msg:?}");
    }
}
