//! [`DistributedSampler`]: the share of an epoch's samples one process of a data-parallel
//! run trains on, as PyTorch's `torch.utils.data.distributed.DistributedSampler`.
//!
//! Every process draws the same shuffled order of the epoch (the loader's seed and the
//! epoch number, nothing else), pads it to a multiple of the number of processes by
//! repeating its first samples (or, with `drop_last`, cuts it down to one), and process
//! `r` of `R` takes positions `r, r + R, r + 2R, ...`. The shares are disjoint apart from
//! the padding, together cover the epoch, and have the same length on every process, so
//! every process runs the same number of steps: a data-parallel step waits for all of
//! them.
//!
//! Taking every `R`-th position rather than a contiguous block has one more property the
//! equivalence test relies on: batch `k` of every process, each of `B` samples, together
//! hold exactly positions `k·R·B .. (k+1)·R·B` of the padded order, the samples of batch
//! `k` of one process with batch `R·B`. So `R` processes averaging their gradients take
//! the steps one process would take with an `R` times larger batch.
//!
//! The sampler needs no communication (the rank and the number of processes are given),
//! so it is part of every build; `wgrad::distributed` (feature `mpi`) supplies them.

/// Which share of each epoch's order a process of a data-parallel run takes: give it to a
/// loader with [`super::DataLoader::sampler`].
///
/// ```
/// use wgrad::data::{DataLoader, DistributedSampler, InMemoryDataset};
/// let data = InMemoryDataset::new(vec![0.0; 10], &[1], (0..10).collect());
/// // Two processes: 10 samples pad to 10, five each, batches of 2 (the last holds 1).
/// let rank0 = DataLoader::new(&data, 2).shuffle(7).sampler(DistributedSampler::new(2, 0));
/// let rank1 = DataLoader::new(&data, 2).shuffle(7).sampler(DistributedSampler::new(2, 1));
/// assert_eq!((rank0.num_samples(), rank0.num_batches()), (5, 3));
/// let (a, b) = (rank0.order(0), rank1.order(0));
/// assert!(a.iter().all(|i| !b.contains(i))); // disjoint shares
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DistributedSampler {
    num_replicas: usize,
    rank: usize,
    drop_last: bool,
}

impl DistributedSampler {
    /// The share of process `rank` among `num_replicas`, padding the epoch to a multiple
    /// of `num_replicas` (PyTorch's default). Panics when `num_replicas` is zero or `rank`
    /// is not below it.
    pub fn new(num_replicas: usize, rank: usize) -> DistributedSampler {
        assert!(num_replicas >= 1, "DistributedSampler::new: num_replicas must be at least 1");
        assert!(
            rank < num_replicas,
            "DistributedSampler::new: rank {rank} is out of range for {num_replicas} replicas (0..{num_replicas})"
        );
        DistributedSampler { num_replicas, rank, drop_last: false }
    }

    /// With `true`, leaves out the last `len % num_replicas` samples of each epoch's order
    /// instead of padding it with repeated ones, as PyTorch's `drop_last` of this sampler
    /// (not to be confused with the loader's, which drops a last partial batch).
    #[must_use = "drop_last returns the changed sampler"]
    pub fn drop_last(mut self, drop_last: bool) -> DistributedSampler {
        self.drop_last = drop_last;
        self
    }

    /// The number of processes the epoch is shared among.
    pub fn num_replicas(&self) -> usize {
        self.num_replicas
    }

    /// This process's place among them.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of samples of an epoch of `len` samples this process takes: `len / R`
    /// rounded up, or down with `drop_last`. The same on every process.
    pub fn num_samples(&self, len: usize) -> usize {
        if self.drop_last {
            len / self.num_replicas
        } else {
            len.div_ceil(self.num_replicas)
        }
    }

    /// This process's share of `order` (an epoch's order of all `len` samples): the order
    /// padded by repeating it from its start (or cut) to `num_samples · R` positions, then
    /// every `R`-th position from `rank` on.
    pub fn shard(&self, order: &[usize]) -> Vec<usize> {
        let per_replica = self.num_samples(order.len());
        if order.is_empty() {
            return Vec::new();
        }
        // Position p of the padded order is order[p % len]: PyTorch repeats the order as
        // many times as needed when the padding is longer than the order itself.
        (0..per_replica).map(|i| order[(self.rank + i * self.num_replicas) % order.len()]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's DistributedSampler.__iter__, written out for comparison.
    fn torch_shard(order: &[usize], replicas: usize, rank: usize, drop_last: bool) -> Vec<usize> {
        let n = order.len();
        // math.ceil((len - replicas) / replicas), negative for fewer samples than replicas.
        let num_samples = if drop_last && !n.is_multiple_of(replicas) {
            ((n as f64 - replicas as f64) / replicas as f64).ceil().max(0.0) as usize
        } else {
            n.div_ceil(replicas)
        };
        let total = num_samples * replicas;
        let mut indices = order.to_vec();
        if !drop_last {
            let padding = total - n;
            if padding <= n {
                indices.extend_from_slice(&order[..padding]);
            } else {
                let mut extra = Vec::new();
                while extra.len() < padding {
                    extra.extend_from_slice(order);
                }
                indices.extend_from_slice(&extra[..padding]);
            }
        } else {
            indices.truncate(total);
        }
        indices.into_iter().skip(rank).step_by(replicas).collect()
    }

    #[test]
    fn matches_pytorch_padding_and_striding() {
        for n in [1usize, 2, 3, 7, 10, 13] {
            let order: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % n).collect();
            for replicas in [1usize, 2, 3, 4, 16] {
                for drop_last in [false, true] {
                    for rank in 0..replicas {
                        let s = DistributedSampler::new(replicas, rank).drop_last(drop_last);
                        let want = torch_shard(&order, replicas, rank, drop_last);
                        assert_eq!(
                            s.shard(&order),
                            want,
                            "n {n}, replicas {replicas}, rank {rank}, drop_last {drop_last}"
                        );
                        assert_eq!(s.num_samples(n), want.len());
                    }
                }
            }
        }
    }

    #[test]
    fn shares_are_disjoint_and_cover_the_epoch() {
        let order: Vec<usize> = (0..12).rev().collect();
        let shares: Vec<Vec<usize>> = (0..3).map(|r| DistributedSampler::new(3, r).shard(&order)).collect();
        let mut all: Vec<usize> = shares.concat();
        all.sort_unstable();
        assert_eq!(all, (0..12).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "rank 2 is out of range for 2 replicas")]
    fn rank_out_of_range_panics() {
        let _ = DistributedSampler::new(2, 2);
    }
}
