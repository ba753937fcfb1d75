//! Training examples: a document and its reference summary, turned into a prompt with labels
//! and a preprocessed page (the first rendered page of the document), cached by id so that
//! later epochs do not render again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::data::{prepare_image, ImageMode, Pair, Prompt, SpecialIds, TextCodec};
use crate::model::ImageInput;
use crate::render::Renderer;

/// A document with its reference summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// Identifier (cache key).
    pub id: String,
    /// The document.
    pub text: String,
    /// The reference summary.
    pub summary: String,
}

impl From<Pair> for Example {
    /// From a loaded pair whose `prediction` column held the document and `reference` the
    /// summary (`load_pairs` with `PairFields { reference: "summary", prediction: "text" }`).
    fn from(p: Pair) -> Self {
        Self {
            id: p.id,
            text: p.prediction,
            summary: p.reference,
        }
    }
}

/// Turns examples into model inputs.
pub struct ExampleEncoder {
    renderer: Renderer,
    mode: ImageMode,
    codec: Rc<dyn TextCodec>,
    prompt: String,
    ids: SpecialIds,
    device: Device,
    pages: RefCell<HashMap<String, ImageInput>>,
}

impl ExampleEncoder {
    /// An encoder rendering with `renderer`, preprocessing for `mode`, tokenising with `codec`,
    /// prompting with `prompt` (one `<image>`).
    pub fn new(
        renderer: Renderer,
        mode: ImageMode,
        codec: Rc<dyn TextCodec>,
        prompt: impl Into<String>,
        ids: SpecialIds,
        device: &Device,
    ) -> Self {
        Self {
            renderer,
            mode,
            codec,
            prompt: prompt.into(),
            ids,
            device: device.clone(),
            pages: RefCell::new(HashMap::new()),
        }
    }

    /// The tokenizer.
    pub fn codec(&self) -> &dyn TextCodec {
        self.codec.as_ref()
    }

    /// Special ids.
    pub fn special_ids(&self) -> SpecialIds {
        self.ids
    }

    /// The page of `ex` (rendered and preprocessed once, then cached).
    pub fn page(&self, ex: &Example) -> Result<ImageInput, TrainError> {
        if let Some(p) = self.pages.borrow().get(&ex.id) {
            return Ok(p.clone());
        }
        let rendered = self
            .renderer
            .render(&ex.text)
            .map_err(|e| TrainError::Example {
                id: ex.id.clone(),
                reason: e.to_string(),
            })?;
        let page = rendered.pages.first().ok_or_else(|| TrainError::Example {
            id: ex.id.clone(),
            reason: "rendered to no page".into(),
        })?;
        let prepared = prepare_image(&page.to_rgb(), &self.mode, &self.device).map_err(|e| {
            TrainError::Example {
                id: ex.id.clone(),
                reason: e.to_string(),
            }
        })?;
        let input = ImageInput {
            global: prepared.global,
            tiles: prepared.tiles,
        };
        self.pages.borrow_mut().insert(ex.id.clone(), input.clone());
        Ok(input)
    }

    /// The page of `ex` as drawn (before preprocessing), PNG-encoded, with its width, height
    /// and channels (1 for grayscale pages, 3 for colour).
    pub fn page_png(&self, ex: &Example) -> Result<(Vec<u8>, u32, u32, u32), TrainError> {
        let fail = |e: crate::render::RenderError| TrainError::Example {
            id: ex.id.clone(),
            reason: e.to_string(),
        };
        let rendered = self.renderer.render(&ex.text).map_err(fail)?;
        let page = rendered.pages.first().ok_or_else(|| TrainError::Example {
            id: ex.id.clone(),
            reason: "rendered to no page".into(),
        })?;
        let png = page
            .to_png(crate::render::PngCompression::Fast)
            .map_err(fail)?;
        let channels = if page.is_grayscale() { 1 } else { 3 };
        Ok((png, page.width(), page.height(), channels))
    }

    /// Image positions of one page in this mode.
    fn positions(&self, page: &ImageInput) -> usize {
        let grid = page.tiles.as_ref().map(|(_, g)| *g).unwrap_or((1, 1));
        self.mode.image_positions(grid)
    }

    /// The training prompt (prompt + summary + EOS, labels on the summary) and the page.
    pub fn training(&self, ex: &Example) -> Result<(Prompt, ImageInput), TrainError> {
        let page = self.page(ex)?;
        let prompt = Prompt::from_text(
            self.codec.as_ref(),
            &self.prompt,
            &[self.positions(&page)],
            Some(&ex.summary),
            self.ids,
        )
        .map_err(|e| TrainError::Example {
            id: ex.id.clone(),
            reason: e.to_string(),
        })?;
        Ok((prompt, page))
    }

    /// The generation prompt (no target) and the page.
    pub fn inference(&self, ex: &Example) -> Result<(Prompt, ImageInput), TrainError> {
        let page = self.page(ex)?;
        let prompt = Prompt::from_text(
            self.codec.as_ref(),
            &self.prompt,
            &[self.positions(&page)],
            None,
            self.ids,
        )
        .map_err(|e| TrainError::Example {
            id: ex.id.clone(),
            reason: e.to_string(),
        })?;
        Ok((prompt, page))
    }
}
