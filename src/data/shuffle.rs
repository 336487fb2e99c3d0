//! The data loader's shuffle: Fisher-Yates driven by SplitMix64.
//!
//! A small generator written out here rather than a dependency, because the order of a
//! training run must not change when a crate's algorithm does: the same seed and epoch give
//! the same permutation on every machine and in every version. SplitMix64 (Steele, Lea and
//! Flood, 2014; the seeder of Java's `SplittableRandom` and of xoshiro) passes BigCrush and
//! needs one word of state; Lemire's multiply-and-reject (2019) turns its output into an
//! unbiased index without a division on the common path.

/// SplitMix64: a 64-bit counter passed through a strong bijective mixer.
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The generator for one epoch of a loader seeded with `seed`. The epoch goes through
    /// the mixer before it meets the seed, so neighbouring epochs (and neighbouring seeds)
    /// start from unrelated states.
    pub(crate) fn for_epoch(seed: u64, epoch: u64) -> SplitMix64 {
        SplitMix64::new(seed ^ mix64(epoch.wrapping_add(Self::GOLDEN_GAMMA)))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// A uniform integer in `0..n` (`n > 0`), without modulo bias (Lemire's method).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
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
}

/// SplitMix64's output function (a variant of MurmurHash3's finaliser).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Shuffles `items` in place with the Fisher-Yates (Durstenfeld) algorithm: every
/// permutation is equally likely when `rng` is uniform.
pub(crate) fn fisher_yates<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs for seed 1234567: the published test vector of the reference
    /// algorithm (Vigna's `splitmix64.c`; Rosetta Code's "Pseudo-random numbers/Splitmix64").
    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        let mut rng = SplitMix64::new(1_234_567);
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
        let mut rng = SplitMix64::new(7);
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
