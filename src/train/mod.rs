//! Training: AdamW on the LoRA parameters ([`optim`]), warm-up schedules ([`schedule`]),
//! examples and collation ([`examples`], [`collate`]), the optimisation loop with safe
//! checkpoints ([`Trainer`]) and whole runs with evaluation and early stopping ([`run`]).

pub mod bundled;
mod checkpoint;
pub mod collate;
pub mod config;
pub mod distributed;
pub mod evaluate;
pub mod example_log;
pub mod examples;
mod log_window;
pub mod optim;
pub mod order;
pub mod pretrain;
pub mod run;
mod run_state;
pub mod schedule;
mod trainer;

pub use checkpoint::State as CheckpointState;
pub use collate::collate;
pub use config::{watchable_metrics, BadExampleLimit, EarlyStopping, RunConfig, TrainConfig};
pub use evaluate::{evaluate, evaluate_sharded, held_out_loss, EvalReport, EvalSample};
pub use example_log::{ExampleLog, Phase, SkippedExample, TruncatedExample};
pub use examples::{Example, ExampleEncoder, Shown};
pub use optim::{clip_grad_norm, named_grads, AdamW, AdamWConfig};
pub use order::epoch_order;
pub use pretrain::{pretrain, save_model, PretrainConfig, PretrainOutcome};
pub use run::{run, run_distributed, RunOutcome, SKIPPED_FILE};
pub use run_state::checkpoint_run_config;
pub use schedule::{Decay, Schedule};
pub use trainer::{StepReport, Trainer};

use std::path::PathBuf;

impl TrainError {
    /// What went wrong with one example (the reason of [`TrainError::Example`]), or `None`
    /// when the error is not about one example (a run skips only the former).
    pub fn example_reason(&self) -> Option<&str> {
        match self {
            TrainError::Example { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// Errors of training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// Bad settings.
    #[error("bad training config: {0}")]
    Config(String),
    /// Every micro-batch of a step had a non-finite loss (or gradient): nothing was updated.
    #[error(
        "step {step}: all {batches} micro-batch(es) had a non-finite loss or gradient; stopping"
    )]
    AllSkipped {
        /// The step that failed.
        step: u64,
        /// Micro-batches in it.
        batches: usize,
    },
    /// A checkpoint could not be written, or is missing, corrupted or incompatible.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// One example could not be prepared (render, tokenise, generate); a run skips it.
    #[error("example `{id}`: {reason}")]
    Example {
        /// The example id.
        id: String,
        /// What went wrong.
        reason: String,
    },
    /// A document does not fit on its page and the overflow policy is `error`.
    #[error("example `{id}`: {reason}")]
    Overflow {
        /// The example id.
        id: String,
        /// Pages needed and characters shown.
        reason: String,
    },
    /// More examples failed than the run tolerates.
    #[error(
        "{count} bad examples, more than the {limit} allowed (--max-bad-examples); they are \
         listed in {}",
        list.display()
    )]
    TooManyBadExamples {
        /// Bad examples met.
        count: usize,
        /// The limit.
        limit: usize,
        /// The file listing them.
        list: PathBuf,
    },
    /// The model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// The adapter failed.
    #[error(transparent)]
    Lora(#[from] crate::lora::LoraError),
    /// A tensor operation failed.
    #[error("tensor op failed: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Loading data failed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// Tracking failed.
    #[error(transparent)]
    Track(#[from] crate::track::TrackError),
    /// A collective of a data-parallel group failed (a rank died, hung or went out of step).
    #[error("data-parallel group: {0}")]
    Collective(String),
    /// The data-parallel group could not be formed (torchrun environment, rendezvous).
    #[error(transparent)]
    Distributed(#[from] distributed::DistError),
}
