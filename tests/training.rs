//! End-to-end training: a small MLP on real MNIST digits, the same steps on the CPU and
//! on the GPU device from the same seed.

use wgrad::data::{DataLoader, Mnist};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Adam, Optimizer};
use wgrad::testing::gpu_test_device;
use wgrad::{loss, Device};

/// The losses of `steps` Adam steps of a 784-32-10 MLP, with weights from seed 7 and the
/// first batches of the built-in training set in a fixed order.
fn losses(dev: &Device, steps: usize) -> Vec<f32> {
    let data = Mnist::builtin().expect("the built-in data set loads");
    let model = nn::Sequential::new()
        .add(nn::Linear::with_seed(784, 32, true, 7, dev))
        .add(nn::ReLU)
        .add(nn::Linear::with_seed(32, 10, true, 8, dev));
    let mut opt = Adam::new(model.parameters(), 3e-3);
    let mut loader = DataLoader::new(&data.train, 32).shuffle(3);
    let mut out = Vec::new();
    for (images, labels) in loader.epoch(dev).take(steps) {
        let loss = loss::cross_entropy(&model.forward(&images.flatten_from(1)), &labels);
        let grads = loss.backward();
        opt.step(&grads);
        out.push(loss.item());
    }
    out
}

#[test]
fn an_mlp_learns_and_the_gpu_follows_the_cpu_step_by_step() {
    let steps = 25;
    let cpu = losses(&Device::cpu(), steps);
    // The loss falls: the last five steps average well below the first (ln 10 = 2.30).
    let head: f32 = cpu[..5].iter().sum::<f32>() / 5.0;
    let tail: f32 = cpu[steps - 5..].iter().sum::<f32>() / 5.0;
    assert!(head > 1.9 && tail < 0.75 * head, "the loss did not fall: {cpu:?}");
    let Some(gpu) = gpu_test_device() else { return };
    let on_gpu = losses(&gpu, steps);
    // Rounding differences (matmul summation order, exp/log ulps) grow slowly over steps;
    // a wrong gradient or update would differ at the first step already.
    for (i, (c, g)) in cpu.iter().zip(&on_gpu).enumerate() {
        assert!(
            (c - g).abs() <= 1e-3 + 1e-3 * c.abs(),
            "step {i}: CPU loss {c}, GPU loss {g}\ncpu {cpu:?}\ngpu {on_gpu:?}"
        );
    }
}
