//! Data: documents to render, evaluation pairs, page preprocessing for the model, prompts
//! and tokenisation.

pub mod bpe;
mod documents;
pub mod fit;
pub mod hub;
mod pairs;
pub mod preprocess;
pub mod prompt;
pub mod resample;
pub mod tokenizer;

pub use bpe::{train_bpe, BPE_SPECIALS};
pub use documents::{load_documents, DataError, DocumentSource};
pub use fit::{fit_document, fit_first, page_config_for, FittedPage, OnOverflow};
pub use hub::{load_pairs_from, HubDataset};
pub use pairs::{load_pairs, BadRecord, LoadedPairs, Pair, PairFields};
pub use preprocess::{
    decode_image, prepare_image, prepare_views, ImageMode, PageViews, PreparedImage,
};
pub use prompt::{Prompt, SpecialIds, IMAGE_TAG};
pub use tokenizer::{TextCodec, Tokenizer};
