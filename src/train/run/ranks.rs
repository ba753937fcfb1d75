//! What the ranks of a data-parallel run exchange besides gradients: the examples each of them
//! skipped or truncated (merged before every checkpoint and at the end), and their LoRA
//! dropout generators (gathered into the checkpoints rank 0 writes, handed back to each rank
//! when the run resumes with the same number of ranks).
//!
//! Rank `r` draws dropout masks from its own generator, seeded with [`rank_dropout_seed`]:
//! rank 0 with the run's seed (so it draws what one process draws), the others with seeds
//! derived from it, so the ranks' masks are independent, as the masks of one process's larger
//! batch are. (PyTorch DDP with one `manual_seed` on every rank gives every rank the same
//! generator, hence the same mask on the same position of every rank's micro-batch.)

use super::Session;
use crate::lora;
use crate::rng::Rng;
use crate::train::example_log::ExampleLog;
use crate::train::run_state::SavedRun;
use crate::train::TrainError;

/// The dropout seed of `rank` in a run seeded with `seed`, for a generator started at optimiser
/// step `step` (0 for a fresh run; the resumed step when a run resumes with another number of
/// ranks, whose generators cannot be carried over). Rank 0 of a fresh run gets `seed` itself.
fn rank_dropout_seed(seed: u64, rank: usize, step: u64) -> u64 {
    seed ^ (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

impl Session<'_> {
    /// In a data-parallel run, every rank's skipped and truncated examples merged into every
    /// rank's log (a training example is met only by the rank that reads it), `skipped.jsonl`
    /// rewritten by rank 0, and the bad-example limit checked on the total. Called where every
    /// rank is at the same point: before each checkpoint and at the end.
    pub(super) fn merge_example_logs(&mut self) -> Result<(), TrainError> {
        let Some(g) = self.group else {
            return Ok(());
        };
        let mine = serde_json::to_vec(&self.outcome.examples).expect("example log serialises");
        let parts = g
            .all_gather_bytes(&mine)
            .map_err(|e| TrainError::Collective(e.to_string()))?;
        let before = self.outcome.examples.skipped.len();
        for (r, p) in parts.iter().enumerate().filter(|(r, _)| *r != g.rank()) {
            let log: ExampleLog = serde_json::from_slice(p)
                .map_err(|e| TrainError::Collective(format!("rank {r}'s skipped examples: {e}")))?;
            for s in log.skipped {
                self.outcome.examples.skip(s);
            }
            for t in log.truncated {
                self.outcome.examples.truncate(t);
            }
        }
        let count = self.outcome.examples.skipped.len();
        self.record_skipped(count != before, count)
    }

    /// Every rank's dropout generator, in rank order, for the checkpoint rank 0 writes (every
    /// rank calls it at the same point). Empty for one process, whose generator is in the
    /// trainer's state.
    pub(super) fn dropout_generators(&self) -> Result<Vec<Rng>, TrainError> {
        let Some(g) = self.group else {
            return Ok(Vec::new());
        };
        let mine = serde_json::to_vec(&lora::dropout_rng()).expect("a generator serialises");
        g.all_gather_bytes(&mine)
            .map_err(|e| TrainError::Collective(e.to_string()))?
            .iter()
            .enumerate()
            .map(|(r, p)| {
                serde_json::from_slice(p).map_err(|e| {
                    TrainError::Collective(format!("rank {r}'s dropout generator: {e}"))
                })
            })
            .collect()
    }

    /// Sets this rank's dropout generator at the start of a run (the trainer has seeded it
    /// with the run's seed, or restored rank 0's from the checkpoint `saved` came from): a
    /// fresh data-parallel rank is seeded with [`rank_dropout_seed`] at step 0; a run that
    /// resumes with the number of ranks it was saved with takes back its own generator; one
    /// that resumes with another number (or from a checkpoint without every rank's generator)
    /// re-seeds every rank with [`rank_dropout_seed`] at the resumed step, the same on every
    /// such resumption.
    pub(super) fn seed_dropout(&mut self, saved: Option<&SavedRun>) {
        let (rank, world) = (self.rank(), self.cfg.world_size);
        let seed = self.cfg.train.seed;
        let Some(saved) = saved else {
            if self.group.is_some() {
                lora::set_dropout_seed(rank_dropout_seed(seed, rank, 0));
            }
            return;
        };
        let step = self.trainer.step_count();
        if saved.run.world_size == world {
            if world == 1 {
                return;
            }
            if saved.dropout_rngs.len() == world {
                lora::set_dropout_rng(saved.dropout_rngs[rank].clone());
                return;
            }
        }
        if self.leader() {
            (self.log)(&format!(
                "dropout generators re-seeded from seed {seed} at step {step} (the checkpoint \
                 holds {} generator(s) of {} rank(s); this run has {world})",
                saved.dropout_rngs.len().max(1),
                saved.run.world_size
            ));
        }
        lora::set_dropout_seed(rank_dropout_seed(seed, rank, step));
    }
}

#[cfg(test)]
mod tests {
    use super::rank_dropout_seed;

    #[test]
    fn rank_seeds_start_from_the_run_seed_and_differ() {
        assert_eq!(rank_dropout_seed(42, 0, 0), 42);
        let seeds: std::collections::HashSet<u64> = (0..4)
            .flat_map(|r| [0, 1, 7].map(|s| rank_dropout_seed(42, r, s)))
            .collect();
        assert_eq!(seeds.len(), 12);
        assert_eq!(rank_dropout_seed(42, 3, 7), rank_dropout_seed(42, 3, 7));
    }
}
