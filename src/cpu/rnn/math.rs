//! The fast f32 math of the cells: `exp`, `sigmoid` and `tanh` as branch-free
//! polynomials that vectorise, and the AVX2 build the cell loops run in.

/// `e^x` in f32 as `2^k * e^r` (`k` an integer, `|r| <= ln(2)/2`), with Cephes' `expf`
/// reduction (`ln 2` split in two so that `r` is nearly exact) and its degree-7 minimax
/// polynomial for `e^r`: within 1 ulp of the correctly rounded value everywhere. All in
/// f32 and branch-free, so the cell loops that call it vectorise 8 or 16 lanes wide;
/// the platform's `expf` is a call per element.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Past these bounds e^x is zero or infinite in f32; the clamp keeps 2^k's two factors
    // normal. NaN fails both comparisons and passes through to the polynomial.
    let x = clamp(x, -104.0, 89.0);
    // Adding 1.5 * 2^23 rounds x / ln 2 to the nearest integer k (|k| <= 150), which lands
    // in the low mantissa bits: `shifted - SHIFT` is k as a float, and the difference of
    // the two bit patterns is k as an integer (no float-to-int conversion, which would
    // keep the loop from vectorising).
    const SHIFT: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + SHIFT;
    let kf = shifted - SHIFT;
    let k = shifted.to_bits().wrapping_sub(SHIFT.to_bits()) as i32;
    let r = (x - kf * 0.693_359_4) + kf * 2.121_944_4e-4;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 5.0e-1)
        * z
        + r
        + 1.0;
    // 2^k as two factors, each a normal f32, so that k from -150 to 128 works.
    let (k1, k2) = (k >> 1, k - (k >> 1));
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    p * pow2(k1) * pow2(k2)
}

/// `x` limited to `[lo, hi]`, NaN passed through, as two compare-and-selects (which
/// vectorise, where `f32::clamp`'s NaN handling may not).
#[inline(always)]
fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x < lo { lo } else { x };
    if x > hi {
        hi
    } else {
        x
    }
}

/// The logistic function as rnn.wgsl writes it: `1 / (1 + e^-x)` for `x >= 0` and
/// `e^x / (1 + e^x)` below, so that neither side overflows. Both sides are computed and
/// one is selected, which keeps the cell loops branch-free.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    // One division for both sides: e / (1 + e) as e * (1 / (1 + e)) costs one more
    // rounding (within 2 ulp in all), where a second division would cost several times
    // the rest of the function.
    let positive = 1.0 / (1.0 + e);
    let negative = e * positive;
    if x >= 0.0 {
        positive
    } else {
        negative
    }
}

/// `tanh`, clamped to `[-10, 10]` as rnn.wgsl does (where some back-ends overflow; the
/// result is ±1 in f32 there anyway); NaN passes through.
///
/// Computed as Cephes' `tanhf`: `1 - 2 / (exp(2|x|) + 1)` with the sign of `x` from
/// |x| = 0.625 on, and below it an odd polynomial with Cephes' minimax coefficients, which
/// avoids the cancellation of the first form near zero. Within 1 ulp of the exact value
/// over [-10, 10] (tests/rnn.rs checks it against f64). Both forms are computed and one is
/// selected, so the loops that call it vectorise; the platform's `tanhf` would otherwise
/// dominate a cell step on the CPU.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let x = clamp(x, -10.0, 10.0);
    let a = x.abs();
    let large = (1.0 - 2.0 / (exp(a + a) + 1.0)).copysign(x);
    let z = x * x;
    let p = (((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z - 3.333_328e-1;
    let small = p * z * x + x;
    // NaN fails the comparison and takes the polynomial, which keeps it NaN.
    if a >= 0.625 {
        large
    } else {
        small
    }
}

/// Runs `f`, on x86-64 CPUs with AVX2 compiled for AVX2 so that the cell loops inlined into
/// it run 8 floats wide instead of 4. The arithmetic is the same IEEE operations either
/// way (no FMA contraction), so the results are bit-identical. (An AVX-512 build as a
/// third choice here was measured slower: with three call sites the compiler stops
/// inlining the cell loops into them. The whole-sequence LSTM passes have AVX-512 builds
/// of their own, whose bodies are `#[inline(always)]` and so always compiled in full.)
#[inline(always)]
pub(super) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { with_avx2(f) };
        }
    }
    f()
}
