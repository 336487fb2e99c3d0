//! Dropout with masks drawn on the device.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Forward, Module, Visitor, VisitorMut};
use crate::{random, Tensor};

/// Zeroes each element with probability `p` during training and scales the survivors
/// by `1 / (1 - p)`; the identity in evaluation mode, as `torch.nn.Dropout`. The mask is
/// drawn on the input's device from the layer's seed and a call counter, so a run is
/// reproducible and no mask crosses the bus.
pub struct Dropout {
    p: f32,
    seed: u64,
    calls: AtomicU64,
    training: bool,
}

impl Dropout {
    /// Seeded from this thread's seed stream (see [`crate::manual_seed`]).
    pub fn new(p: f32) -> Dropout {
        Dropout::with_seed(p, random::next_seed())
    }

    pub fn with_seed(p: f32, seed: u64) -> Dropout {
        assert!((0.0..=1.0).contains(&p), "Dropout: probability {p} is not in [0, 1]");
        Dropout { p, seed, calls: AtomicU64::new(0), training: true }
    }
}

impl Module for Dropout {
    fn visit(&self, v: &mut Visitor<'_>) {
        v.random_stream("rng", &self.calls);
    }

    fn visit_mut(&mut self, _v: &mut VisitorMut<'_>) {}

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn is_training(&self) -> bool {
        self.training
    }

    fn describe(&self) -> String {
        format!("Dropout(p={})", self.p)
    }
}

impl Forward for Dropout {
    fn forward(&self, x: &Tensor) -> Tensor {
        if !self.training || self.p == 0.0 {
            return x.clone();
        }
        if self.p == 1.0 {
            return x.mul_scalar(0.0);
        }
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let seed = self.seed ^ random::hash32(call as u32) as u64 ^ (call << 32);
        let keep = crate::no_grad(|| {
            let u = Tensor::rand(x.shape(), seed, x.device());
            u.ge(&Tensor::scalar(self.p, x.device())).mul_scalar(1.0 / (1.0 - self.p))
        });
        x.mul(&keep)
    }
}
