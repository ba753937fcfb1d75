//! What a run's checkpoints hold besides the trainer's state ([`SavedRun`]: the position in
//! the data, the best metric, the outcome so far, the settings, a fingerprint of the data),
//! the checkpoint folders' names and their rotation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::RunConfig;
use super::examples::Example;
use super::log_window::LossWindow;
use super::run::RunOutcome;
use super::TrainError;
use crate::lora::LoraConfig;
use crate::rng::Rng;

/// Position of a run in its data, saved in checkpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Cursor {
    pub(super) epoch: usize,
    /// Micro-batches consumed in this epoch (by each rank).
    pub(super) batch: usize,
}

impl Cursor {
    /// This position for `world` ranks, when it was saved by `saved_world` ranks with
    /// micro-batches of `batch_size`: the same number of examples of the epoch's
    /// order consumed. `None` when that is not a whole number of micro-batches.
    pub(super) fn rescaled(
        self,
        batch_size: usize,
        saved_world: usize,
        world: usize,
    ) -> Option<Cursor> {
        let consumed = self.batch * batch_size * saved_world;
        let per = batch_size * world;
        (consumed % per == 0).then_some(Cursor {
            epoch: self.epoch,
            batch: consumed / per,
        })
    }
}

/// What a checkpoint's `extra` holds for a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct SavedRun {
    pub(super) cursor: Cursor,
    pub(super) best: Option<(u64, f64)>,
    pub(super) since_best: usize,
    pub(super) outcome: RunOutcome,
    pub(super) run: RunConfig,
    /// SHA-256 of the training examples in order (hex).
    #[serde(default)]
    pub(super) data: Option<String>,
    /// Steps whose training loss is not logged yet.
    #[serde(default)]
    pub(super) window: LossWindow,
    /// Every rank's LoRA dropout generator, in rank order (data-parallel runs; one process
    /// keeps its generator in the trainer's state).
    #[serde(default)]
    pub(super) dropout_rngs: Vec<Rng>,
}

/// The settings a checkpoint was written with: a run resumed from it must use these (only
/// evaluation, rotation and cache settings may differ; [`RunConfig::resume_conflicts`]).
pub fn checkpoint_run_config(dir: &Path) -> Result<(RunConfig, LoraConfig), TrainError> {
    let state = super::checkpoint::read_state(dir)?;
    let saved: SavedRun =
        serde_json::from_value(state.extra).map_err(|e| TrainError::Checkpoint {
            path: dir.into(),
            reason: format!("run state: {e}"),
        })?;
    let lora = crate::lora::LoraConfig::from_file(dir.join(crate::lora::ADAPTER_CONFIG))?;
    Ok((saved.run, lora))
}

/// SHA-256 of the examples' ids, texts and summaries, in order.
pub(super) fn fingerprint(examples: &[Example]) -> String {
    let mut h = Sha256::new();
    for ex in examples {
        for s in [&ex.id, &ex.text, &ex.summary] {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn checkpoint_dir(out: &Path, step: u64) -> PathBuf {
    out.join(format!("checkpoint-{step:06}"))
}

/// Deletes all but the newest `keep` `checkpoint-*` folders of `out`.
pub(super) fn rotate(out: &Path, keep: usize) {
    let Ok(dirs) = crate::track::runs::checkpoint_dirs(out) else {
        return;
    };
    let drop = dirs.len().saturating_sub(keep);
    for d in &dirs[..drop] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn positions_rescale_to_another_world_size() {
        // 3 micro-batches of 2 on each of 4 ranks = 24 examples = 6 per rank of 2 ranks.
        let c = Cursor { epoch: 1, batch: 3 };
        assert_eq!(c.rescaled(2, 4, 2), Some(Cursor { epoch: 1, batch: 6 }));
        assert_eq!(
            c.rescaled(2, 4, 1),
            Some(Cursor {
                epoch: 1,
                batch: 12
            })
        );
        assert_eq!(c.rescaled(2, 4, 4), Some(c));
        // 24 examples are not whole micro-batches of 2 on 5 ranks.
        assert_eq!(c.rescaled(2, 4, 5), None);
    }

    #[test]
    fn another_world_size_must_keep_the_micro_batches_per_step() {
        use crate::train::{RunConfig, TrainConfig};
        let with = |accum: usize, world: usize| {
            let mut t = TrainConfig::new(1e-3, 10);
            t.grad_accum = accum;
            let mut c = RunConfig::new(t);
            c.world_size = world;
            c
        };
        assert!(with(1, 2).resume_conflicts(&with(2, 1)).is_empty());
        assert!(with(4, 2).resume_conflicts(&with(2, 4)).is_empty());
        assert_eq!(
            with(1, 2).resume_conflicts(&with(1, 1)),
            ["grad_accum x world_size (micro-batches per step): 2 (given) vs 1 (checkpoint)"]
        );
        assert_eq!(
            with(1, 2).resume_conflicts(&with(2, 2)),
            ["grad_accum: 1 (given) vs 2 (checkpoint)"]
        );
    }
}
