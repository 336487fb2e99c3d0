//! Random numbers, of two kinds.
//!
//! The counter-based generator shared by the CPU backend and `creation.wgsl`: element `i`
//! of a random tensor depends only on `i` and the seed, never on how the work is split, so
//! the same seed gives the same uniform bits on every device. Normal samples go through
//! `log` and `cos`, whose last bits differ between GPUs, so they agree to about 1e-6 rather
//! than bit for bit.
//!
//! The sequential [`Generator`] for the host: the data loader's shuffles, `random_split`,
//! `Tensor::randperm` and the augmentation transforms. It is written out here rather than
//! taken from a dependency, because the order of a training run must not change when a
//! crate's algorithm does: the same seed gives the same permutation on every machine and in
//! every version. SplitMix64 (Steele, Lea and Flood, 2014; the seeder of Java's
//! `SplittableRandom` and of xoshiro) passes BigCrush and needs one word of state, which is
//! what makes saving and restoring it trivial; Lemire's multiply-and-reject (2019) turns
//! its output into an unbiased index without a division on the common path.

/// Chris Wellons' lowbias32 integer hash (also in `shaders/creation.wgsl`).
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The two 32-bit keys a 64-bit seed expands to.
pub fn seed_keys(seed: u64) -> (u32, u32) {
    let lo = seed as u32;
    let hi = (seed >> 32) as u32;
    let key0 = hash32(lo ^ 0x9e37_79b9);
    let key1 = hash32(hi ^ key0 ^ 0x85eb_ca6b);
    (key0, key1)
}

/// Two independent 32-bit draws for counter `i`.
pub fn random_pair(i: u32, keys: (u32, u32)) -> (u32, u32) {
    let h = hash32(i ^ keys.0);
    (hash32(h.wrapping_add(keys.1)), hash32(h ^ 0x68e3_1da4).wrapping_add(keys.0))
}

/// Uniform in `[0, 1)` from the top 24 bits.
pub fn unit_float(bits: u32) -> f32 {
    (bits >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Element `i` of a uniform `[low, high)` tensor drawn with `keys`.
pub fn uniform_at(i: u32, keys: (u32, u32), low: f32, high: f32) -> f32 {
    low + (high - low) * unit_float(random_pair(i, keys).0)
}

/// Element `i` of a normal tensor drawn with `keys` (Box-Muller, as in the kernel).
pub fn normal_at(i: u32, keys: (u32, u32), mean: f32, std: f32) -> f32 {
    let (r0, r1) = random_pair(i, keys);
    let u1 = ((r0 >> 8) + 1) as f32 * (1.0 / 16_777_216.0);
    let u2 = unit_float(r1);
    let z = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
    mean + std * z
}

/// A seeded random generator for host-side choices (SplitMix64), in the role of
/// `torch.Generator`: shuffles, permutations and splits of data sets draw from it.
///
/// Its whole state is one `u64`: [`state`](Generator::state) saves it and
/// [`from_state`](Generator::from_state) restores it, so a resumed run draws exactly what
/// the interrupted one would have drawn next.
///
/// ```
/// use wgrad::Generator;
/// let mut g = Generator::new(42);
/// let first = g.permutation(5);
/// let saved = g.state();
/// let second = g.permutation(5);
/// // Later, perhaps in another process: the same draws from the saved state.
/// assert_eq!(Generator::from_state(saved).permutation(5), second);
/// assert_eq!(Generator::new(42).permutation(5), first);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Generator {
    state: u64,
}

impl Generator {
    const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    /// A generator seeded with `seed`, as `torch.Generator().manual_seed(seed)` (though the
    /// numbers are SplitMix64's, not PyTorch's Mersenne Twister's).
    ///
    /// ```
    /// let mut g = wgrad::Generator::new(7);
    /// assert_ne!(g.next_u64(), g.next_u64());
    /// ```
    pub fn new(seed: u64) -> Generator {
        Generator { state: seed }
    }

    /// The generator the [`DataLoader`](crate::data::DataLoader) shuffles epoch `epoch`
    /// with when seeded with `seed`. The epoch goes through the mixer before it meets the
    /// seed, so neighbouring epochs (and neighbouring seeds) start from unrelated states.
    ///
    /// ```
    /// use wgrad::data::{DataLoader, InMemoryDataset};
    /// use wgrad::Generator;
    /// let data = InMemoryDataset::new(vec![0.0; 10], &[1], vec![0; 10]);
    /// let loader = DataLoader::new(&data, 4).shuffle(3);
    /// assert_eq!(loader.order(2), Generator::for_epoch(3, 2).permutation(10));
    /// ```
    pub fn for_epoch(seed: u64, epoch: u64) -> Generator {
        Generator::new(seed ^ mix64(epoch.wrapping_add(Self::GOLDEN_GAMMA)))
    }

    /// Restores a generator from a [`state`](Generator::state) saved earlier. A state is a
    /// seed too: `from_state(s)` and `new(s)` are the same generator.
    ///
    /// ```
    /// use wgrad::Generator;
    /// let mut g = Generator::new(1);
    /// g.next_u64();
    /// let mut resumed = Generator::from_state(g.state());
    /// assert_eq!(resumed.next_u64(), g.next_u64());
    /// ```
    pub fn from_state(state: u64) -> Generator {
        Generator { state }
    }

    /// The generator's whole state, to save beside a checkpoint (as
    /// `torch.Generator.get_state`).
    ///
    /// ```
    /// assert_eq!(wgrad::Generator::new(5).state(), 5);
    /// ```
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The next 64 uniform random bits.
    ///
    /// ```
    /// // The published test vector of SplitMix64 for seed 1234567.
    /// assert_eq!(wgrad::Generator::new(1_234_567).next_u64(), 6_457_827_717_110_365_317);
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// A uniform integer in `0..n`, without modulo bias (Lemire's method). Panics when `n`
    /// is zero.
    ///
    /// ```
    /// let mut g = wgrad::Generator::new(9);
    /// assert!((0..100).all(|_| g.below(6) < 6));
    /// ```
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Generator::below: the range 0..0 is empty");
        let mut wide = u128::from(self.next_u64()) * u128::from(n);
        let mut low = wide as u64;
        if low < n {
            // 2^64 mod n: the low words below it belong to an incomplete last block.
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                wide = u128::from(self.next_u64()) * u128::from(n);
                low = wide as u64;
            }
        }
        (wide >> 64) as u64
    }

    /// Shuffles `items` in place with the Fisher-Yates (Durstenfeld) algorithm: every
    /// permutation is equally likely.
    ///
    /// ```
    /// let mut items = ['a', 'b', 'c', 'd'];
    /// wgrad::Generator::new(3).shuffle(&mut items);
    /// let mut sorted = items;
    /// sorted.sort();
    /// assert_eq!(sorted, ['a', 'b', 'c', 'd']);
    /// ```
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// A uniformly random permutation of `0..n` (as `torch.randperm(n, generator=g)`):
    /// the identity shuffled by [`shuffle`](Generator::shuffle).
    ///
    /// ```
    /// let mut p = wgrad::Generator::new(11).permutation(6);
    /// p.sort();
    /// assert_eq!(p, [0, 1, 2, 3, 4, 5]);
    /// ```
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        self.shuffle(&mut order);
        order
    }
}

/// SplitMix64's output function (a variant of MurmurHash3's finaliser).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

use std::cell::Cell;

thread_local! {
    /// The seed stream layers draw from when no seed is given: (seed, draws so far).
    static SEED_STREAM: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Restarts this thread's stream of initialisation seeds, as `torch.manual_seed`: layers
/// created afterwards in the same order get the same weights.
pub fn manual_seed(seed: u64) {
    SEED_STREAM.with(|s| s.set((seed, 0)));
}

/// The next seed of this thread's stream (SplitMix64 of the seed and a counter).
pub fn next_seed() -> u64 {
    SEED_STREAM.with(|s| {
        let (seed, n) = s.get();
        s.set((seed, n + 1));
        mix64(seed.wrapping_add((n + 1).wrapping_mul(Generator::GOLDEN_GAMMA)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs for seed 1234567: the published test vector of the reference
    /// algorithm (Vigna's `splitmix64.c`; Rosetta Code's "Pseudo-random numbers/Splitmix64").
    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        let mut rng = Generator::new(1_234_567);
        let got: Vec<u64> = (0..5).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
    }

    #[test]
    fn below_stays_in_range_and_reaches_every_value() {
        let mut rng = Generator::new(7);
        for n in [1u64, 2, 3, 7, 10, 1000] {
            let mut seen = vec![false; n as usize];
            for _ in 0..20 * n {
                let v = rng.below(n);
                assert!(v < n, "below({n}) gave {v}");
                seen[v as usize] = true;
            }
            assert!(seen.iter().all(|&s| s), "below({n}) missed a value in {} draws", 20 * n);
        }
    }
}
