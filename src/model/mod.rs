//! DeepSeek-OCR in candle ([model card](https://huggingface.co/deepseek-ai/DeepSeek-OCR),
//! [paper](https://arxiv.org/abs/2510.18234)): SAM ViT-B + compressor and CLIP-L encoders
//! ([`vision`]), a linear projector, and the DeepseekV2 MoE decoder ([`decoder`]), loaded from
//! the real checkpoint's tensor names.
//!
//! Numerics follow the PyTorch reference (checked against `tests/fixtures/deepseek-ocr-tiny`);
//! every op between the LoRA-targeted decoder layers and the input embeddings has a backward.

pub mod cache;
pub mod config;
mod config_encoders;
pub mod decoder;
mod fastmath;
pub mod hub;
mod im2col;
pub mod interp;
pub mod loss;
pub mod nn;
mod ocr;
pub mod ops;
mod presets;
pub mod synthetic;
pub mod vision;

pub use cache::{CacheKey, CacheKind, CacheStats, TensorCache};
pub use config::{
    Architecture, ClipConfig, Config, DecoderConfig, ProjectorConfig, Qwen2EncoderConfig,
    SamConfig, VisionConfig,
};
pub use decoder::{Decoder, DecoderOutput, ForwardOptions, KvCache, Routing};
pub use hub::{ModelFiles, ModelSource};
pub use ocr::{Batch, DeepseekOcr, ModelOutput};
pub use vision::{ImageInput, ViewTrace, VisionEncoder};

use crate::weights::WeightsError;

/// Errors of the model: configuration, weights, inputs and tensor math.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// `config.json` could not be read or parsed.
    #[error("bad model config {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A configuration value this port does not implement.
    #[error("unsupported config value {key} = {value} (supported: {supported})")]
    Unsupported {
        /// The config key.
        key: &'static str,
        /// The value found.
        value: String,
        /// What is supported.
        supported: &'static str,
    },
    /// A tensor is missing, mis-shaped or unreadable.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// Inputs that do not fit the model (image positions, batch shapes).
    #[error("bad model input ({what}): {reason}")]
    Input {
        /// Which input.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// Finding or downloading the model failed.
    #[error("cannot get model `{model}`: {reason}")]
    Hub {
        /// The model id or folder.
        model: String,
        /// What went wrong.
        reason: String,
    },
    /// A tensor operation failed (shapes, dtypes, device).
    #[error("tensor op failed: {0}")]
    Tensor(#[from] candle_core::Error),
}
