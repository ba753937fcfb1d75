//! Error types: one enum per module, re-exported here, and the crate-wide [`Error`].
//!
//! Every variant says what went wrong and where (a path, a character, a page), so callers can
//! match on it and users can act on the message.

pub use crate::data::DataError;
pub use crate::device::DeviceError;
pub use crate::eval::EvalError;
pub use crate::fsutil::IoError;
pub use crate::infer::InferError;
pub use crate::lora::LoraError;
pub use crate::model::ModelError;
pub use crate::render::RenderError;
pub use crate::weights::WeightsError;

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
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(Box<ModelError>),
    /// A checkpoint tensor is missing or unreadable.
    #[error(transparent)]
    Weights(Box<WeightsError>),
    /// LoRA configuration or adapter files failed.
    #[error(transparent)]
    Lora(Box<LoraError>),
    /// Generation failed.
    #[error(transparent)]
    Infer(Box<InferError>),
    /// Training failed.
    #[error(transparent)]
    Train(Box<crate::train::TrainError>),
    /// Tracking failed.
    #[error(transparent)]
    Track(Box<crate::track::TrackError>),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The requested device cannot be used.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

macro_rules! boxed_from {
    ($($variant:ident($ty:ty)),*) => {
        $(impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(Box::new(e))
            }
        })*
    };
}

boxed_from!(
    Model(ModelError),
    Weights(WeightsError),
    Lora(LoraError),
    Infer(InferError),
    Train(crate::train::TrainError),
    Track(crate::track::TrackError)
);

/// Result with the crate-wide [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
