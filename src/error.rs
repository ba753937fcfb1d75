//! Error types: one enum per module, re-exported here, and the crate-wide [`Error`].
//!
//! Every variant says what went wrong and where (a path, a character, a page), so callers can
//! match on it and users can act on the message.

use std::path::PathBuf;

pub use crate::data::DataError;
pub use crate::eval::EvalError;
pub use crate::render::RenderError;

/// I/O failure with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct IoError {
    /// What was being done ("read", "write", "rename", ...).
    pub op: &'static str,
    /// The file or folder involved.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// Wraps `source` with the operation and path it failed on.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The crate-wide error: each module's error converts into it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Rendering text to pages failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Loading input data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Building or saving evaluation results failed.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Result with the crate-wide [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
