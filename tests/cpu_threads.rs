//! The multi-threaded CPU backend: every parallelised kernel (convolutions and the LSTM's
//! whole-sequence pass included), on shapes large enough to be split across threads (and
//! cut mid-row where the split is by elements), gives the same bits on 1, 2, 3 and 7 threads and on two runs in a row, and the same values as the
//! computation done in pieces small enough to stay on one thread. The recurrent cells are
//! also cross-checked against the GPU at a parallel size.

mod common;

use rayon::ThreadPoolBuilder;
use wgrad::testing::{compare, Tolerance};
use wgrad::{ConvOptions, Device, MaxPool2dOptions, RnnMode, RnnWeights, Tensor};

use common::{gpu, randn, uniform};

fn cpu() -> Device {
    Device::cpu()
}

/// The f32 bits of a tensor, so comparisons catch any change of rounding (and -0 vs 0).
fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec::<f32>().into_iter().map(f32::to_bits).collect()
}

/// `f`'s outputs on pools of 1, 2, 3 and 7 threads and twice on the global pool, checked
/// bit for bit against the single-thread run. A pool of one thread runs every kernel on the
/// calling thread, the path small inputs take. Returns the single-thread outputs.
fn same_bits_on_every_thread_count(name: &str, f: impl Fn() -> Vec<Vec<u32>> + Sync) -> Vec<Vec<u32>> {
    let in_pool = |threads: usize| {
        let pool = ThreadPoolBuilder::new().num_threads(threads).build().expect("a rayon pool");
        pool.install(&f)
    };
    let reference = in_pool(1);
    assert!(reference.iter().any(|out| !out.is_empty()), "{name}: the test computed nothing");
    for threads in [2, 3, 7] {
        let out = in_pool(threads);
        for (k, (a, b)) in out.iter().zip(&reference).enumerate() {
            assert!(a == b, "{name}: output {k} on {threads} threads differs from one thread");
        }
    }
    for run in 0..2 {
        assert!(f() == reference, "{name}: run {run} on the global pool differs from one thread");
    }
    reference
}

/// `t` computed whole against `piece(i)` for `i` in `0..pieces`, concatenated: the pieces
/// are small enough to run on one thread, so this checks the split itself.
fn matches_pieces(name: &str, whole: &Tensor, pieces: usize, piece: impl Fn(usize) -> Tensor) {
    let joined: Vec<f32> = (0..pieces).flat_map(|i| piece(i).to_vec::<f32>()).collect();
    compare(&whole.to_vec::<f32>(), &joined, Tolerance::Exact).unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn elementwise_ops_and_copies_split_by_elements() {
    // 37 * 61 * 29 = 65453 elements; rows of 29 do not divide the runs, so runs start
    // inside rows; the permuted view makes every row strided.
    let x = randn(&[37, 61, 29], 1, &cpu());
    let xt = x.permute(&[0, 2, 1]);
    let b = randn(&[29, 1], 2, &cpu());
    let outputs = || {
        let y = randn(&[37, 61, 29], 1, &cpu()).permute(&[0, 2, 1]);
        let bias = randn(&[29, 1], 2, &cpu());
        vec![
            bits(&y.exp()),
            bits(&y.sigmoid()),
            bits(&y.gelu()),
            bits(&y.relu()),
            bits(&y.add(&bias)),
            bits(&y.mul(&y.tanh())),
            bits(&y.gt(&bias).where_cond(&y, &bias.add_scalar(1.0))),
            bits(&y.contiguous()),
            bits(&Tensor::rand_uniform(&[70_001], -1.0, 1.0, 9, &cpu())),
            bits(&Tensor::randn(&[70_001], 9, &cpu())),
        ]
    };
    same_bits_on_every_thread_count("elementwise", outputs);
    // Each of the 37 slices (1769 elements) stays on one thread.
    matches_pieces("exp", &xt.exp(), 37, |i| xt.narrow(0, i, 1).exp());
    matches_pieces("add", &xt.add(&b), 37, |i| xt.narrow(0, i, 1).add(&b));
    matches_pieces("contiguous", &xt.contiguous(), 37, |i| xt.narrow(0, i, 1).contiguous());
    let cond = xt.gt(&b);
    matches_pieces("where", &cond.where_cond(&xt, &b), 37, |i| {
        cond.narrow(0, i, 1).where_cond(&xt.narrow(0, i, 1), &b)
    });
}

#[test]
fn reductions_and_softmax_split_by_rows() {
    let x = randn(&[1500, 47], 3, &cpu());
    let outputs = || {
        let x = randn(&[1500, 47], 3, &cpu());
        let argmax: Vec<u32> = x.argmax(1, false).to_vec::<i32>().into_iter().map(|v| v as u32).collect();
        vec![
            bits(&x.sum(&[1], false)),
            bits(&x.var(&[1], 1.0, false)),
            bits(&x.max(&[1], false)),
            argmax,
            bits(&x.softmax(1)),
            bits(&x.log_softmax(1)),
            // Reducing the leading axis: 47 rows of 1500 after the permute.
            bits(&x.sum(&[0], false)),
        ]
    };
    same_bits_on_every_thread_count("reduce and softmax", outputs);
    // 15 pieces of 100 rows (4700 elements) stay on one thread.
    let rows = |t: &Tensor, i: usize| t.narrow(0, 100 * i, 100);
    matches_pieces("sum", &x.sum(&[1], false), 15, |i| rows(&x, i).sum(&[1], false));
    matches_pieces("mean", &x.mean(&[1], false), 15, |i| rows(&x, i).mean(&[1], false));
    matches_pieces("softmax", &x.softmax(1), 15, |i| rows(&x, i).softmax(1));
    matches_pieces("log_softmax", &x.log_softmax(1), 15, |i| rows(&x, i).log_softmax(1));
}

#[test]
fn pooling_splits_by_planes_forward_and_backward() {
    // 2 * 9 planes of 61 x 47; a window of 3 with stride 2 and padding 1 overlaps its
    // neighbours (the gather backward), a window of 2 does not (the scatter backward).
    let shape = [2, 9, 61, 47];
    let run = |options: &MaxPool2dOptions| {
        let x = randn(&shape, 4, &cpu()).requires_grad();
        let (y, idx) = x.max_pool2d_with_indices(options);
        let c = randn(y.shape(), 5, &cpu());
        let g = y.mul(&c).sum_all().backward();
        let idx: Vec<u32> = idx.to_vec::<i32>().into_iter().map(|v| v as u32).collect();
        vec![bits(&y), idx, bits(g.wrt(&x))]
    };
    same_bits_on_every_thread_count("max_pool2d k3 s2 p1", || run(&MaxPool2dOptions::new(3).stride(2).padding(1)));
    same_bits_on_every_thread_count("max_pool2d k2", || run(&MaxPool2dOptions::new(2)));
    same_bits_on_every_thread_count("avg and adaptive pooling", || {
        let x = randn(&shape, 6, &cpu()).requires_grad();
        let y = x.avg_pool2d(&wgrad::AvgPool2dOptions::new(3).stride(2).padding(1).count_include_pad(false));
        let z = x.adaptive_avg_pool2d((5, 7));
        let loss = y.mul(&randn(y.shape(), 7, &cpu())).sum_all().add(&z.mul(&randn(z.shape(), 8, &cpu())).sum_all());
        let g = loss.backward();
        vec![bits(&y), bits(&z), bits(g.wrt(&x))]
    });
    let x = randn(&shape, 4, &cpu());
    let options = MaxPool2dOptions::new(3).stride(2).padding(1);
    matches_pieces("max_pool2d", &x.max_pool2d(&options), 2, |i| x.narrow(0, i, 1).max_pool2d(&options));
}

#[test]
fn batch_norm_and_layer_norm_split_by_channels_and_rows() {
    same_bits_on_every_thread_count("batch_norm", || {
        let x = randn(&[8, 13, 19, 23], 9, &cpu()).requires_grad();
        let w = uniform(&[13], 0.5, 1.5, 10, &cpu()).requires_grad();
        let b = randn(&[13], 11, &cpu()).requires_grad();
        let (mean, var) = (Tensor::zeros(&[13], &cpu()), Tensor::ones(&[13], &cpu()));
        let y = x.batch_norm(Some(&mean), Some(&var), Some(&w), Some(&b), true, 0.1, 1e-5);
        let g = y.mul(&randn(y.shape(), 12, &cpu())).sum_all().backward();
        vec![bits(&y), bits(&mean), bits(&var), bits(g.wrt(&x)), bits(g.wrt(&w)), bits(g.wrt(&b))]
    });
    same_bits_on_every_thread_count("layer_norm", || {
        let x = randn(&[301, 129], 13, &cpu()).requires_grad();
        let w = uniform(&[129], 0.5, 1.5, 14, &cpu()).requires_grad();
        let b = randn(&[129], 15, &cpu()).requires_grad();
        let y = x.layer_norm(&[129], Some(&w), Some(&b), 1e-5);
        let g = y.mul(&randn(y.shape(), 16, &cpu())).sum_all().backward();
        vec![bits(&y), bits(g.wrt(&x)), bits(g.wrt(&w)), bits(g.wrt(&b))]
    });
    let x = randn(&[301, 129], 13, &cpu());
    let y = x.layer_norm(&[129], None, None, 1e-5);
    // 7 pieces of 43 rows (5547 elements) stay on one thread.
    matches_pieces("layer_norm", &y, 7, |i| x.narrow(0, 43 * i, 43).layer_norm(&[129], None, None, 1e-5));
}

#[test]
fn embedding_and_crop_flip_split_by_rows_and_images() {
    // 3000 lookups of 41 values into a table of 257 rows, most rows named many times, in
    // an order that interleaves them: the backward's per-row sums depend on order.
    let indices: Vec<i32> = (0..3000).map(|i| (i * 7919) % 257).collect();
    let outputs = || {
        let table = randn(&[257, 41], 17, &cpu()).requires_grad();
        let idx = Tensor::from_slice(&indices, &[3000], &cpu());
        let y = table.embedding(&idx, Some(3));
        let g = y.mul(&randn(y.shape(), 18, &cpu())).sum_all().backward();
        let images = randn(&[64, 3, 20, 20], 19, &cpu());
        let windows: Vec<i32> = (0..64).flat_map(|n| [n % 5 - 2, 3 - n % 7, n % 2]).collect();
        let crops = images.crop_flip(&Tensor::from_slice(&windows, &[64, 3], &cpu()), (18, 18));
        vec![bits(&y), bits(g.wrt(&table)), bits(&crops)]
    };
    let out = same_bits_on_every_thread_count("embedding and crop_flip", outputs);
    // The padding row gets no gradient; a row that is named gets the sum of its rows.
    assert!(out[1][3 * 41..4 * 41].iter().all(|&b| b == 0));
    let table = randn(&[257, 41], 17, &cpu());
    let idx = Tensor::from_slice(&indices, &[3000], &cpu());
    matches_pieces("embedding", &table.embedding(&idx, None), 10, |i| {
        table.embedding(&idx.narrow(0, 300 * i, 300), None)
    });
}

/// One layer of `mode` over `[T, B, I]` with biases and padded lengths, forward and
/// backward; the outputs and every gradient.
fn rnn_outputs(mode: RnnMode, steps: usize, batch: usize, input: usize, hidden: usize, dev: &Device) -> Vec<Tensor> {
    let g = mode.gates() * hidden;
    let x = randn(&[steps, batch, input], 20, dev).requires_grad();
    let w_ih = randn(&[g, input], 21, dev).mul_scalar(0.3).detach().requires_grad();
    let w_hh = randn(&[g, hidden], 22, dev).mul_scalar(0.3).detach().requires_grad();
    let b_ih = randn(&[g], 23, dev).requires_grad();
    let b_hh = randn(&[g], 24, dev).requires_grad();
    let h0 = randn(&[batch, hidden], 25, dev).requires_grad();
    let weights = RnnWeights { weight_ih: &w_ih, weight_hh: &w_hh, bias_ih: Some(&b_ih), bias_hh: Some(&b_hh) };
    // Every third sequence is shorter, so padded rows sit between active ones.
    let lengths: Vec<usize> = (0..batch).map(|b| if b % 3 == 1 { steps - 2 } else { steps }).collect();
    let out = x.rnn_layer(mode, &weights, Some(&h0), None, false, Some(&lengths));
    let mut loss = out.output.mul(&randn(out.output.shape(), 26, dev)).sum_all();
    loss = loss.add(&out.h_n.mul(&randn(&[batch, hidden], 27, dev)).sum_all());
    if let Some(c_n) = &out.c_n {
        loss = loss.add(&c_n.mul(&randn(&[batch, hidden], 28, dev)).sum_all());
    }
    let grads = loss.backward();
    let mut all = vec![out.output.clone(), out.h_n.clone()];
    all.extend(out.c_n.clone());
    all.extend([&x, &w_ih, &w_hh, &b_ih, &b_hh, &h0].map(|t| grads.wrt(t).clone()));
    all
}

#[test]
fn recurrent_cells_split_by_batch_rows() {
    // 64 rows of 37 units: every cell, forward and backward, has enough work per step to
    // be split.
    for mode in [RnnMode::Lstm, RnnMode::Gru, RnnMode::RnnTanh, RnnMode::RnnRelu] {
        same_bits_on_every_thread_count(&format!("{mode:?}"), || {
            rnn_outputs(mode, 6, 64, 5, 37, &cpu()).iter().map(bits).collect()
        });
    }
}

#[test]
fn lstm_layers_give_the_same_bits_at_every_batch_size() {
    // Batches of 1, 2, 3 and 5 rows: fewer rows than threads, one row per thread, and
    // runs of unequal length. The whole-sequence forward pass takes the same path on every
    // thread count, so these too are the same bits everywhere.
    for batch in [1, 2, 3, 5] {
        same_bits_on_every_thread_count(&format!("LSTM batch {batch}"), || {
            rnn_outputs(RnnMode::Lstm, 5, batch, 4, 70, &cpu()).iter().map(bits).collect()
        });
    }
}

#[test]
fn lstm_inference_gives_the_bits_of_the_recorded_forward_pass() {
    // Without a graph the CPU's whole-sequence pass keeps no workspace (it skips the gate
    // stores); its outputs are the same bits as those of the pass that keeps one, on every
    // thread count, with padded sequences and a partial panel of hidden units.
    let (steps, batch, input, hidden) = (6, 64, 5, 37);
    let dev = cpu();
    let x = randn(&[steps, batch, input], 40, &dev).requires_grad();
    let w_ih = randn(&[4 * hidden, input], 41, &dev).mul_scalar(0.3).detach().requires_grad();
    let w_hh = randn(&[4 * hidden, hidden], 42, &dev).mul_scalar(0.3).detach().requires_grad();
    let (b_ih, b_hh) = (randn(&[4 * hidden], 43, &dev), randn(&[4 * hidden], 44, &dev));
    let weights = RnnWeights { weight_ih: &w_ih, weight_hh: &w_hh, bias_ih: Some(&b_ih), bias_hh: Some(&b_hh) };
    let lengths: Vec<usize> = (0..batch).map(|b| if b % 5 == 2 { steps - 3 } else { steps }).collect();
    let forward = || {
        let out = x.rnn_layer(RnnMode::Lstm, &weights, None, None, false, Some(&lengths));
        vec![bits(&out.output), bits(&out.h_n), bits(out.c_n.as_ref().expect("the LSTM has a cell state"))]
    };
    let recorded = same_bits_on_every_thread_count("LSTM forward with a graph", forward);
    let inference = same_bits_on_every_thread_count("LSTM forward without a graph", || wgrad::no_grad(forward));
    assert!(recorded == inference, "the LSTM forward without a graph differs from the recorded one");
}

#[test]
fn convolutions_split_by_images_forward_and_backward() {
    // The forward forms of cpu::conv: stride 1 (a wide product, more column rows than
    // output channels, and an unfolded one, fewer), stride 2, padding, groups and a
    // permuted input view; with the input and weight gradients.
    let cases: [([usize; 4], usize, ConvOptions, bool); 5] = [
        ([9, 1, 28, 28], 32, ConvOptions::new(), false),
        ([9, 32, 13, 13], 64, ConvOptions::new(), false),
        ([7, 6, 15, 12], 8, ConvOptions::new().stride(2).padding(1), false),
        ([7, 8, 11, 11], 6, ConvOptions::new().padding((2, 1)).groups(2), true),
        ([5, 3, 17, 9], 70, ConvOptions::new().dilation(2), true),
    ];
    for (shape, out_ch, options, permuted) in cases {
        let name = format!("conv {shape:?} -> {out_ch}");
        same_bits_on_every_thread_count(&name, || {
            let x = if permuted {
                let [n, c, h, w] = shape;
                randn(&[n, c, w, h], 30, &cpu()).permute(&[0, 1, 3, 2])
            } else {
                randn(&shape, 30, &cpu())
            }
            .requires_grad();
            let w = randn(&[out_ch, shape[1] / options.groups, 3, 3], 31, &cpu()).requires_grad();
            let b = randn(&[out_ch], 32, &cpu()).requires_grad();
            let y = x.conv2d(&w, Some(&b), &options);
            let grads = y.backward_with(&randn(y.shape(), 33, &cpu()));
            vec![bits(&y), bits(grads.wrt(&x)), bits(grads.wrt(&w)), bits(grads.wrt(&b))]
        });
    }
}

#[test]
fn recurrent_cells_at_a_parallel_size_match_the_gpu() {
    let Some(gpu) = gpu("recurrent_cells_at_a_parallel_size_match_the_gpu") else { return };
    for mode in [RnnMode::Lstm, RnnMode::Gru, RnnMode::RnnTanh] {
        let cpu_out = rnn_outputs(mode, 4, 64, 5, 37, &cpu());
        let gpu_out = rnn_outputs(mode, 4, 64, 5, 37, &gpu);
        for (k, (c, g)) in cpu_out.iter().zip(&gpu_out).enumerate() {
            // Matmuls and WGSL's exp/tanh against the CPU's: as in tests/rnn.rs.
            compare(&g.to_vec::<f32>(), &c.to_vec::<f32>(), Tolerance::Normalized { tol: 2e-5 })
                .unwrap_or_else(|e| panic!("{mode:?} output {k}: {e}"));
        }
    }
}

/// The branch-free `exp` of the CPU cells is within 1 ulp of the correctly rounded value
/// over the whole f32 range (denormal results included), equal to it for more than 9 in
/// 10 arguments (37086 of these 400008 are 1 ulp off), saturates
/// like `expf`, and passes NaN.
#[test]
fn cell_exp_is_within_an_ulp_of_f64() {
    let ulps = |a: f32, b: f64| (a.to_bits() as i64 - (b as f32).to_bits() as i64).abs();
    let mut off = 0;
    let points = (0..400_001).map(|i| -103.0 + i as f32 * (191.7 / 400_000.0));
    for x in points.chain([0.0, -0.0, 1e-30, -1e-30, 88.72, -87.3, -103.9]) {
        let e = wgrad::cpu::rnn::exp(x);
        let d = ulps(e, (x as f64).exp());
        assert!(d <= 1, "exp({x}) = {e}, {d} ulp from {}", (x as f64).exp());
        off += (d > 0) as usize;
    }
    assert!(off < 40_000, "{off} of 400008 values are not correctly rounded (fewer than 1 in 10 expected)");
    assert_eq!(wgrad::cpu::rnn::exp(f32::INFINITY), f32::INFINITY);
    assert_eq!(wgrad::cpu::rnn::exp(89.0), f32::INFINITY);
    assert_eq!(wgrad::cpu::rnn::exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(wgrad::cpu::rnn::exp(-200.0), 0.0);
    assert!(wgrad::cpu::rnn::exp(f32::NAN).is_nan());
}
