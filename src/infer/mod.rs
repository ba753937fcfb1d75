//! Generation: [`GenerationConfig`] with presets, logits processors in transformers' order,
//! greedy / seeded sampling / beam search with a KV cache ([`generate`]), and the
//! [`Summarizer`] service that turns text or page images into summaries with timings.

mod config;
pub mod processors;
mod search;
mod summarizer;

pub use config::{EarlyStopping, GenerationConfig, NeverTag};
pub use search::{generate, FinishReason, Generated, LanguageModel, OnToken, PromptInput};
#[cfg(feature = "frames")]
pub use summarizer::comparison_frame;
pub use summarizer::{LoadOptions, Summarizer, Summary, SummaryTimings};

/// Errors of generation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    /// A bad generation setting.
    #[error("bad generation config: {0}")]
    Config(String),
    /// Unusable input (empty prompt, bad image).
    #[error("bad generation input: {0}")]
    Input(String),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// Rendering or data preparation failed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// Loading the adapter failed.
    #[error(transparent)]
    Lora(#[from] crate::lora::LoraError),
    /// A tensor operation failed.
    #[error("tensor op failed: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The requested device cannot be used.
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
}
