//! The examples one rank reads: every `world`-th index of the epoch's order from `rank`, like
//! PyTorch's `DistributedSampler`, but **without its padding**. `DistributedSampler` repeats
//! the start of the order until its length is a multiple of the world size, so an epoch's
//! examples (and the steps that read them) depend on the number of ranks: 5 examples are 5 for
//! one process and 6 (one twice) for 2 ranks, and a run resumed with another world size would
//! see another epoch. Here the shards are uneven instead (lengths differ by at most one): the
//! ranks still step together, and a rank whose shard ends first joins the epoch's last step
//! with an empty micro-batch, which adds zeros to the all-reduce and counts no micro-batch
//! (PyTorch reaches the same with uneven inputs under `Join`). Every epoch then visits every
//! example once, and step `s` reads positions `s*G .. (s+1)*G` of the epoch's order (`G` =
//! batch x accumulation x ranks), whatever the number of ranks.

/// The part of `order` (an epoch's example order, [`crate::train::epoch_order`]) that `rank`
/// of `world` reads: positions `rank, rank + world, ...`. Micro-batch `k` of size `b` on every
/// rank together is positions `k*b*world .. (k+1)*b*world` of the order (fewer at its end),
/// which is what micro-batch `k` of size `b*world` of a single process reads.
///
/// # Panics
/// When `world` is 0 or `rank >= world`.
pub fn shard(order: &[usize], world: usize, rank: usize) -> Vec<usize> {
    assert!(world > 0 && rank < world, "rank {rank} of world {world}");
    order.iter().skip(rank).step_by(world).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::shard;

    #[test]
    fn shards_are_uneven_instead_of_padded() {
        // DistributedSampler(range(5), num_replicas=2, shuffle=False) would give rank 1
        // [1, 3, 0]: example 0 twice in the epoch.
        let order = [0, 1, 2, 3, 4];
        assert_eq!(shard(&order, 2, 0), [0, 2, 4]);
        assert_eq!(shard(&order, 2, 1), [1, 3]);
        assert_eq!(shard(&[7, 9], 4, 1), [9]);
        assert!(shard(&[7, 9], 4, 3).is_empty());
        assert_eq!(shard(&order, 1, 0), order);
        assert!(shard(&[], 3, 1).is_empty());
        // Every example once, over any world size.
        for world in 1..=6 {
            let mut all: Vec<usize> = (0..world).flat_map(|r| shard(&order, world, r)).collect();
            all.sort();
            assert_eq!(all, order, "world {world}");
        }
    }
}
