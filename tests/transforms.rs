//! Data augmentation: the crop-flip op against a direct reference and across devices, and
//! the seeded transforms built on it (their ranges, their seeding, their composition).

mod common;

use std::collections::BTreeMap;

use common::{dev_name, devices, gpu, uniform, EXACT};
use wgrad::data::transforms::{
    Compose, CropFlipPlan, Normalize, RandomCrop, RandomHorizontalFlip, RandomShift, Transform,
};
use wgrad::testing::{compare, cross_check};
use wgrad::{Device, Tensor};

/// Crop-flip written the other way round from the kernel: cut the window out of a
/// zero-padded copy of the image, then reverse its rows.
fn reference(x: &[f32], shape: [usize; 4], windows: &[[i32; 3]], [oh, ow]: [usize; 2]) -> Vec<f32> {
    let [n, c, h, w] = shape;
    assert_eq!(windows.len(), n);
    let pixel = |img: usize, ch: usize, y: i64, x_: i64| -> f32 {
        if y < 0 || x_ < 0 || y >= h as i64 || x_ >= w as i64 {
            0.0
        } else {
            x[((img * c + ch) * h + y as usize) * w + x_ as usize]
        }
    };
    let mut out = Vec::new();
    for (img, &[dy, dx, flip]) in windows.iter().enumerate() {
        for ch in 0..c {
            for y in 0..oh {
                let mut row: Vec<f32> =
                    (0..ow).map(|x_| pixel(img, ch, dy as i64 + y as i64, dx as i64 + x_ as i64)).collect();
                if flip != 0 {
                    row.reverse();
                }
                out.extend(row);
            }
        }
    }
    out
}

fn windows_tensor(windows: &[[i32; 3]], dev: &Device) -> Tensor {
    let flat: Vec<i32> = windows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat, &[windows.len(), 3], dev)
}

/// Values in [1, 2): a zero in an output can only be padding.
fn images(shape: &[usize], seed: u64, dev: &Device) -> Tensor {
    uniform(shape, 1.0, 2.0, seed, dev)
}

/// Input shape, windows and output size of one crop-flip.
type CropFlipCase = ([usize; 4], Vec<[i32; 3]>, [usize; 2]);

/// Cases chosen to break the kernel: odd sizes, C = 3 and 5, windows overhanging each edge
/// and all four at once, windows wholly outside, outputs larger and smaller than the input,
/// 1 x 1 windows, a window the size of the input, batch 1.
fn crop_flip_cases() -> Vec<CropFlipCase> {
    vec![
        // Overhangs: top-left, bottom-right, and every edge at once (output larger).
        ([3, 3, 7, 9], vec![[-2, -3, 0], [4, 5, 1], [-1, -2, 1]], [11, 13]),
        // Smaller than the input, inside it and across the right and bottom edges.
        ([3, 3, 7, 9], vec![[1, 2, 0], [5, 7, 1], [0, 0, 1]], [3, 5]),
        // 1 x 1 windows, one outside the image entirely.
        ([2, 5, 5, 3], vec![[4, 2, 1], [-1, 0, 0]], [1, 1]),
        // A window the size of the input, batch 1, and one wholly past it.
        ([1, 3, 5, 7], vec![[0, 0, 1]], [5, 7]),
        ([2, 3, 5, 7], vec![[6, 0, 0], [0, -8, 1]], [5, 7]),
    ]
}

#[test]
fn cpu_crop_flip_matches_the_direct_reference() {
    let dev = Device::cpu();
    for (i, (shape, windows, out)) in crop_flip_cases().into_iter().enumerate() {
        let x = images(&shape, 10 + i as u64, &dev);
        let got = x.crop_flip(&windows_tensor(&windows, &dev), out);
        assert_eq!(got.shape(), &[shape[0], shape[1], out[0], out[1]], "case {i}");
        let want = reference(&x.to_vec(), shape, &windows, out);
        assert_eq!(got.to_vec::<f32>(), want, "case {i}: {shape:?} through {windows:?} into {out:?}");
    }
}

#[test]
fn cpu_crop_flip_reads_strided_batches_and_window_views() {
    let dev = Device::cpu();
    // An NHWC array seen as NCHW (every stride differs from the packed one), narrowed to
    // images 1..4 so the view also has an offset.
    let nhwc = images(&[5, 7, 9, 3], 3, &dev);
    let x = nhwc.permute(&[0, 3, 1, 2]).narrow(0, 1, 3);
    assert!(!x.is_contiguous());
    let windows = [[-2, 3, 1], [4, -1, 0], [1, 1, 1]];
    // The windows are rows 1..4 of a larger tensor: a view at an offset.
    let mut rows = vec![[9, 9, 9]];
    rows.extend(windows);
    rows.push([9, 9, 9]);
    let w = windows_tensor(&rows, &dev).narrow(0, 1, 3);
    let got = x.crop_flip(&w, (6, 8));
    let want = reference(&x.contiguous().to_vec(), [3, 3, 7, 9], &windows, [6, 8]);
    assert_eq!(got.to_vec::<f32>(), want);
}

#[test]
fn gpu_crop_flip_matches_the_cpu_exactly() {
    let Some(gpu) = gpu("gpu_crop_flip_matches_the_cpu_exactly") else { return };
    for (i, (shape, windows, out)) in crop_flip_cases().into_iter().enumerate() {
        let name = format!("crop_flip case {i}");
        let inputs = |d: &Device| vec![images(&shape, 10 + i as u64, d), windows_tensor(&windows, d)];
        cross_check(&name, &gpu, EXACT, inputs, |x| x[0].crop_flip(&x[1], out));
    }
    // Strided, offset batch and an offset window view, as on the CPU above; 3 * 3 * 6 * 8 =
    // 432 outputs span two workgroups, the second partial.
    let inputs = |d: &Device| {
        let x = images(&[5, 7, 9, 3], 3, d).permute(&[0, 3, 1, 2]).narrow(0, 1, 3);
        let w = windows_tensor(&[[9, 9, 9], [-2, 3, 1], [4, -1, 0], [1, 1, 1]], d).narrow(0, 1, 3);
        vec![x, w]
    };
    cross_check("crop_flip strided", &gpu, EXACT, inputs, |x| x[0].crop_flip(&x[1], (6, 8)));
}

#[test]
fn crop_flip_of_an_empty_batch_is_empty() {
    for dev in devices("crop_flip_of_an_empty_batch_is_empty") {
        let x = Tensor::zeros(&[0, 3, 5, 5], &dev);
        let w = Tensor::from_slice::<i32>(&[], &[0, 3], &dev);
        assert_eq!(x.crop_flip(&w, (3, 4)).shape(), &[0, 3, 3, 4], "{}", dev_name(&dev));
    }
}

#[test]
#[should_panic(expected = "crop_flip: windows must have shape [2, 3]")]
fn crop_flip_rejects_windows_of_the_wrong_shape() {
    let dev = Device::cpu();
    Tensor::zeros(&[2, 1, 4, 4], &dev).crop_flip(&Tensor::from_slice(&[0i32, 0, 0], &[1, 3], &dev), 2);
}

#[test]
#[should_panic(expected = "crop_flip: expected an [N, C, H, W] batch, got shape [1, 4, 4]")]
fn crop_flip_rejects_a_batch_without_channels() {
    let dev = Device::cpu();
    Tensor::zeros(&[1, 4, 4], &dev).crop_flip(&Tensor::from_slice(&[0i32, 0, 0], &[1, 3], &dev), 2);
}

#[test]
#[should_panic(expected = "crop_flip: expected a i32 tensor")]
fn crop_flip_rejects_float_windows() {
    let dev = Device::cpu();
    Tensor::zeros(&[1, 1, 4, 4], &dev).crop_flip(&Tensor::zeros(&[1, 3], &dev), 2);
}

/// One of each geometric transform and a composition, seeded, as fresh instances.
fn seeded_transforms() -> Vec<(&'static str, Box<dyn Transform>)> {
    vec![
        ("crop", Box::new(RandomCrop::new((5, 6)).padding([1, 2, 3, 1]).seed(11))),
        ("shift", Box::new(RandomShift::new(2, 3).seed(12))),
        ("flip", Box::new(RandomHorizontalFlip::default().seed(13))),
        (
            "compose",
            Box::new(
                Compose::new()
                    .then(RandomCrop::new(7).padding(2).seed(14))
                    .then(RandomHorizontalFlip::default().seed(15))
                    .then(Normalize::new(&[0.5, 0.25, 1.0], &[2.0, 0.5, 1.0])),
            ),
        ),
    ]
}

#[test]
fn the_same_seed_gives_the_same_batches_on_every_device() {
    let devs = devices("the_same_seed_gives_the_same_batches_on_every_device");
    for (name, _) in seeded_transforms() {
        let runs: Vec<Vec<Vec<f32>>> = devs
            .iter()
            .map(|dev| {
                let (_, mut t) = seeded_transforms().into_iter().find(|(n, _)| *n == name).unwrap();
                (0..3).map(|call| t.apply(&images(&[4, 3, 7, 9], call, dev)).to_vec()).collect()
            })
            .collect();
        // A second CPU run from the same seed: repeatable, not merely consistent.
        let (_, mut again) = seeded_transforms().into_iter().find(|(n, _)| *n == name).unwrap();
        let cpu_again: Vec<Vec<f32>> =
            (0..3).map(|call| again.apply(&images(&[4, 3, 7, 9], call, &Device::cpu())).to_vec()).collect();
        assert_eq!(runs[0], cpu_again, "{name}: two CPU runs from one seed differ");
        for (dev, run) in devs.iter().zip(&runs).skip(1) {
            for (call, (got, want)) in run.iter().zip(&runs[0]).enumerate() {
                // Geometry copies values exactly; the compose ends in a division (WGSL: 2.5 ulp).
                let tol = if name == "compose" { common::within(0.0, 4e-7) } else { EXACT };
                if let Err(e) = compare(got, want, tol) {
                    panic!("{name} call {call}: {} disagrees with the CPU: {e}", dev_name(dev));
                }
            }
        }
    }
}

#[test]
fn successive_calls_and_different_seeds_draw_differently() {
    let shape = [16, 3, 10, 10];
    let mut crop = RandomCrop::new(10).padding(4).seed(1);
    let first = crop.plan(&shape).unwrap();
    let second = crop.plan(&shape).unwrap();
    assert_eq!(crop.calls(), 2);
    assert_ne!(first.windows, second.windows, "two calls drew the same windows");
    // Images within one batch differ too.
    assert!(first.windows.iter().any(|w| *w != first.windows[0]), "one window for every image: {first:?}");
    let other_seed = RandomCrop::new(10).padding(4).seed(2).plan(&shape).unwrap();
    assert_ne!(first.windows, other_seed.windows, "seeds 1 and 2 drew the same windows");
    // Resuming at call 1 replays call 1.
    let mut resumed = RandomCrop::new(10).padding(4).seed(1);
    resumed.set_calls(1);
    assert_eq!(resumed.plan(&shape).unwrap(), second);

    let mut flip = RandomHorizontalFlip::default().seed(1);
    let flips: Vec<Vec<[i32; 3]>> = (0..2).map(|_| flip.plan(&shape).unwrap().windows).collect();
    assert_ne!(flips[0], flips[1], "two flip calls drew the same coins");

    // Applied: successive batches of the same images come out differently.
    let dev = Device::cpu();
    let x = images(&shape, 5, &dev);
    let mut shift = RandomShift::new(2, 2).seed(3);
    assert_ne!(shift.apply(&x).to_vec::<f32>(), shift.apply(&x).to_vec::<f32>());
}

#[test]
fn seeds_come_from_the_thread_stream_when_none_is_given() {
    let shape = [8, 1, 6, 6];
    wgrad::manual_seed(42);
    let a = RandomCrop::new(6).padding(3).plan(&shape).unwrap();
    wgrad::manual_seed(42);
    let b = RandomCrop::new(6).padding(3).plan(&shape).unwrap();
    let c = RandomCrop::new(6).padding(3).plan(&shape).unwrap();
    assert_eq!(a, b, "manual_seed did not make the draws repeatable");
    assert_ne!(b, c, "two transforms from the stream drew alike");
}

#[test]
fn flipping_twice_is_the_identity() {
    for dev in devices("flipping_twice_is_the_identity") {
        let x = images(&[3, 3, 5, 7], 4, &dev);
        let mut flip = RandomHorizontalFlip::new(1.0).seed(0);
        let once = flip.apply(&x);
        assert_ne!(once.to_vec::<f32>(), x.to_vec::<f32>(), "{}: p = 1 did not flip", dev_name(&dev));
        assert_eq!(flip.apply(&once).to_vec::<f32>(), x.to_vec::<f32>(), "{}", dev_name(&dev));
        // With p = 0.5 each image's two coins differ between calls, but a mirrored window
        // crop-flipped again with the same windows is always the identity.
        let plan = RandomHorizontalFlip::default().seed(8).plan(x.shape()).unwrap();
        assert_eq!(plan.apply(&plan.apply(&x)).to_vec::<f32>(), x.to_vec::<f32>(), "{}", dev_name(&dev));
        // p = 0 never flips.
        assert_eq!(RandomHorizontalFlip::new(0.0).apply(&x).to_vec::<f32>(), x.to_vec::<f32>());
    }
}

#[test]
fn horizontal_flips_happen_with_probability_p() {
    let shape = [1000, 1, 1, 1];
    for p in [0.0f32, 0.3, 0.5, 1.0] {
        let mut flip = RandomHorizontalFlip::new(p).seed(9);
        let flips: usize =
            (0..4).map(|_| flip.plan(&shape).unwrap().windows.iter().filter(|w| w[2] == 1).count()).sum();
        let rate = flips as f32 / 4000.0;
        // Binomial(4000, p) has a standard deviation of at most 0.008 in the rate.
        assert!((rate - p).abs() < 0.04, "p = {p}: flipped {rate} of the images");
        let plan = flip.plan(&shape).unwrap();
        assert!(plan.windows.iter().all(|w| w[0] == 0 && w[1] == 0), "a flip moved an image: {plan:?}");
    }
}

#[test]
fn random_crop_padding_is_zero_and_the_rest_is_the_image() {
    for dev in devices("random_crop_padding_is_zero_and_the_rest_is_the_image") {
        let shape = [6, 3, 7, 9];
        let x = images(&shape, 6, &dev);
        let mut crop = RandomCrop::new((7, 9)).padding(3).seed(21);
        for _ in 0..3 {
            let plan = crop.clone().plan(&shape).unwrap();
            let y = crop.apply(&x).to_vec::<f32>();
            let xv = x.to_vec::<f32>();
            for (img, &[dy, dx, flip]) in plan.windows.iter().enumerate() {
                assert_eq!(flip, 0);
                for ch in 0..3 {
                    for r in 0..7 {
                        for col in 0..9 {
                            let (iy, ix) = (dy + r as i32, dx + col as i32);
                            let got = y[((img * 3 + ch) * 7 + r) * 9 + col];
                            let inside = (0..7).contains(&iy) && (0..9).contains(&ix);
                            let want =
                                if inside { xv[((img * 3 + ch) * 7 + iy as usize) * 9 + ix as usize] } else { 0.0 };
                            assert_eq!(got.to_bits(), want.to_bits(), "{} image {img} ({r}, {col})", dev_name(&dev));
                        }
                    }
                }
            }
        }
    }
}

/// Counts of each value in `values`.
fn histogram(values: impl Iterator<Item = i32>) -> BTreeMap<i32, usize> {
    let mut h = BTreeMap::new();
    for v in values {
        *h.entry(v).or_insert(0) += 1;
    }
    h
}

/// Asserts that `h` has every value of `range` and nothing else, each near `total / len`.
fn assert_uniform_over(h: &BTreeMap<i32, usize>, range: std::ops::RangeInclusive<i32>, what: &str) {
    let values: Vec<i32> = h.keys().copied().collect();
    assert_eq!(values, range.clone().collect::<Vec<_>>(), "{what}: drew {h:?}");
    let total: usize = h.values().sum();
    let expected = total as f64 / values.len() as f64;
    for (v, &count) in h {
        // At least 280 expected per value: 50% off is many standard deviations.
        assert!((count as f64 - expected).abs() < 0.5 * expected, "{what}: {v} drawn {count} times of {total}: {h:?}");
    }
}

#[test]
fn random_crop_offsets_cover_torchvisions_range_uniformly() {
    // Padded to 2 + 9 + 4 = 15 rows and 1 + 8 + 3 = 12 columns; torchvision draws the
    // corner in 0..=15 - 5 and 0..=12 - 7 of the padded image, minus top and left.
    let shape = [16, 2, 9, 8];
    let mut crop = RandomCrop::new((5, 7)).padding([1, 2, 3, 4]).seed(31);
    let plans: Vec<CropFlipPlan> = (0..200).map(|_| crop.plan(&shape).unwrap()).collect();
    for p in &plans {
        assert_eq!((p.in_size, p.out_size), ([9, 8], [5, 7]));
    }
    let windows = || plans.iter().flat_map(|p| p.windows.iter().copied());
    assert_uniform_over(&histogram(windows().map(|w| w[0])), -2..=8, "RandomCrop dy");
    assert_uniform_over(&histogram(windows().map(|w| w[1])), -1..=4, "RandomCrop dx");
    assert!(windows().all(|w| w[2] == 0));
}

#[test]
fn random_crop_pads_if_needed_as_torchvision() {
    // A 3 x 4 image and a 5 x 6 crop: torchvision pads each side by the shortfall (2 and 2),
    // giving 7 x 8, so the corner lies in -2..=0 on both axes.
    let shape = [32, 1, 3, 4];
    let mut crop = RandomCrop::new((5, 6)).pad_if_needed(true).seed(4);
    let plans: Vec<CropFlipPlan> = (0..40).map(|_| crop.plan(&shape).unwrap()).collect();
    let windows = || plans.iter().flat_map(|p| p.windows.iter().copied());
    assert_uniform_over(&histogram(windows().map(|w| w[0])), -2..=0, "pad_if_needed dy");
    assert_uniform_over(&histogram(windows().map(|w| w[1])), -2..=0, "pad_if_needed dx");
    // A crop the size of the input is the identity, as torchvision returns (0, 0).
    let whole = RandomCrop::new((3, 4)).seed(4).plan(&shape).unwrap();
    assert!(whole.is_identity(), "{whole:?}");
}

#[test]
#[should_panic(expected = "RandomCrop: crop size [5, 6] is larger than the padded image [5, 5]")]
fn random_crop_refuses_a_crop_larger_than_the_padded_image() {
    RandomCrop::new((5, 6)).padding(1).plan(&[1, 1, 3, 3]);
}

#[test]
#[should_panic(expected = "RandomCrop: expected an [N, C, H, W] batch, got shape [3, 8, 8]")]
fn random_crop_rejects_a_batch_without_channels() {
    RandomCrop::new(4).apply(&Tensor::zeros(&[3, 8, 8], &Device::cpu()));
}

#[test]
fn random_shift_moves_by_up_to_its_maximum_and_equals_a_padded_crop() {
    let shape = [16, 1, 6, 5];
    let mut shift = RandomShift::new(3, 1).seed(5);
    let plans: Vec<CropFlipPlan> = (0..100).map(|_| shift.plan(&shape).unwrap()).collect();
    let windows = || plans.iter().flat_map(|p| p.windows.iter().copied());
    assert_uniform_over(&histogram(windows().map(|w| w[0])), -3..=3, "RandomShift dy");
    assert_uniform_over(&histogram(windows().map(|w| w[1])), -1..=1, "RandomShift dx");
    assert!(plans.iter().all(|p| p.in_size == [6, 5] && p.out_size == [6, 5]));
    // The documented equivalence, draw for draw.
    let mut crop = RandomCrop::new((6, 5)).padding([1, 3, 1, 3]).seed(5);
    for p in &plans {
        assert_eq!(&crop.plan(&shape).unwrap(), p);
    }
    // A shift by (1, -1) of a 3 x 3 image, checked by hand: content moves down and left.
    let dev = Device::cpu();
    let x = Tensor::arange(1.0, 10.0, 1.0, &dev).reshape(&[1, 1, 3, 3]);
    let plan = CropFlipPlan { in_size: [3, 3], out_size: [3, 3], windows: vec![[-1, 1, 0]] };
    assert_eq!(plan.apply(&x).to_vec::<f32>(), vec![0., 0., 0., 2., 3., 0., 5., 6., 0.]);
}

#[test]
fn normalize_subtracts_the_mean_and_divides_by_the_std_per_channel() {
    for dev in devices("normalize_subtracts_the_mean_and_divides_by_the_std_per_channel") {
        let x = uniform(&[2, 3, 5, 7], -1.0, 3.0, 7, &dev);
        let xv = x.to_vec::<f32>();
        let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
        let want: Vec<f32> = xv.iter().enumerate().map(|(i, v)| (v - mean[(i / 35) % 3]) / std[(i / 35) % 3]).collect();
        let got = Normalize::new(&mean, &std).apply(&x).to_vec::<f32>();
        // The CPU divides exactly as the host does; WGSL division is good to 2.5 ulp.
        compare(&got, &want, common::within(0.0, 4e-7)).unwrap_or_else(|e| panic!("{}: {e}", dev_name(&dev)));
        // One value for all channels.
        let want: Vec<f32> = xv.iter().map(|v| (v - 0.5) / 0.25).collect();
        let got = Normalize::new(&[0.5], &[0.25]).apply(&x).to_vec::<f32>();
        compare(&got, &want, common::within(0.0, 4e-7)).unwrap_or_else(|e| panic!("{}: {e}", dev_name(&dev)));
    }
}

#[test]
fn normalize_follows_the_batch_to_another_device_and_channel_count() {
    let devs = devices("normalize_follows_the_batch_to_another_device_and_channel_count");
    let mut norm = Normalize::new(&[1.0], &[2.0]);
    for dev in devs.iter().chain(devs.iter().rev()) {
        for c in [1, 3] {
            let x = Tensor::full(&[2, c, 2, 2], 5.0, dev);
            let y = norm.apply(&x);
            assert_eq!(y.device(), dev);
            assert_eq!(y.to_vec::<f32>(), vec![2.0; 8 * c]);
        }
    }
}

#[test]
#[should_panic(expected = "Normalize: 3 means for a batch of 2 channels (shape [1, 2, 3, 3])")]
fn normalize_rejects_a_channel_count_it_was_not_given() {
    Normalize::new(&[0.0, 0.0, 0.0], &[1.0]).apply(&Tensor::zeros(&[1, 2, 3, 3], &Device::cpu()));
}

#[test]
#[should_panic(expected = "Normalize: std [1.0, 0.0] contains a zero")]
fn normalize_rejects_a_zero_std() {
    Normalize::new(&[0.0], &[1.0, 0.0]);
}

#[test]
#[should_panic(expected = "Normalize: expected an [N, C, H, W] batch, got shape [3, 4]")]
fn normalize_rejects_a_matrix() {
    Normalize::new(&[0.0], &[1.0]).apply(&Tensor::zeros(&[3, 4], &Device::cpu()));
}

#[test]
fn compose_applies_its_transforms_in_order() {
    let dev = Device::cpu();
    let x = images(&[4, 3, 6, 6], 8, &dev);
    let norm = || Normalize::new(&[0.5], &[0.25]);
    let crop = || RandomCrop::new(6).padding(2).seed(3);
    // Normalising after padding leaves the padding 0; before, it becomes (0 - 0.5) / 0.25.
    let crop_then_norm = Compose::new().then(crop()).then(norm()).apply(&x).to_vec::<f32>();
    let norm_then_crop = Compose::new().then(norm()).then(crop()).apply(&x).to_vec::<f32>();
    let plan = crop().plan(x.shape()).unwrap();
    let padding = plan.apply(&Tensor::ones(&[4, 3, 6, 6], &dev)).to_vec::<f32>();
    assert!(padding.contains(&0.0), "the draws of this seed put no padding in view: {plan:?}");
    for (i, &p) in padding.iter().enumerate() {
        if p == 0.0 {
            assert_eq!((crop_then_norm[i], norm_then_crop[i]), (-2.0, 0.0), "element {i}");
        }
    }
    assert_eq!(crop_then_norm, norm().apply(&crop().apply(&x)).to_vec::<f32>());
    assert_eq!(norm_then_crop, crop().apply(&norm().apply(&x)).to_vec::<f32>());
    // An empty compose returns the batch.
    assert_eq!(Compose::new().apply(&x).to_vec::<f32>(), x.to_vec::<f32>());
}

#[test]
fn compose_gives_what_one_by_one_application_gives() {
    // Foldable (crop then flip, flip then crop), interrupted by a normalisation, and not
    // foldable (a shift across the edge after a padded crop must see the crop's zeros).
    type Build = fn() -> Vec<Box<dyn Transform>>;
    let pipelines: [(&str, Build); 4] = [
        ("crop, flip", || {
            vec![
                Box::new(RandomCrop::new((5, 7)).padding(2).seed(1)),
                Box::new(RandomHorizontalFlip::default().seed(2)),
            ]
        }),
        ("flip, crop", || {
            vec![
                Box::new(RandomHorizontalFlip::default().seed(2)),
                Box::new(RandomCrop::new((5, 7)).padding(2).seed(1)),
            ]
        }),
        ("crop, normalize, flip", || {
            vec![
                Box::new(RandomCrop::new(6).padding(1).seed(1)),
                Box::new(Normalize::new(&[0.1, 0.2, 0.3], &[0.5, 1.0, 2.0])),
                Box::new(RandomHorizontalFlip::new(0.7).seed(2)),
            ]
        }),
        ("crop, shift, flip", || {
            vec![
                Box::new(RandomCrop::new((6, 8)).padding(3).seed(1)),
                Box::new(RandomShift::new(2, 2).seed(5)),
                Box::new(RandomHorizontalFlip::default().seed(2)),
            ]
        }),
    ];
    for dev in devices("compose_gives_what_one_by_one_application_gives") {
        for (name, build) in pipelines {
            let mut compose = Compose::new();
            for t in build() {
                compose.push(t);
            }
            let mut one_by_one = build();
            for call in 0..3 {
                let x = images(&[5, 3, 7, 9], 20 + call, &dev);
                let got = compose.apply(&x).to_vec::<f32>();
                let want = one_by_one.iter_mut().fold(x, |x, t| t.apply(&x)).to_vec::<f32>();
                assert_eq!(got, want, "{name}, call {call}, {}", dev_name(&dev));
            }
        }
    }
}

#[test]
fn crop_flip_plans_fold_exactly_when_they_say_they_do() {
    let dev = Device::cpu();
    let x = images(&[4, 2, 6, 7], 9, &dev);
    let mut folded = 0;
    for seed in 0..40u64 {
        let keys = Tensor::rand(&[4, 6], seed, &dev).to_vec::<f32>();
        let draw = |k: usize, lo: i32, hi: i32| lo + (keys[k] * (hi - lo + 1) as f32) as i32;
        let first = CropFlipPlan {
            in_size: [6, 7],
            out_size: [5, 8],
            windows: (0..4)
                .map(|n| [draw(6 * n, -2, 3), draw(6 * n + 1, -2, 2), (keys[6 * n + 2] < 0.5) as i32])
                .collect(),
        };
        let second = CropFlipPlan {
            in_size: [5, 8],
            out_size: [3, 4],
            windows: (0..4)
                .map(|n| [draw(6 * n + 3, -1, 2), draw(6 * n + 4, 0, 5), (keys[6 * n + 5] < 0.5) as i32])
                .collect(),
        };
        let want = second.apply(&first.apply(&x)).to_vec::<f32>();
        let inside = second.windows.iter().all(|&[dy, dx, _]| dy >= 0 && dy + 3 <= 5 && dx >= 0 && dx + 4 <= 8);
        match first.then(&second) {
            Some(plan) => {
                folded += 1;
                assert_eq!(plan.apply(&x).to_vec::<f32>(), want, "seed {seed}: {first:?} then {second:?}");
            }
            None => assert!(!inside, "seed {seed}: windows inside the first output did not fold"),
        }
        // A flip folds with anything before or after it.
        let flip = |size: [usize; 2]| CropFlipPlan {
            in_size: size,
            out_size: size,
            windows: (0..4).map(|n| [0, 0, n % 2]).collect(),
        };
        let after = first.then(&flip([5, 8])).expect("a flip after a crop folds");
        assert_eq!(after.apply(&x).to_vec::<f32>(), flip([5, 8]).apply(&first.apply(&x)).to_vec::<f32>());
        let before = flip([6, 7]).then(&first).expect("a crop after a flip folds");
        assert_eq!(before.apply(&x).to_vec::<f32>(), first.apply(&flip([6, 7]).apply(&x)).to_vec::<f32>());
    }
    assert!(folded > 0 && folded < 40, "the draws should exercise both outcomes, folded {folded} of 40");
}

/// Counts, per thread, the crop-flip dispatches the GPU context logs (at trace level), so
/// that tests running in parallel on the shared device do not disturb the count.
struct DispatchCounter;

thread_local! {
    static CROP_FLIP_DISPATCHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl log::Log for DispatchCounter {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("wgrad")
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) && record.args().to_string().starts_with("dispatch augment::crop_flip") {
            CROP_FLIP_DISPATCHES.with(|c| c.set(c.get() + 1));
        }
    }

    fn flush(&self) {}
}

/// How many crop-flip kernels `f` launches on this thread.
fn crop_flip_launches(f: impl FnOnce() -> Tensor) -> usize {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&DispatchCounter).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
    let before = CROP_FLIP_DISPATCHES.with(|c| c.get());
    f();
    CROP_FLIP_DISPATCHES.with(|c| c.get()) - before
}

#[test]
fn a_crop_and_a_flip_cost_one_kernel() {
    let Some(gpu) = gpu("a_crop_and_a_flip_cost_one_kernel") else { return };
    let x = images(&[4, 3, 8, 8], 1, &gpu);
    let crop = || RandomCrop::new(8).padding(2).seed(1);
    let flip = || RandomHorizontalFlip::new(1.0);
    assert_eq!(crop_flip_launches(|| crop().apply(&x)), 1);
    assert_eq!(crop_flip_launches(|| flip().apply(&crop().apply(&x))), 2, "one by one");
    let crop_flip = crop_flip_launches(|| Compose::new().then(crop()).then(flip()).apply(&x));
    assert_eq!(crop_flip, 1, "crop then flip, composed");
    let flip_crop = crop_flip_launches(|| Compose::new().then(flip()).then(crop()).apply(&x));
    assert_eq!(flip_crop, 1, "flip then crop, composed");
    // A normalisation between them keeps them apart.
    let mut apart = Compose::new().then(crop()).then(Normalize::new(&[0.5], &[2.0])).then(flip());
    assert_eq!(crop_flip_launches(|| apart.apply(&x)), 2, "split by a normalisation");
}

#[test]
fn tracked_batches_go_through_untracked() {
    for dev in devices("tracked_batches_go_through_untracked") {
        let x = images(&[2, 3, 5, 5], 2, &dev).requires_grad();
        let mut transforms = seeded_transforms();
        transforms.push(("normalize", Box::new(Normalize::new(&[0.5], &[2.0]))));
        transforms.push(("identity crop", Box::new(RandomCrop::new(5))));
        for (name, mut t) in transforms {
            let y = t.apply(&x);
            assert!(!y.is_tracked(), "{name} on {}: the output is tracked", dev_name(&dev));
        }
        assert!(x.is_tracked());
    }
}
