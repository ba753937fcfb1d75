//! The names a notebook needs: `use deepsynth::prelude::*;`.

pub use crate::data::{load_documents, load_pairs, DocumentSource, Pair, PairFields};
pub use crate::data::{ImageMode, Tokenizer};
pub use crate::device::DeviceSpec;
#[cfg(feature = "frames")]
pub use crate::display::Table;
pub use crate::display::{
    Bar, BarChart, Html, LineChart, PageGrid, SampleRow, Series, TrainingReport,
};
pub use crate::error::{Error, Result};
pub use crate::eval::{
    cer, corpus_bleu, corpus_chrf, corpus_wer, porter_stem, process_characters, process_words,
    sentence_bleu, sentence_chrf, wer, Bleu, BleuScore, Bootstrap, Chrf, ChrfScore, EditCounts,
    EvalConfig, Evaluation, Evaluator, Metric, RougeScore, RougeScorer, RougeScores,
    RougeTokenizer, RougeType, Stemming, WerScorer,
};
#[cfg(feature = "frames")]
pub use crate::infer::comparison_frame;
pub use crate::infer::{generate, GenerationConfig, LoadOptions, PromptInput, Summarizer, Summary};
pub use crate::lora::LoraConfig;
pub use crate::model::{Config, DeepseekOcr};
pub use crate::render::{
    BatchOptions, ChainFont, Document, FontChain, Margins, MissingGlyphs, Page, PageMode,
    PngCompression, Preset, RenderConfig, RenderReport, Rendered, Renderer,
};
pub use crate::track::{RunTracker, Runs, Tracker};
pub use crate::train::bundled::{find_root, Bundled};
pub use crate::train::{
    evaluate, run, EarlyStopping, EvalReport, Example, ExampleEncoder, RunConfig, RunOutcome,
    TrainConfig,
};
#[cfg(feature = "frames")]
pub use polars::prelude::{Column, DataFrame};
