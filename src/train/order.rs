//! The order a run visits its examples in.

use crate::rng::Rng;

/// The example order of `epoch`: a shuffle seeded by `seed` and the epoch, so a resumed run
/// only needs the epoch and position, which every checkpoint records.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    Rng::new(
        seed.wrapping_add(epoch as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
    .shuffle(&mut idx);
    idx
}
