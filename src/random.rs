//! The counter-based random generator shared by the CPU backend and `creation.wgsl`.
//!
//! Element `i` of a random tensor depends only on `i` and the seed, never on how the
//! work is split, so the same seed gives the same uniform bits on every device. Normal
//! samples go through `log` and `cos`, whose last bits differ between GPUs, so they agree
//! to about 1e-6 rather than bit for bit.

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
        let mut z = seed.wrapping_add((n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}
