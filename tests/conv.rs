//! Convolution: every algorithm (im2col + GEMM, the direct loops and the direct GPU
//! kernel) against a direct reference written here, GPU against CPU on shapes that break
//! kernels, gradients against finite differences, chunking of large batches, the layers,
//! and the errors.

mod common;

use common::{dev_name, devices, randn, uniform_values};
use wgrad::nn::{Conv1d, Conv2d, Forward, Module};
use wgrad::testing::{compare, cross_check, gradcheck, GradTolerance, Tolerance};
use wgrad::{with_conv_algorithm, Conv1dOptions, ConvAlgorithm, ConvOptions, Device, Tensor};

/// Every way a convolution can run; `Auto` picks one of the others per shape and device.
const ALGORITHMS: [ConvAlgorithm; 3] = [ConvAlgorithm::Auto, ConvAlgorithm::Im2col, ConvAlgorithm::Direct];

/// One convolution to try: input `[n, c, h, w]`, `o` output channels, a `kh x kw` kernel.
#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    opts: ConvOptions,
}

fn case(n: usize, c: usize, hw: (usize, usize), o: usize, k: (usize, usize), opts: ConvOptions) -> Case {
    Case { n, c, h: hw.0, w: hw.1, o, kh: k.0, kw: k.1, opts }
}

/// Shapes chosen to break the index arithmetic of im2col and col2im.
fn breaking_cases() -> Vec<Case> {
    let o = ConvOptions::new;
    vec![
        // Batch 1, one channel, the MNIST first layer's geometry.
        case(1, 1, (28, 28), 4, (3, 3), o()),
        // Odd sizes; stride, padding and dilation that differ per axis and do not divide.
        case(2, 3, (7, 9), 5, (3, 2), o().stride((2, 3)).padding((1, 2)).dilation((1, 2))),
        // A kernel as large as the input: one output position.
        case(3, 6, (5, 5), 4, (5, 5), o().groups(2)),
        // A kernel larger than the input, reaching into the padding on both sides.
        case(2, 2, (3, 3), 3, (5, 5), o().padding(1)),
        // 1x1 with unit stride: the column matrix is the input itself.
        case(3, 5, (4, 7), 3, (1, 1), o()),
        // 1x1 with stride 2: a real unfolding.
        case(2, 5, (5, 6), 3, (1, 1), o().stride(2)),
        // Depthwise, channels not a multiple of 4.
        case(2, 3, (6, 5), 6, (3, 3), o().groups(3).padding(1)),
        // More output positions than a workgroup, stride 2 with padding.
        case(2, 3, (33, 31), 7, (3, 3), o().stride(2).padding(1)),
    ]
}

fn out_size(len: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
    (len + 2 * p - d * (k - 1) - 1) / s + 1
}

/// The convolution by its definition, in f64, without im2col.
fn direct_conv(x: &[f32], w: &[f32], bias: Option<&[f32]>, t: &Case) -> Vec<f32> {
    let ConvOptions { stride, padding, dilation, groups } = t.opts;
    let oh = out_size(t.h, t.kh, stride[0], padding[0], dilation[0]);
    let ow = out_size(t.w, t.kw, stride[1], padding[1], dilation[1]);
    let (cg, og) = (t.c / groups, t.o / groups);
    let mut out = vec![0.0f32; t.n * t.o * oh * ow];
    for n in 0..t.n {
        for oc in 0..t.o {
            let g = oc / og;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |b| b[oc] as f64);
                    for ci in 0..cg {
                        let c = g * cg + ci;
                        for ki in 0..t.kh {
                            for kj in 0..t.kw {
                                let y = (oy * stride[0] + ki * dilation[0]) as isize - padding[0] as isize;
                                let xx = (ox * stride[1] + kj * dilation[1]) as isize - padding[1] as isize;
                                if y < 0 || xx < 0 || y >= t.h as isize || xx >= t.w as isize {
                                    continue;
                                }
                                let xv = x[((n * t.c + c) * t.h + y as usize) * t.w + xx as usize] as f64;
                                let wv = w[((oc * cg + ci) * t.kh + ki) * t.kw + kj] as f64;
                                acc += xv * wv;
                            }
                        }
                    }
                    out[((n * t.o + oc) * oh + oy) * ow + ox] = acc as f32;
                }
            }
        }
    }
    out
}

fn operands(t: &Case, seed: u64, dev: &Device) -> (Tensor, Tensor, Tensor) {
    let x = randn(&[t.n, t.c, t.h, t.w], seed, dev);
    let w = randn(&[t.o, t.c / t.opts.groups, t.kh, t.kw], seed + 1, dev);
    let b = randn(&[t.o], seed + 2, dev);
    (x, w, b)
}

/// im2col + matmul sums in a different order from the direct loops; f32 rounding of sums
/// of up to a few hundred products of unit normals.
const FORWARD_TOL: Tolerance = Tolerance::Elementwise { atol: 1e-4, rtol: 1e-4 };

#[test]
fn conv2d_matches_the_direct_definition_on_both_devices() {
    for dev in devices("conv2d_matches_the_direct_definition_on_both_devices") {
        for (i, t) in breaking_cases().into_iter().enumerate() {
            let (x, w, b) = operands(&t, 10 * i as u64, &dev);
            let expected = direct_conv(&x.to_vec(), &w.to_vec(), Some(&b.to_vec()), &t);
            let oh = out_size(t.h, t.kh, t.opts.stride[0], t.opts.padding[0], t.opts.dilation[0]);
            let ow = out_size(t.w, t.kw, t.opts.stride[1], t.opts.padding[1], t.opts.dilation[1]);
            for algorithm in ALGORITHMS {
                let y = with_conv_algorithm(algorithm, || x.conv2d(&w, Some(&b), &t.opts));
                assert_eq!(y.shape(), &[t.n, t.o, oh, ow], "{t:?}");
                if let Err(e) = compare(&y.to_vec(), &expected, FORWARD_TOL) {
                    panic!("conv2d ({algorithm:?}) on {} {t:?}: {e}", dev_name(&dev));
                }
            }
        }
    }
}

#[test]
fn conv2d_forward_and_backward_agree_between_gpu_and_cpu() {
    let Some(gpu) = common::gpu("conv2d_forward_and_backward_agree_between_gpu_and_cpu") else { return };
    for (i, t) in breaking_cases().into_iter().enumerate() {
        let inputs = move |d: &Device| {
            let (x, w, b) = operands(&t, 100 + 10 * i as u64, d);
            let oh = out_size(t.h, t.kh, t.opts.stride[0], t.opts.padding[0], t.opts.dilation[0]);
            let ow = out_size(t.w, t.kw, t.opts.stride[1], t.opts.padding[1], t.opts.dilation[1]);
            let dy = randn(&[t.n, t.o, oh, ow], 200 + i as u64, d);
            vec![x, w, b, dy]
        };
        for algorithm in ALGORITHMS {
            with_conv_algorithm(algorithm, || {
                let name = format!("conv2d ({algorithm:?}) {t:?}");
                let forward = |v: &[Tensor]| v[0].conv2d(&v[1], Some(&v[2]), &t.opts);
                cross_check(&name, &gpu, FORWARD_TOL, inputs, forward);
                // Each gradient through `sum(y * dy)`, so the incoming gradient is dy.
                for which in 0..3 {
                    let call = move |v: &[Tensor]| {
                        let params: Vec<Tensor> = v[..3].iter().map(|p| p.detach().requires_grad()).collect();
                        let y = params[0].conv2d(&params[1], Some(&params[2]), &t.opts);
                        let grads = y.mul(&v[3]).sum_all().backward();
                        grads.get(&params[which]).expect("a gradient for every operand").clone()
                    };
                    cross_check(&format!("{name} gradient {which}"), &gpu, FORWARD_TOL, inputs, call);
                }
            });
        }
    }
}

/// The direct GPU kernel computes blocks of 4 output channels by 4 output columns: groups
/// whose channel count is not a multiple of 4, rows shorter than or not a multiple of 4,
/// windows that overhang the padding on either side, inputs that are strided views, no
/// bias, and enough blocks for several workgroups with a partial last one.
#[test]
fn the_direct_kernel_handles_partial_blocks_and_strided_views() {
    let o = ConvOptions::new;
    let cases = [
        // 5 output channels per group, 3 output columns: one partial block each way.
        case(2, 4, (5, 5), 10, (3, 3), o().groups(2)),
        // 7 output channels, 9 output columns, stride 3 with padding 2 and dilation 2.
        case(1, 3, (11, 25), 7, (3, 2), o().stride(3).padding(2).dilation(2)),
        // One output column and a window as wide as the padded input.
        case(2, 2, (6, 3), 6, (2, 5), o().padding((0, 1))),
        // 3 x 2 x 17 x 4 = 408 blocks: two workgroups, the second partial; depthwise.
        case(3, 2, (19, 15), 6, (3, 3), o().groups(2)),
    ];
    for dev in devices("the_direct_kernel_handles_partial_blocks_and_strided_views") {
        for (i, t) in cases.iter().enumerate() {
            let (x, w, b) = operands(t, 700 + 10 * i as u64, &dev);
            let bias = (i % 2 == 0).then_some(&b);
            // The same kind of batch as a view: the last images of a larger batch, height
            // and width transposed, so it has an offset and a width stride other than 1.
            let view =
                randn(&[t.n + 1, t.c, t.w, t.h], 701 + 10 * i as u64, &dev).narrow(0, 1, t.n).permute(&[0, 1, 3, 2]);
            for input in [&x, &view] {
                let expected = direct_conv(&input.to_vec(), &w.to_vec(), bias.map(|b| b.to_vec::<f32>()).as_deref(), t);
                let y = with_conv_algorithm(ConvAlgorithm::Direct, || input.conv2d(&w, bias, &t.opts));
                if let Err(e) = wgrad::testing::check_poison(&y) {
                    panic!("direct conv2d on {} {t:?}: {e}", dev_name(&dev));
                }
                compare(&y.to_vec(), &expected, FORWARD_TOL)
                    .unwrap_or_else(|e| panic!("direct conv2d on {} {t:?}: {e}", dev_name(&dev)));
            }
        }
    }
}

fn grad_tol() -> GradTolerance {
    GradTolerance { eps: 1e-3, atol: 5e-4, rtol: 5e-3 }
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let cases = [
        case(2, 3, (5, 4), 2, (3, 2), ConvOptions::new().stride((2, 1)).padding((1, 1)).dilation((1, 2))),
        case(1, 4, (4, 4), 4, (3, 3), ConvOptions::new().groups(2).padding(1)),
        case(2, 3, (3, 3), 2, (1, 1), ConvOptions::new()),
    ];
    for dev in devices("conv2d_gradients_match_finite_differences") {
        for (i, t) in cases.iter().enumerate() {
            let nx = t.n * t.c * t.h * t.w;
            let nw = t.o * (t.c / t.opts.groups) * t.kh * t.kw;
            let inputs = [
                (uniform_values(nx, -1.0, 1.0, 300 + i as u64), vec![t.n, t.c, t.h, t.w]),
                (uniform_values(nw, -1.0, 1.0, 310 + i as u64), vec![t.o, t.c / t.opts.groups, t.kh, t.kw]),
                (uniform_values(t.o, -1.0, 1.0, 320 + i as u64), vec![t.o]),
            ];
            let opts = t.opts;
            for algorithm in [ConvAlgorithm::Im2col, ConvAlgorithm::Direct] {
                with_conv_algorithm(algorithm, || {
                    gradcheck(&format!("conv2d ({algorithm:?}) {t:?}"), &dev, &inputs, grad_tol(), |v| {
                        v[0].conv2d(&v[1], Some(&v[2]), &opts)
                    })
                })
                .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}

/// The budget is process-wide: a budget of one image forces every other test in this
/// binary into one-image chunks too, which they must survive (results only change in
/// rounding), so this is the one test that lowers it and it restores it at the end.
#[test]
fn large_batches_run_in_chunks_with_the_same_results() {
    let t = case(5, 3, (6, 7), 4, (3, 3), ConvOptions::new().padding(1).stride((1, 2)));
    for dev in devices("large_batches_run_in_chunks_with_the_same_results") {
        let (x, w, b) = operands(&t, 400, &dev);
        let run = || {
            let (x, w, b) = (x.detach().requires_grad(), w.detach().requires_grad(), b.detach().requires_grad());
            let y = x.conv2d(&w, Some(&b), &t.opts);
            let grads = y.square().sum_all().backward();
            let g = |p: &Tensor| grads.get(p).unwrap().to_vec::<f32>();
            (y.to_vec::<f32>(), g(&x), g(&w), g(&b))
        };
        let whole = run();
        let previous = wgrad::im2col_budget();
        // Columns of one image: 27 rows x 24 positions x 4 bytes; the budget fits two.
        wgrad::set_im2col_budget(2 * 27 * 24 * 4 + 7);
        let chunked = run();
        wgrad::set_im2col_budget(previous);
        let tol = Tolerance::Elementwise { atol: 1e-5, rtol: 1e-5 };
        for (what, a, b) in [
            ("output", &whole.0, &chunked.0),
            ("dx", &whole.1, &chunked.1),
            ("dw", &whole.2, &chunked.2),
            ("db", &whole.3, &chunked.3),
        ] {
            compare(b, a, tol).unwrap_or_else(|e| panic!("chunked {what} on {}: {e}", dev_name(&dev)));
        }
    }
}

#[test]
fn conv1d_is_conv2d_over_a_height_one_image() {
    for dev in devices("conv1d_is_conv2d_over_a_height_one_image") {
        let opts = Conv1dOptions::new().stride(2).padding(2).dilation(3).groups(2);
        let x = randn(&[3, 4, 17], 500, &dev);
        let w = randn(&[6, 2, 3], 501, &dev);
        let b = randn(&[6], 502, &dev);
        let y = x.conv1d(&w, Some(&b), &opts);
        let t = case(
            3,
            4,
            (1, 17),
            6,
            (1, 3),
            ConvOptions::new().stride((1, 2)).padding((0, 2)).dilation((1, 3)).groups(2),
        );
        let expected = direct_conv(&x.to_vec(), &w.to_vec(), Some(&b.to_vec()), &t);
        assert_eq!(y.shape(), &[3, 6, out_size(17, 3, 2, 2, 3)]);
        compare(&y.to_vec(), &expected, FORWARD_TOL).unwrap_or_else(|e| panic!("conv1d on {}: {e}", dev_name(&dev)));
        // One unbatched sequence gives the first row of the batch.
        let single = x.narrow(0, 0, 1).squeeze(0).conv1d(&w, Some(&b), &opts);
        assert_eq!(single.shape(), &y.shape()[1..]);
        compare(&single.to_vec(), &y.narrow(0, 0, 1).to_vec(), Tolerance::Exact).unwrap();

        let inputs = [
            (uniform_values(2 * 2 * 7, -1.0, 1.0, 503), vec![2, 2, 7]),
            (uniform_values(3 * 2 * 3, -1.0, 1.0, 504), vec![3, 2, 3]),
        ];
        let opts = Conv1dOptions::new().padding(1).stride(2);
        gradcheck("conv1d", &dev, &inputs, grad_tol(), |v| v[0].conv1d(&v[1], None, &opts))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn unbatched_images_are_accepted() {
    let dev = Device::cpu();
    let x = randn(&[3, 6, 6], 600, &dev);
    let w = randn(&[2, 3, 3, 3], 601, &dev);
    let y = x.conv2d(&w, None, &ConvOptions::new());
    assert_eq!(y.shape(), &[2, 4, 4]);
    let batched = x.unsqueeze(0).conv2d(&w, None, &ConvOptions::new());
    compare(&y.to_vec(), &batched.to_vec(), Tolerance::Exact).unwrap();
}

#[test]
fn layers_have_pytorch_names_shapes_and_initialisation() {
    let dev = Device::cpu();
    let conv = Conv2d::with_seed(6, 8, (3, 5), ConvOptions::new().groups(2), true, 7, &dev);
    let names: Vec<(String, Vec<usize>)> =
        conv.named_parameters().into_iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
    assert_eq!(names, [("weight".to_string(), vec![8, 3, 3, 5]), ("bias".to_string(), vec![8])]);
    // fan_in = 3 channels per group x 15 taps.
    let bound = 1.0 / (45f32).sqrt();
    for (name, p) in conv.named_parameters() {
        let v = p.to_vec::<f32>();
        assert!(v.iter().all(|x| x.abs() <= bound), "{name} outside +-{bound}");
        let spread = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(spread > 0.5 * bound, "{name} does not fill its range: max |value| {spread}");
    }
    assert_eq!(conv.describe(), "Conv2d(6, 8, kernel_size=(3, 5), stride=(1, 1), groups=2)");
    let plain = Conv2d::with_seed(1, 32, 3, ConvOptions::new(), false, 1, &dev);
    assert_eq!(plain.describe(), "Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), bias=False)");
    assert_eq!(plain.num_parameters(), 32 * 9);

    let c1 = Conv1d::with_options(4, 6, 5, Conv1dOptions::new().padding(2).dilation(2), &dev);
    assert_eq!(c1.weight.shape(), &[6, 4, 5]);
    assert_eq!(c1.describe(), "Conv1d(4, 6, kernel_size=(5,), stride=(1,), padding=(2,), dilation=(2,))");
    assert_eq!(c1.forward(&randn(&[2, 4, 9], 0, &dev)).shape(), &[2, 6, 5]);
}

#[test]
fn a_small_cnn_learns_on_both_devices() {
    // Tell apart vertical from horizontal bars with a conv, global mean and a linear read-out.
    for dev in devices("a_small_cnn_learns_on_both_devices") {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..16 {
            let vertical = i % 2 == 0;
            let at = 1 + i % 5;
            for y in 0..7 {
                for x in 0..7 {
                    images.push(if (vertical && x == at) || (!vertical && y == at) { 1.0f32 } else { 0.0 });
                }
            }
            labels.push(vertical as i32);
        }
        let x = Tensor::from_slice(&images, &[16, 1, 7, 7], &dev);
        let y = Tensor::from_slice(&labels, &[16], &dev);
        let conv = Conv2d::with_seed(1, 4, 3, ConvOptions::new().padding(1), true, 3, &dev);
        let head = wgrad::nn::Linear::with_seed(4, 2, true, 4, &dev);
        let mut params = conv.parameters();
        params.extend(head.parameters());
        let mut opt = wgrad::optim::Adam::new(params, 0.05);
        let mut losses = Vec::new();
        for _ in 0..40 {
            let features = conv.forward(&x).relu().mean(&[2, 3], false);
            let loss = wgrad::loss::cross_entropy(&head.forward(&features), &y);
            losses.push(loss.item());
            let grads = loss.backward();
            wgrad::optim::Optimizer::step(&mut opt, &grads);
        }
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(last < 0.2 * first, "{}: loss went from {first} to {last}", dev_name(&dev));
    }
}

#[test]
#[should_panic(
    expected = "conv2d: weight of shape [4, 2, 3, 3] expects 2 input channels (groups=1), but the input of shape [1, 3, 8, 8] has 3"
)]
fn channel_mismatch_is_reported_with_both_shapes() {
    let dev = Device::cpu();
    Tensor::zeros(&[1, 3, 8, 8], &dev).conv2d(&Tensor::zeros(&[4, 2, 3, 3], &dev), None, &ConvOptions::new());
}

#[test]
#[should_panic(expected = "conv2d: kernel [5, 5] (dilation [1, 1]) is larger than the input [4, 4] padded by [0, 0]")]
fn a_kernel_larger_than_the_padded_input_is_reported() {
    let dev = Device::cpu();
    Tensor::zeros(&[1, 1, 4, 4], &dev).conv2d(&Tensor::zeros(&[1, 1, 5, 5], &dev), None, &ConvOptions::new());
}

#[test]
#[should_panic(expected = "conv2d: bias of shape [3] does not match 4 output channels")]
fn a_wrong_bias_is_reported() {
    let dev = Device::cpu();
    let x = Tensor::zeros(&[1, 1, 4, 4], &dev);
    x.conv2d(&Tensor::zeros(&[4, 1, 3, 3], &dev), Some(&Tensor::zeros(&[3], &dev)), &ConvOptions::new());
}

#[test]
#[should_panic(expected = "Conv2d: in_channels=3 and out_channels=4 must both be divisible by groups=2")]
fn groups_that_do_not_divide_the_channels_are_reported() {
    Conv2d::with_options(3, 4, 3, ConvOptions::new().groups(2), &Device::cpu());
}
