//! The examples one rank reads, with the semantics of PyTorch's `DistributedSampler`
//! (`drop_last=False`): the epoch's order padded to a multiple of the world size by repeating
//! its start, then every `world`-th index from `rank`.

/// The part of `order` (an epoch's example order, [`crate::train::epoch_order`]) that `rank`
/// of `world` reads. Every rank gets `ceil(len / world)` indices; batch `k` of size `b` on
/// every rank together is positions `k*b*world .. (k+1)*b*world` of the padded order, which is
/// batch `k` of size `b*world` of a single process.
///
/// # Panics
/// When `world` is 0 or `rank >= world`.
pub fn shard(order: &[usize], world: usize, rank: usize) -> Vec<usize> {
    assert!(world > 0 && rank < world, "rank {rank} of world {world}");
    if order.is_empty() {
        return Vec::new();
    }
    let per_rank = order.len().div_ceil(world);
    (0..per_rank)
        .map(|i| order[(i * world + rank) % order.len()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::shard;

    #[test]
    fn shards_pad_like_distributed_sampler() {
        // torch.utils.data.DistributedSampler(range(5), num_replicas=2, shuffle=False):
        // rank 0 -> [0, 2, 4], rank 1 -> [1, 3, 0].
        let order = [0, 1, 2, 3, 4];
        assert_eq!(shard(&order, 2, 0), [0, 2, 4]);
        assert_eq!(shard(&order, 2, 1), [1, 3, 0]);
        // num_replicas=4 over 2 items pads by repeating: [0, 1, 0, 1].
        assert_eq!(shard(&[7, 9], 4, 2), [7]);
        assert_eq!(shard(&[7, 9], 4, 3), [9]);
        assert_eq!(shard(&order, 1, 0), order);
        assert!(shard(&[], 3, 1).is_empty());
    }
}
