//! DeepSynth: vision-compressed document summarisation.
//!
//! Documents are rendered to page images ([`render`]), which DeepSeek-OCR's encoder compresses
//! into a few hundred visual tokens; the model is fine-tuned with QLoRA to write a summary of
//! the page. This crate is built to be used from Jupyter (the evcxr-based kernel in
//! `kernels/`): types that make sense to look at render inline ([`display`]).
//!
//! Start with [`prelude`]:
//! ```
//! use deepsynth::prelude::*;
//! let pages = Renderer::from_preset(Preset::Tiny)?.render("Hello, world")?;
//! assert_eq!(pages.report.missing.len(), 0);
//! # Ok::<(), deepsynth::Error>(())
//! ```

#![warn(missing_docs)]

pub mod data;
pub mod device;
pub mod display;
pub mod error;
pub mod eval;
pub mod fsutil;
mod fxhash;
pub mod infer;
pub mod lora;
pub mod model;
pub mod prelude;
pub mod quant;
pub mod render;
pub mod rng;
pub mod threads;
pub mod track;
pub mod train;
pub mod weights;

/// candle, re-exported so callers use the same tensor type as the model.
pub use candle_core as candle;
pub use error::{Error, Result};
/// image, re-exported so notebooks and callers use the same buffer types as our pages.
pub use image;
/// polars, re-exported so notebooks and callers use the same version as our DataFrames.
#[cfg(feature = "frames")]
pub use polars;
pub use threads::configure_threads;

/// Why Parquet input or output failed in a build without the `frames` feature.
#[cfg(not(feature = "frames"))]
pub(crate) const NO_FRAMES: &str =
    "this build has no Parquet support: build with the `frames` feature (on by default)";
