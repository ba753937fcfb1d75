//! LoRA adapters over frozen [`QLinear`](crate::quant::QLinear) layers, PEFT-compatible:
//! [`LoraConfig`] reads and writes `adapter_config.json`, [`apply_lora`] attaches adapters by
//! PEFT's target rules, [`save_adapter`] / [`load_adapter`] use PEFT's file and key layout, and
//! [`merge`] / [`unmerge`] fold adapters into the base weights.

mod adapter;
mod config;
mod fused;
mod linear;

pub use adapter::{
    adapter_tensors, apply_lora, load_adapter, merge, save_adapter, trainable_vars, unmerge,
    verify_adapter_files, write_adapter_files, LoraModel, LoraSummary, ADAPTER_CONFIG,
    ADAPTER_WEIGHTS, PEFT_PREFIX,
};
pub use config::{InitLora, LoraConfig, ModuleSelector, DECODER_TARGETS};
pub use linear::{dropout_rng, set_dropout_rng, set_dropout_seed, LoraAdapter, LoraLinear};

use std::path::PathBuf;

/// Errors of LoRA configuration and adapter files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoraError {
    /// A bad or unsupported `adapter_config.json` value.
    #[error("bad LoRA config{}: {reason}", .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Config {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What was wrong.
        reason: String,
    },
    /// `target_modules` matched no layer.
    #[error("LoRA target_modules {0} match no layer of the model")]
    NoTargets(String),
    /// A missing, extra or mis-shaped adapter tensor.
    #[error("adapter tensor `{name}`: {reason}")]
    Tensor {
        /// The PEFT key.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// Writing the adapter failed.
    #[error("writing the adapter failed: {0}")]
    Io(String),
    /// A tensor operation failed.
    #[error("tensor op failed: {0}")]
    Candle(#[from] candle_core::Error),
}
