//! The names a notebook needs: `use deepsynth::prelude::*;`.

pub use crate::data::{load_documents, DocumentSource};
pub use crate::display::{Html, PageGrid};
pub use crate::error::{Error, Result};
pub use crate::eval::{
    porter_stem, RougeCounts, RougeScore, RougeScorer, RougeScores, RougeTokenizer, RougeType,
    Stemming,
};
pub use crate::render::{
    BatchOptions, ChainFont, Document, FontChain, Margins, MissingGlyphs, Page, PageMode,
    PngCompression, Preset, RenderConfig, RenderReport, Rendered, Renderer,
};
