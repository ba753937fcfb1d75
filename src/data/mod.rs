//! Data: documents and (later) datasets, samples and batches.

mod documents;

pub use documents::{load_documents, DataError, DocumentSource};
