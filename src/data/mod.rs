//! Data: documents to render, evaluation pairs, and (later) datasets, samples and batches.

mod documents;
mod pairs;

pub use documents::{load_documents, DataError, DocumentSource};
pub use pairs::{load_pairs, BadRecord, LoadedPairs, Pair, PairFields};
