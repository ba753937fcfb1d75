//! The one collective of a data-parallel step: a single `f32` all-reduce of one flat buffer
//! that holds every parameter's summed gradient (zeros where a rank has none), a presence flag
//! per parameter, and the step's counts (counted micro-batches, loss sum, tokens, skipped
//! micro-batches) of every rank.
//!
//! Gradients are summed in `f32`, like PyTorch DDP's buckets. The counts must come through
//! exactly (they divide the gradient sum, and a resumed run must see the same losses), which
//! an `f32` sum does not guarantee (integers only up to 2^24, and the loss sum is an `f64`).
//! So each rank writes its four counts as 64-bit patterns, cut into four 16-bit pieces, into
//! slots of its own; every other rank writes zeros there. Each piece is an integer below
//! 2^16, exact in `f32`, and a sum of one piece and zeros is that piece in any order of
//! summation (NCCL's too), so every rank decodes every rank's counts bit for bit and sums them
//! in rank order, as an `f64` all-reduce would. The flags sum to at most the world size
//! (exact below 2^24 ranks). The cost is `16 x world_size` floats beside the gradients.

use candle_core::{DType, Tensor, Var};

use super::Collective;
use crate::train::trainer::Accumulated;
use crate::train::TrainError;

/// The counts each rank sends: counted, loss sum (`f64` bits), tokens, skipped.
const COUNTS: usize = 4;
/// 16-bit pieces per 64-bit count.
const PIECES: usize = 4;
/// Floats per rank for its counts.
const SLOTS: usize = COUNTS * PIECES;

/// Writes `v` into `out` (length [`PIECES`]) as exact `f32` integers, low piece first.
fn encode(v: u64, out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = ((v >> (16 * i)) & 0xffff) as f32;
    }
}

/// The `u64` that [`encode`] wrote into `pieces`.
fn decode(pieces: &[f32]) -> u64 {
    pieces
        .iter()
        .enumerate()
        .fold(0, |v, (i, &p)| v | ((p as u64) << (16 * i)))
}

/// Replaces this rank's `acc` by the sum over the ranks of `group`, so that every rank holds
/// the same gradients and counts, with exactly one call of
/// [`Collective::all_reduce_sum_f32`]. A parameter keeps no gradient only when no rank had
/// one.
pub(crate) fn all_reduce_grads(
    acc: Accumulated,
    params: &[(String, Var)],
    group: &dyn Collective,
) -> Result<Accumulated, TrainError> {
    let Accumulated {
        mut sum,
        counted,
        loss_sum,
        tokens,
        skipped,
    } = acc;
    let (rank, world) = (group.rank(), group.world_size());
    let grads: usize = params.iter().map(|(_, p)| p.elem_count()).sum();
    let mut flat = Vec::with_capacity(grads + params.len() + SLOTS * world);
    let mut present = Vec::with_capacity(params.len());
    for (name, p) in params {
        match sum.remove(name) {
            Some(g) => {
                flat.extend(g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
                present.push(1.0);
            }
            None => {
                flat.extend(std::iter::repeat_n(0f32, p.elem_count()));
                present.push(0.0);
            }
        }
    }
    flat.extend(present);
    let counts_at = flat.len();
    flat.resize(counts_at + SLOTS * world, 0.0);
    let mine = &mut flat[counts_at + SLOTS * rank..counts_at + SLOTS * (rank + 1)];
    let values = [
        counted as u64,
        loss_sum.to_bits(),
        tokens as u64,
        skipped as u64,
    ];
    for (v, out) in values.iter().zip(mine.chunks_mut(PIECES)) {
        encode(*v, out);
    }
    group
        .all_reduce_sum_f32(&mut flat)
        .map_err(|e| TrainError::Collective(e.to_string()))?;
    let mut total = Accumulated::default();
    for slots in flat[counts_at..].chunks(SLOTS) {
        let v: Vec<u64> = slots.chunks(PIECES).map(decode).collect();
        total.counted += v[0] as usize;
        total.loss_sum += f64::from_bits(v[1]);
        total.tokens += v[2] as usize;
        total.skipped += v[3] as usize;
    }
    let mut at = 0;
    for ((name, p), &present) in params.iter().zip(&flat[grads..counts_at]) {
        let n = p.elem_count();
        if present > 0.0 {
            let g = Tensor::from_slice(&flat[at..at + n], p.shape(), p.device())?;
            total.sum.insert(name.clone(), g.to_dtype(p.dtype())?);
        }
        at += n;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{all_reduce_grads, decode, encode, PIECES};
    use crate::train::distributed::InProcessGroup;
    use crate::train::trainer::Accumulated;

    #[test]
    fn sixty_four_bit_patterns_survive_as_f32_pieces() {
        let cases = [
            0,
            1,
            u64::MAX,
            (0.1f64 + 0.2).to_bits(),
            f64::MIN_POSITIVE.to_bits(),
            (-0.0f64).to_bits(),
            f64::NAN.to_bits(),
            1 << 24 | 1,
        ];
        for v in cases {
            let mut p = [0f32; PIECES];
            encode(v, &mut p);
            // What a sum with the other ranks' zeros leaves, in either order.
            let summed: Vec<f32> = p.iter().map(|&x| (0.0 + x) + 0.0).collect();
            assert_eq!(decode(&summed), v, "{v:#x}");
        }
    }

    /// Counts that an `f32` sum would round (above 2^24, and a loss sum that is not an `f32`)
    /// come through three ranks exactly, summed in rank order.
    #[test]
    fn counts_are_exact_beyond_f32() {
        let group = InProcessGroup::new(3, Duration::from_secs(30));
        let losses = [0.1f64, 0.2, 1e-30];
        let results: Vec<Accumulated> = std::thread::scope(|s| {
            let jobs: Vec<_> = group
                .iter()
                .map(|h| {
                    s.spawn(move || {
                        let r = crate::train::distributed::Collective::rank(h);
                        let acc = Accumulated {
                            counted: r + 1,
                            loss_sum: losses[r],
                            tokens: (1 << 24) + 1 + r,
                            skipped: 7 * r,
                            ..Accumulated::default()
                        };
                        all_reduce_grads(acc, &[], h).unwrap()
                    })
                })
                .collect();
            jobs.into_iter().map(|j| j.join().unwrap()).collect()
        });
        for r in results {
            assert_eq!(r.counted, 6);
            assert_eq!(r.loss_sum.to_bits(), (0.0 + 0.1 + 0.2 + 1e-30f64).to_bits());
            assert_eq!(r.tokens, 3 * ((1 << 24) + 1) + 3);
            assert_eq!(r.skipped, 21);
            assert!(r.sum.is_empty());
        }
    }
}
