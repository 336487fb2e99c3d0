//! Views (reshape, permute, transpose, narrow, slice, squeeze, unsqueeze, broadcast_to),
//! the ops that gather elements into new storage (contiguous, cat, stack, index_select,
//! gather), moving between devices, and the creation ops. Copies and indexing move bits,
//! so everything here is compared exactly, except normal samples.

mod common;

use common::{gpu, randn, EXACT, RANDN_TOL};
use wgrad::testing::cross_check;
use wgrad::{Device, Tensor};

/// The CPU, and the GPU when there is one.
fn devices() -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu("devices"));
    v
}

/// `[0, 1, 2, ...]` with the given shape: every element names its own row-major position.
fn iota(shape: &[usize], dev: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
    Tensor::from_slice(&v, shape, dev)
}

/// The elements of a view, read through the device (a copy kernel on the GPU).
fn values(t: &Tensor) -> Vec<f32> {
    t.to_vec()
}

#[test]
fn views_read_the_elements_they_describe() {
    for dev in devices() {
        let x = iota(&[3, 4], &dev);
        // transpose: out[j][i] = x[i][j] = 4i + j.
        let want: Vec<f32> = (0..4).flat_map(|j| (0..3).map(move |i| (4 * i + j) as f32)).collect();
        assert_eq!(values(&x.t()), want);
        assert_eq!(values(&x.transpose(0, 1)), want);
        assert_eq!(values(&x.transpose(-1, -2)), want);
        // narrow / slice: columns 1..3 of each row.
        assert_eq!(values(&x.narrow(1, 1, 2)), vec![1.0, 2.0, 5.0, 6.0, 9.0, 10.0]);
        assert_eq!(values(&x.slice(1, 1..3)), vec![1.0, 2.0, 5.0, 6.0, 9.0, 10.0]);
        assert_eq!(values(&x.slice(0, 2..3)), vec![8.0, 9.0, 10.0, 11.0]);
        assert_eq!(x.slice(0, 1..1).shape(), &[0, 4]);
        // broadcast_to: every row is the same [4] vector (stride 0).
        let row = iota(&[4], &dev);
        assert_eq!(values(&row.broadcast_to(&[2, 4])), vec![0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0]);
        let col = iota(&[3, 1], &dev);
        assert_eq!(values(&col.broadcast_to(&[3, 2])), vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0]);
        // permute of [2, 3, 4] to [4, 2, 3]: out[k][i][j] = x[i][j][k] = 12i + 4j + k.
        let y = iota(&[2, 3, 4], &dev).permute(&[2, 0, 1]);
        assert_eq!(y.shape(), &[4, 2, 3]);
        let want: Vec<f32> =
            (0..4).flat_map(|k| (0..2).flat_map(move |i| (0..3).map(move |j| (12 * i + 4 * j + k) as f32))).collect();
        assert_eq!(values(&y), want);
        // squeeze and unsqueeze only change the shape.
        let z = iota(&[3, 1, 4], &dev);
        assert_eq!(z.squeeze(1).shape(), &[3, 4]);
        assert_eq!(z.squeeze(-2).shape(), &[3, 4]);
        assert_eq!(values(&z.squeeze(1)), values(&z));
        assert_eq!(x.unsqueeze(0).shape(), &[1, 3, 4]);
        assert_eq!(x.unsqueeze(2).shape(), &[3, 4, 1]);
        assert_eq!(values(&x.t().unsqueeze(1)), values(&x.t()));
        // A scalar becomes a vector and back.
        let s = Tensor::scalar(2.5, &dev);
        assert_eq!(s.unsqueeze(0).shape(), &[1]);
        assert_eq!(s.unsqueeze(0).squeeze(0).item(), 2.5);
    }
}

#[test]
fn reshape_is_a_view_when_strides_allow_and_a_copy_otherwise() {
    for dev in devices() {
        let x = iota(&[4, 6, 5], &dev);
        // Contiguous: a view with row-major strides.
        let r = x.reshape(&[24, 5]);
        assert_eq!(r.strides(), &[5, 1]);
        assert_eq!(values(&r), values(&x));
        assert_eq!(x.reshape(&[-1]).shape(), &[120]);
        assert_eq!(x.reshape(&[2, -1, 5]).shape(), &[2, 12, 5]);
        // Narrowing the middle axis keeps each [3, 5] block packed: merging those two axes is
        // still a view (its row stride stays 30), merging all three is not.
        let n = x.narrow(1, 1, 3);
        let v = n.reshape(&[4, 15]);
        assert_eq!(v.strides(), &[30, 1], "a view keeps the narrowed row stride");
        let want: Vec<f32> = (0..4).flat_map(|i| (0..15).map(move |j| (30 * i + 5 + j) as f32)).collect();
        assert_eq!(values(&v), want);
        let c = n.reshape(&[60]);
        assert!(c.is_contiguous());
        assert_eq!(values(&c), want, "the copy holds the same elements in the same order");
        // A transpose cannot be flattened without a copy; the copy is in transposed order.
        let t = iota(&[3, 4], &dev).t().reshape(&[12]);
        assert_eq!(values(&t), vec![0.0, 4.0, 8.0, 1.0, 5.0, 9.0, 2.0, 6.0, 10.0, 3.0, 7.0, 11.0]);
        // flatten_from merges the trailing axes.
        assert_eq!(x.flatten_from(1).shape(), &[4, 30]);
        // Empty tensors reshape to any shape with no elements.
        assert_eq!(iota(&[0, 3], &dev).reshape(&[3, 0]).shape(), &[3, 0]);
        assert_eq!(iota(&[0, 3], &dev).reshape(&[-1]).shape(), &[0]);
        assert_eq!(iota(&[0, 3], &dev).t().reshape(&[-1]).numel(), 0);
    }
}

#[test]
fn reshape_keeps_the_row_major_order_of_any_view() {
    // Whether reshape finds a view or copies, the elements read in row-major order must not
    // change. `to_vec` reads each side through its own strides.
    type Case = (&'static str, fn(&Device) -> Tensor, &'static [isize]);
    let cases: [Case; 10] = [
        ("narrowed middle axis merged with the last", |d| iota(&[4, 6, 5], d).narrow(1, 1, 3), &[4, 15]),
        ("narrowed middle axis split again", |d| iota(&[4, 6, 5], d).narrow(1, 1, 3), &[2, 2, 3, 5]),
        ("narrowed middle axis flattened", |d| iota(&[4, 6, 5], d).narrow(1, 1, 3), &[60]),
        ("transpose flattened", |d| iota(&[3, 4], d).t(), &[12]),
        ("transpose with unit axes added", |d| iota(&[3, 4], d).t(), &[1, 4, 3, 1]),
        ("transpose with its strided axis split", |d| iota(&[4, 6], d).t(), &[6, 2, 2]),
        ("permuted 4-D merged in pairs", |d| iota(&[2, 3, 4, 5], d).permute(&[2, 3, 0, 1]), &[20, 6]),
        ("broadcast row flattened", |d| iota(&[5], d).broadcast_to(&[3, 5]), &[15]),
        ("broadcast row with a unit axis", |d| iota(&[5], d).broadcast_to(&[3, 5]), &[3, 1, 5]),
        ("unsqueezed narrow", |d| iota(&[6, 7], d).narrow(1, 2, 4).unsqueeze(0), &[2, 3, 4]),
    ];
    for dev in devices() {
        for (name, build, shape) in cases {
            let v = build(&dev);
            let r = v.reshape(shape);
            let want: Vec<usize> = shape.iter().map(|&s| s as usize).collect();
            assert_eq!(r.shape(), &want[..], "{name}");
            assert_eq!(values(&r), values(&v), "{name}: reshape changed the element order");
        }
    }
}

type View = fn(&Tensor) -> Tensor;

/// Views whose `contiguous()` copies run the strided copy kernel.
const VIEWS: &[(&str, &[usize], View)] = &[
    ("transpose of [13, 11]", &[13, 11], |x| x.t()),
    ("transpose of [45, 65] (several workgroups)", &[45, 65], |x| x.t()),
    ("narrow of [13, 20]", &[13, 20], |x| x.narrow(1, 3, 11)),
    ("narrow of rows and columns", &[13, 20], |x| x.narrow(0, 5, 7).narrow(1, 2, 13)),
    ("permute of [2, 3, 5, 7]", &[2, 3, 5, 7], |x| x.permute(&[3, 1, 0, 2])),
    ("permute of [5, 7, 11] then narrow", &[5, 7, 11], |x| x.permute(&[2, 0, 1]).narrow(0, 1, 9)),
    ("broadcast [7] to [5, 3, 7]", &[7], |x| x.broadcast_to(&[5, 3, 7])),
    ("broadcast [5, 1] to [5, 13]", &[5, 1], |x| x.broadcast_to(&[5, 13])),
    ("unsqueeze of a transpose, broadcast", &[3, 4], |x| x.t().unsqueeze(1).broadcast_to(&[4, 2, 3])),
    ("reshape copy of a transpose", &[7, 11], |x| x.t().reshape(&[7, 11])),
    ("empty narrow", &[5, 7], |x| x.narrow(1, 2, 0)),
    ("empty transpose", &[0, 7], |x| x.t()),
];

#[test]
fn contiguous_copies_every_view_exactly() {
    let Some(gpu) = gpu("contiguous_copies_every_view_exactly") else { return };
    for &(name, shape, view) in VIEWS {
        cross_check(
            &format!("contiguous of {name}"),
            &gpu,
            EXACT,
            |d| vec![randn(shape, 1, d)],
            |x| view(&x[0]).contiguous(),
        );
        // The same views of i32 tensors: the copy kernel moves words, whatever the dtype.
        let ints = |d: &Device| {
            let n: usize = shape.iter().product();
            let v: Vec<i32> = (0..n as i32).map(|i| i * 7919 - 5000).collect();
            vec![Tensor::from_slice(&v, shape, d)]
        };
        cross_check(&format!("i32 contiguous of {name}"), &gpu, EXACT, ints, |x| view(&x[0]).contiguous());
    }
}

#[test]
fn cat_joins_along_each_axis() {
    for dev in devices() {
        let a = iota(&[2, 3], &dev);
        let b = &iota(&[2, 2], &dev) + 100.0;
        assert_eq!(
            values(&Tensor::cat(&[a.clone(), b.clone()], 1)),
            vec![0., 1., 2., 100., 101., 3., 4., 5., 102., 103.]
        );
        let c = &iota(&[1, 3], &dev) + 50.0;
        assert_eq!(values(&Tensor::cat(&[a.clone(), c.clone()], 0)), vec![0., 1., 2., 3., 4., 5., 50., 51., 52.]);
        assert_eq!(Tensor::cat(&[a.clone(), c], -2).shape(), &[3, 3]);
        // Transposed inputs, [3, 2] each, joined into a [3, 6] whose rows interleave them.
        let b3 = &iota(&[2, 3], &dev) + 100.0;
        let t = Tensor::cat(&[a.t(), b3.t(), a.t()], 1);
        assert_eq!(t.shape(), &[3, 6]);
        let want = [0., 3., 100., 103., 0., 3., 1., 4., 101., 104., 1., 4., 2., 5., 102., 105., 2., 5.];
        assert_eq!(values(&t), want);
        // i32 tensors keep their values bit for bit.
        let i = Tensor::from_slice(&[1i32, -2, 3], &[3], &dev);
        let j = Tensor::from_slice(&[i32::MAX, i32::MIN], &[2], &dev);
        assert_eq!(Tensor::cat(&[i, j], 0).to_vec::<i32>(), vec![1, -2, 3, i32::MAX, i32::MIN]);
        // Empty parts contribute nothing.
        let e = iota(&[2, 0], &dev);
        assert_eq!(values(&Tensor::cat(&[e.clone(), a.clone(), e], 1)), values(&a));
    }
}

#[test]
fn cat_and_stack_cross_check_on_views() {
    let Some(gpu) = gpu("cat_and_stack_cross_check_on_views") else { return };
    // Parts of [5, 7, 11]-like shapes, one of them transposed, one narrowed, one broadcast.
    let parts = |d: &Device, axis: usize| {
        let mut a = [5, 7, 11];
        a[axis] = 3;
        let mut b = [5, 7, 11];
        b[axis] = 4;
        let mut c = [5, 7, 11];
        c[axis] = 1;
        let first = randn(&a, 1, d);
        // The same shape as `b`, built as a permuted view of a differently ordered tensor.
        let second = randn(&[b[2], b[0], b[1]], 2, d).permute(&[1, 2, 0]);
        let third = randn(&c[axis..=axis], 3, d);
        let third = if axis == 2 { third.broadcast_to(&c) } else { randn(&c, 4, d) };
        vec![first, second, third]
    };
    for axis in 0..3 {
        cross_check(
            &format!("cat along axis {axis}"),
            &gpu,
            EXACT,
            |d| parts(d, axis),
            |x| Tensor::cat(x, axis as isize),
        );
    }
    for axis in 0..=2 {
        cross_check(
            &format!("stack along axis {axis}"),
            &gpu,
            EXACT,
            |d| vec![randn(&[45, 65], 5, d), randn(&[65, 45], 6, d).t(), randn(&[65], 7, d).broadcast_to(&[45, 65])],
            |x| Tensor::stack(x, axis),
        );
    }
    cross_check(
        "cat of i32 views",
        &gpu,
        EXACT,
        |d| {
            let v: Vec<i32> = (0..35).map(|i| i * 31 - 500).collect();
            let t = Tensor::from_slice(&v, &[5, 7], d);
            vec![t.narrow(1, 2, 5), t.t().narrow(0, 1, 5)]
        },
        |x| Tensor::cat(x, 1),
    );
    cross_check(
        "cat with empty parts",
        &gpu,
        EXACT,
        |d| vec![randn(&[0, 4], 8, d), randn(&[3, 4], 9, d), randn(&[0, 4], 10, d)],
        |x| Tensor::cat(x, 0),
    );
    cross_check(
        "cat of scalars' unsqueezed views",
        &gpu,
        EXACT,
        |d| vec![Tensor::scalar(1.0, d).unsqueeze(0), Tensor::scalar(2.0, d).unsqueeze(0)],
        |x| Tensor::cat(x, 0),
    );
}

#[test]
fn stack_adds_an_axis() {
    for dev in devices() {
        let a = iota(&[2, 3], &dev);
        let b = &a + 10.0;
        let s0 = Tensor::stack(&[a.clone(), b.clone()], 0);
        assert_eq!(s0.shape(), &[2, 2, 3]);
        assert_eq!(values(&s0), [values(&a), values(&b)].concat());
        let s2 = Tensor::stack(&[a.clone(), b.clone()], 2);
        assert_eq!(s2.shape(), &[2, 3, 2]);
        assert_eq!(values(&s2), vec![0., 10., 1., 11., 2., 12., 3., 13., 4., 14., 5., 15.]);
    }
}

#[test]
fn index_select_and_gather_with_repeated_indices() {
    for dev in devices() {
        let x = iota(&[3, 4], &dev);
        let rows = Tensor::from_slice(&[2i32, 0, 2, 2], &[4], &dev);
        let want = [8., 9., 10., 11., 0., 1., 2., 3., 8., 9., 10., 11., 8., 9., 10., 11.];
        assert_eq!(values(&x.index_select(0, &rows)), want);
        let cols = Tensor::from_slice(&[3i32, 3, 0], &[3], &dev);
        assert_eq!(values(&x.index_select(1, &cols)), vec![3., 3., 0., 7., 7., 4., 11., 11., 8.]);
        assert_eq!(values(&x.index_select(-1, &cols)), vec![3., 3., 0., 7., 7., 4., 11., 11., 8.]);
        // From a transposed source: rows of x.t() are columns of x.
        assert_eq!(values(&x.t().index_select(0, &cols)), vec![3., 7., 11., 3., 7., 11., 0., 4., 8.]);
        // gather along axis 1: out[i][j] = x[i][index[i][j]].
        let idx = Tensor::from_slice(&[1i32, 1, 3, 0, 0, 0], &[3, 2], &dev);
        assert_eq!(values(&x.gather(1, &idx)), vec![1., 1., 7., 4., 8., 8.]);
        // gather along axis 0 with an index narrower than the input: out[i][j] = x[index[i][j]][j].
        let idx0 = Tensor::from_slice(&[2i32, 0, 1, 2, 2, 2], &[2, 3], &dev);
        assert_eq!(values(&x.gather(0, &idx0)), vec![8., 1., 6., 8., 9., 10.]);
        // Empty index: empty result.
        let none = Tensor::from_slice::<i32>(&[], &[0], &dev);
        assert_eq!(x.index_select(1, &none).shape(), &[3, 0]);
    }
}

#[test]
fn index_ops_cross_check_on_views_and_large_outputs() {
    let Some(gpu) = gpu("index_ops_cross_check_on_views_and_large_outputs") else { return };
    let idx = |n: usize, len: usize, d: &Device| {
        let v: Vec<i32> = (0..n).map(|i| ((i * 7 + i / 3) % len) as i32).collect();
        Tensor::from_slice(&v, &[n], d)
    };
    for axis in 0..3 {
        let label = format!("index_select along axis {axis} of a permuted view");
        cross_check(
            &label,
            &gpu,
            EXACT,
            |d| {
                let x = randn(&[7, 11, 5], 1, d).permute(&[2, 0, 1]); // [5, 7, 11]
                let len = x.shape()[axis];
                vec![x, idx(9, len, d)]
            },
            |x| x[0].index_select(axis as isize, &x[1]),
        );
    }
    // Indices given as a narrowed view (an offset into the index buffer).
    cross_check(
        "index_select with offset indices, 3000 outputs",
        &gpu,
        EXACT,
        |d| vec![randn(&[300, 13], 2, d), idx(250, 300, d).narrow(0, 20, 230)],
        |x| x[0].index_select(0, &x[1]),
    );
    for axis in 0..2 {
        cross_check(
            &format!("gather along axis {axis}"),
            &gpu,
            EXACT,
            |d| {
                let x = randn(&[13, 45], 3, d).narrow(1, 4, 40); // [13, 40], strided
                let shape = [11, 37];
                let len = x.shape()[axis];
                let v: Vec<i32> = (0..11 * 37).map(|i| ((i * 13 + 5) % len) as i32).collect();
                vec![x, Tensor::from_slice(&v, &shape, d)]
            },
            |x| x[0].gather(axis as isize, &x[1]),
        );
    }
    cross_check(
        "gather with offset indices",
        &gpu,
        EXACT,
        |d| {
            // Rows 2..13 of a [13, 37] index tensor: contiguous, starting 74 elements in.
            let v: Vec<i32> = (0..13 * 37).map(|i| (i * 5 + 3) % 11).collect();
            vec![randn(&[11, 40], 5, d), Tensor::from_slice(&v, &[13, 37], d).narrow(0, 2, 11)]
        },
        |x| x[0].gather(1, &x[1]),
    );
    cross_check(
        "gather from a transposed source",
        &gpu,
        EXACT,
        |d| vec![randn(&[9, 6], 4, d).t(), Tensor::from_slice(&[8i32, 0, 8, 3, 3, 1], &[2, 3], d)],
        |x| x[0].gather(1, &x[1]),
    );
}

#[test]
fn gpu_gather_of_an_out_of_range_index_is_nan() {
    // A kernel cannot panic; the documented result is a loud NaN.
    let Some(gpu) = gpu("gpu_gather_of_an_out_of_range_index_is_nan") else { return };
    let x = iota(&[2, 3], &gpu);
    let idx = Tensor::from_slice(&[0i32, 3, -1], &[1, 3], &gpu);
    let v = values(&x.gather(1, &idx));
    assert_eq!(v[0], 0.0);
    assert!(v[1].is_nan() && v[2].is_nan(), "{v:?}");
}

#[test]
fn to_device_round_trips_are_exact() {
    let Some(gpu) = gpu("to_device_round_trips_are_exact") else { return };
    let cpu = Device::cpu();
    let x = Tensor::randn(&[13, 45], 1, &cpu);
    let back = x.to_device(&gpu).to_device(&cpu);
    assert_eq!(back.to_vec::<f32>(), x.to_vec::<f32>());
    // A view travels as its elements, in row-major order.
    let v = x.t().narrow(0, 3, 20);
    let back = v.to_device(&gpu).to_device(&cpu);
    assert_eq!(back.shape(), &[20, 13]);
    assert_eq!(back.to_vec::<f32>(), v.to_vec::<f32>());
    // i32, special floats, scalars and empty tensors.
    let ints = Tensor::from_slice(&[i32::MIN, -1, 0, 1, i32::MAX], &[5], &cpu);
    assert_eq!(ints.to_device(&gpu).to_device(&cpu).to_vec::<i32>(), ints.to_vec::<i32>());
    let special = [f32::NAN, f32::INFINITY, -0.0, f32::MIN_POSITIVE / 4.0, f32::MAX];
    let s: Vec<f32> = Tensor::from_slice(&special, &[5], &cpu).to_device(&gpu).to_vec();
    assert_eq!(
        s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        special.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(Tensor::scalar(3.5, &cpu).to_device(&gpu).item(), 3.5);
    assert_eq!(Tensor::zeros(&[0, 3], &cpu).to_device(&gpu).to_device(&cpu).shape(), &[0, 3]);
    // GPU views to the CPU.
    let g = iota(&[4, 6], &gpu).t().narrow(1, 1, 2);
    assert_eq!(g.to_device(&cpu).to_vec::<f32>(), iota(&[4, 6], &cpu).t().narrow(1, 1, 2).to_vec::<f32>());
}

#[test]
fn creation_ops_match_their_definitions() {
    for dev in devices() {
        assert_eq!(Tensor::arange(0.0, 10.0, 3.0, &dev).to_vec::<f32>(), vec![0.0, 3.0, 6.0, 9.0]);
        assert_eq!(Tensor::arange(5.0, 0.0, -1.5, &dev).to_vec::<f32>(), vec![5.0, 3.5, 2.0, 0.5]);
        assert_eq!(Tensor::arange(2.0, 2.0, 1.0, &dev).shape(), &[0]);
        let long: Vec<f32> = Tensor::arange(0.0, 1000.0, 1.0, &dev).to_vec();
        assert!(long.iter().enumerate().all(|(i, &v)| v == i as f32));
        assert_eq!(Tensor::eye(3, 3, &dev).to_vec::<f32>(), vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]);
        assert_eq!(Tensor::eye(2, 4, &dev).to_vec::<f32>(), vec![1., 0., 0., 0., 0., 1., 0., 0.]);
        assert_eq!(Tensor::eye(4, 2, &dev).to_vec::<f32>(), vec![1., 0., 0., 1., 0., 0., 0., 0.]);
        assert_eq!(Tensor::eye(1, 1, &dev).to_vec::<f32>(), vec![1.0]);
        assert_eq!(Tensor::eye(0, 3, &dev).shape(), &[0, 3]);
        assert_eq!(Tensor::eye(3, 0, &dev).numel(), 0);
        assert_eq!(Tensor::full(&[2, 3], -7.25, &dev).to_vec::<f32>(), vec![-7.25; 6]);
        assert_eq!(Tensor::full(&[], 4.0, &dev).item(), 4.0);
        assert_eq!(Tensor::full(&[3, 0], 1.0, &dev).numel(), 0);
        assert_eq!(Tensor::ones(&[2], &dev).to_vec::<f32>(), vec![1.0, 1.0]);
        assert_eq!(Tensor::zeros(&[2], &dev).to_vec::<f32>(), vec![0.0, 0.0]);
        let u: Vec<f32> = Tensor::rand_uniform(&[5000], -2.0, 3.0, 7, &dev).to_vec();
        assert!(u.iter().all(|&v| (-2.0..3.0).contains(&v)), "uniform samples outside [-2, 3)");
        let mean = u.iter().map(|&v| v as f64).sum::<f64>() / u.len() as f64;
        assert!((mean - 0.5).abs() < 0.1, "uniform [-2, 3) mean {mean}");
    }
}

#[test]
fn creation_ops_cross_check_across_workgroups() {
    let Some(gpu) = gpu("creation_ops_cross_check_across_workgroups") else { return };
    type Make = fn(&Device) -> Tensor;
    let cases: [(&str, Make); 8] = [
        ("full [45, 65]", |d| Tensor::full(&[45, 65], 0.1, d)),
        ("full []", |d| Tensor::full(&[], -3.0, d)),
        ("arange of 2925 with a step of 0.37", |d| Tensor::arange(-100.0, 982.25, 0.37, d)),
        ("eye [13, 45]", |d| Tensor::eye(13, 45, d)),
        ("eye [70, 3]", |d| Tensor::eye(70, 3, d)),
        // The same seed gives the same bits, across many workgroups and any range.
        ("rand_uniform [5000]", |d| Tensor::rand_uniform(&[5000], 0.0, 1.0, 42, d)),
        ("rand_uniform [7, 11, 13] in [-2, 3)", |d| Tensor::rand_uniform(&[7, 11, 13], -2.0, 3.0, u64::MAX, d)),
        ("rand [1]", |d| Tensor::rand(&[1], 0, d)),
    ];
    for (name, make) in cases {
        cross_check(name, &gpu, EXACT, |d| vec![Tensor::scalar(0.0, d)], |x| make(x[0].device()));
    }
    cross_check(
        "randn [5000]",
        &gpu,
        RANDN_TOL,
        |d| vec![Tensor::scalar(0.0, d)],
        |x| Tensor::randn(&[5000], 42, x[0].device()),
    );
}

#[test]
fn different_seeds_give_different_numbers() {
    for dev in devices() {
        let a: Vec<f32> = Tensor::rand(&[1000], 1, &dev).to_vec();
        let b: Vec<f32> = Tensor::rand(&[1000], 2, &dev).to_vec();
        let c: Vec<f32> = Tensor::rand(&[1000], 1 << 32, &dev).to_vec();
        let same = |x: &[f32], y: &[f32]| x.iter().zip(y).filter(|(p, q)| p == q).count();
        // Two independent 24-bit uniforms collide with probability 2^-24.
        assert!(same(&a, &b) <= 1, "seeds 1 and 2 share {} of 1000 values", same(&a, &b));
        assert!(same(&a, &c) <= 1, "seeds 1 and 2^32 (high bits only) share {} values", same(&a, &c));
        let again: Vec<f32> = Tensor::rand(&[1000], 1, &dev).to_vec();
        assert_eq!(a, again, "the same seed must give the same numbers");
        // Neighbouring elements are not copies of each other either.
        assert!(same(&a[1..], &a[..999]) <= 1);
        let n1: Vec<f32> = Tensor::randn(&[1000], 1, &dev).to_vec();
        let n2: Vec<f32> = Tensor::randn(&[1000], 2, &dev).to_vec();
        assert!(same(&n1, &n2) <= 1);
    }
}

#[test]
fn randn_has_mean_zero_and_std_one() {
    for dev in devices() {
        let v: Vec<f32> = Tensor::randn(&[10_000], 123, &dev).to_vec();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        // Standard errors: 0.01 for the mean, about 0.007 for the std; five of them allowed.
        assert!(mean.abs() < 0.05, "randn mean {mean}");
        assert!((std - 1.0).abs() < 0.035, "randn std {std}");
        assert!(v.iter().all(|x| x.is_finite()));
        let inside = v.iter().filter(|x| x.abs() < 1.0).count() as f64 / n;
        assert!((inside - 0.6827).abs() < 0.025, "{inside} of samples within one std, expected 0.683");
        let w: Vec<f32> = Tensor::normal(&[10_000], 5.0, 0.5, 9, &dev).to_vec();
        let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        assert!((mean - 5.0).abs() < 0.025 && (std - 0.5).abs() < 0.02, "normal(5, 0.5): mean {mean}, std {std}");
    }
}

#[test]
#[should_panic(expected = "reshape: cannot view a tensor of shape [2, 3] (6 elements) as [4, 2]")]
fn reshape_element_count_mismatch() {
    let _ = Tensor::zeros(&[2, 3], &Device::cpu()).reshape(&[4, 2]);
}

#[test]
#[should_panic(expected = "cat: shapes [[2, 3], [2, 4]] disagree outside axis 0")]
fn cat_shape_mismatch() {
    let d = Device::cpu();
    let _ = Tensor::cat(&[Tensor::zeros(&[2, 3], &d), Tensor::zeros(&[2, 4], &d)], 0);
}

#[test]
#[should_panic(expected = "cat: mixed dtypes f32 and i32")]
fn cat_of_mixed_dtypes() {
    let d = Device::cpu();
    let _ = Tensor::cat(&[Tensor::zeros(&[2], &d), Tensor::from_slice(&[1i32], &[1], &d)], 0);
}

#[test]
#[should_panic(expected = "stack: all tensors need one shape, got [[2, 3], [3, 2]]")]
fn stack_shape_mismatch() {
    let d = Device::cpu();
    let _ = Tensor::stack(&[Tensor::zeros(&[2, 3], &d), Tensor::zeros(&[3, 2], &d)], 0);
}

#[test]
#[should_panic(expected = "broadcast_to: shape [3, 2] cannot be broadcast to [3, 4]")]
fn broadcast_to_an_incompatible_shape() {
    let _ = Tensor::zeros(&[3, 2], &Device::cpu()).broadcast_to(&[3, 4]);
}

#[test]
#[should_panic(expected = "narrow: 2..6 is out of range for axis 1 of shape [3, 5]")]
fn narrow_out_of_range() {
    let _ = Tensor::zeros(&[3, 5], &Device::cpu()).narrow(1, 2, 4);
}

#[test]
#[should_panic(expected = "squeeze: axis 0 of shape [3, 1] does not have size 1")]
fn squeeze_of_a_real_axis() {
    let _ = Tensor::zeros(&[3, 1], &Device::cpu()).squeeze(0);
}

#[test]
#[should_panic(expected = "permute: [0, 0] is not a permutation of the axes of a tensor of shape [3, 1]")]
fn permute_with_a_repeated_axis() {
    let _ = Tensor::zeros(&[3, 1], &Device::cpu()).permute(&[0, 0]);
}

#[test]
#[should_panic(expected = "index_select: index 5 is out of range for axis 0 of size 5")]
fn index_select_out_of_range_on_the_cpu() {
    let d = Device::cpu();
    let _ = Tensor::zeros(&[5, 2], &d).index_select(0, &Tensor::from_slice(&[0i32, 5], &[2], &d));
}

#[test]
#[should_panic(expected = "gather: expected a i32 tensor, got f32 of shape [2, 2]")]
fn gather_with_float_indices() {
    let d = Device::cpu();
    let _ = Tensor::zeros(&[2, 2], &d).gather(0, &Tensor::zeros(&[2, 2], &d));
}

#[test]
#[should_panic(expected = "gather: index of shape [3, 2] does not fit input of shape [2, 2] along axis 1")]
fn gather_with_an_index_too_large() {
    let d = Device::cpu();
    let _ = Tensor::zeros(&[2, 2], &d).gather(1, &Tensor::from_slice(&[0i32; 6], &[3, 2], &d));
}
