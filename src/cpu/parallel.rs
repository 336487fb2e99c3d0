//! How the CPU kernels share their work between threads.
//!
//! Every parallel kernel splits its *output* into runs of whole units (an element, a row,
//! a plane, a channel) and hands each run to one rayon task, which computes its outputs
//! exactly as the single-threaded loop would: one thread per output element, the same
//! operations in the same order. Results are therefore bit-identical whatever the thread
//! count and however the runs are cut; no kernel combines partial results that depend on
//! the split.
//!
//! Work below [`MIN_PARALLEL_WORK`] stays on the calling thread, where a task handoff
//! (a few microseconds) would cost more than it saves.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Below this many units of work (about one element-operation each) a kernel runs on the
/// calling thread. 32768 element-operations take 10-30 µs on one core, several times the
/// cost of waking the pool.
pub const MIN_PARALLEL_WORK: usize = 1 << 15;

/// Runs of this much work or more are not split further: short enough that two threads
/// stay balanced, long enough that scheduling stays a small fraction of the time.
const MIN_RUN_WORK: usize = 1 << 14;

/// Runs per thread, so that a thread slowed by another process does not hold up the rest.
const RUNS_PER_THREAD: usize = 4;

/// Threads the CPU kernels split their work across: rayon's global pool, sized by
/// `RAYON_NUM_THREADS` or else the number of logical cores.
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Units per run for `units` units of `work_per_unit` each, or `None` when the work is too
/// small to be worth splitting (or only one thread is available).
fn units_per_run(units: usize, work_per_unit: usize) -> Option<usize> {
    let threads = threads();
    let work_per_unit = work_per_unit.max(1);
    if threads <= 1 || units < 2 || units.saturating_mul(work_per_unit) < MIN_PARALLEL_WORK {
        return None;
    }
    let by_balance = units.div_ceil(threads * RUNS_PER_THREAD);
    let by_cost = MIN_RUN_WORK.div_ceil(work_per_unit);
    Some(by_balance.max(by_cost).max(1))
}

/// Calls `f(first_unit, run)` on consecutive runs of `out`, which holds whole units of
/// `unit` elements each, `work_per_unit` being the cost of computing one unit. The runs
/// cover `out` once; they run in parallel when the total work is large enough, else `f`
/// is called once with all of `out`.
pub fn for_each_run<T: Send>(out: &mut [T], unit: usize, work_per_unit: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if unit == 0 || out.is_empty() {
        return f(0, out);
    }
    debug_assert_eq!(out.len() % unit, 0, "for_each_run: the output is not made of whole units");
    match units_per_run(out.len() / unit, work_per_unit) {
        None => f(0, out),
        Some(per_run) => {
            out.par_chunks_mut(per_run * unit).enumerate().for_each(|(i, run)| f(i * per_run, run));
        }
    }
}

/// [`for_each_run`] over two outputs cut at the same units: unit `u` of `a` is
/// `a[u * unit_a..]` and of `b` `b[u * unit_b..]`, and `f(first_unit, a_run, b_run)` gets
/// matching runs of both.
pub fn for_each_run2<A: Send, B: Send>(
    a: &mut [A],
    unit_a: usize,
    b: &mut [B],
    unit_b: usize,
    work_per_unit: usize,
    f: impl Fn(usize, &mut [A], &mut [B]) + Sync,
) {
    let units = a.len().checked_div(unit_a).unwrap_or_else(|| b.len() / unit_b.max(1));
    debug_assert!(unit_a == 0 || unit_b == 0 || a.len() / unit_a == b.len() / unit_b);
    match units_per_run(units, work_per_unit) {
        Some(per_run) if unit_a > 0 && unit_b > 0 => {
            a.par_chunks_mut(per_run * unit_a)
                .zip(b.par_chunks_mut(per_run * unit_b))
                .enumerate()
                .for_each(|(i, (ra, rb))| f(i * per_run, ra, rb));
        }
        _ => f(0, a, b),
    }
}

/// A new vector of `len` elements filled by `f(first, run)` over runs of elements, as
/// [`for_each_run`] with one element per unit. The vector is not zeroed first, which for
/// large outputs saves a pass over memory.
///
/// # Safety
///
/// `f` must initialise every element of every run it is given (the elementwise kernels
/// do, row piece by row piece).
pub(crate) unsafe fn collect_runs<T: Send>(len: usize, f: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync) -> Vec<T> {
    let mut out = Vec::new();
    if out.try_reserve_exact(len).is_err() {
        panic!("{}", super::alloc::out_of_memory("elementwise", len, std::mem::size_of::<T>()));
    }
    for_each_run(&mut out.spare_capacity_mut()[..len], 1, 1, f);
    // SAFETY: the runs cover `0..len` and the caller's `f` initialises all of each run.
    unsafe { out.set_len(len) };
    out
}

/// `[f(0), f(1), .., f(n - 1)]`, each value computed by one thread; `work_per_item` is
/// the cost of one call.
pub fn map_indices<T: Send + Copy + Default>(n: usize, work_per_item: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let mut out = Vec::new();
    if out.try_reserve_exact(n).is_err() {
        panic!("{}", super::alloc::out_of_memory("elementwise", n, std::mem::size_of::<T>()));
    }
    out.resize(n, T::default());
    for_each_run(&mut out, 1, work_per_item, |first, run| {
        for (i, o) in run.iter_mut().enumerate() {
            *o = f(first + i);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_every_unit_once_in_order() {
        // Large enough to be split whenever the pool has two or more threads.
        let units = 3 * MIN_PARALLEL_WORK + 7;
        let mut out = vec![0usize; 2 * units];
        for_each_run(&mut out, 2, 1, |first, run| {
            for (k, pair) in run.chunks_exact_mut(2).enumerate() {
                pair[0] += first + k;
                pair[1] += 1;
            }
        });
        assert!(out.chunks_exact(2).enumerate().all(|(u, pair)| pair == [u, 1]));
    }

    #[test]
    fn two_outputs_get_matching_runs() {
        let units = MIN_PARALLEL_WORK + 3;
        let (mut a, mut b) = (vec![0usize; 3 * units], vec![0usize; units]);
        for_each_run2(&mut a, 3, &mut b, 1, 4, |first, ra, rb| {
            assert_eq!(ra.len(), 3 * rb.len());
            for (k, (ua, ub)) in ra.chunks_exact_mut(3).zip(rb.iter_mut()).enumerate() {
                ua.fill(first + k);
                *ub = first + k;
            }
        });
        assert!(b.iter().enumerate().all(|(u, &v)| v == u));
        assert!(a.chunks_exact(3).enumerate().all(|(u, run)| run.iter().all(|&v| v == u)));
    }

    #[test]
    fn small_work_stays_in_one_run() {
        assert_eq!(units_per_run(100, 10), None);
        assert_eq!(units_per_run(1, usize::MAX), None);
    }
}
