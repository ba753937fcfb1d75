//! Training: AdamW on the LoRA parameters ([`optim`]), warm-up schedules ([`schedule`]),
//! examples and collation ([`examples`], [`collate`]), the optimisation loop with safe
//! checkpoints ([`Trainer`]) and whole runs with evaluation and early stopping ([`run`]).

pub mod bundled;
mod checkpoint;
pub mod collate;
pub mod examples;
pub mod optim;
pub mod pretrain;
pub mod run;
pub mod schedule;
mod trainer;

pub use checkpoint::State as CheckpointState;
pub use collate::collate;
pub use examples::{Example, ExampleEncoder};
pub use optim::{clip_grad_norm, named_grads, AdamW, AdamWConfig};
pub use pretrain::{held_out_loss, pretrain, save_model, PretrainConfig, PretrainOutcome};
pub use run::{evaluate, run, EarlyStopping, EvalReport, RunConfig, RunOutcome};
pub use schedule::{Decay, Schedule};
pub use trainer::{StepReport, TrainConfig, Trainer};

use std::path::PathBuf;

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
    /// One example could not be prepared (render, tokenise, generate).
    #[error("example `{id}`: {reason}")]
    Example {
        /// The example id.
        id: String,
        /// What went wrong.
        reason: String,
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
}
