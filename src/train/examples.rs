//! Training examples: a document and its reference summary, turned into a prompt with labels
//! and a preprocessed page (the first rendered page of the document), cached by id so that
//! later epochs do not render again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::collate::collate;
use super::TrainError;
use crate::data::{prepare_image, ImageMode, Pair, Prompt, SpecialIds, TextCodec};
use crate::model::{Batch, ImageInput};
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

    /// The first page `ex` renders to.
    fn drawn(&self, ex: &Example) -> Result<crate::render::Page, TrainError> {
        let rendered = self
            .renderer
            .render(&ex.text)
            .map_err(|e| example_err(ex, e))?;
        rendered
            .pages
            .into_iter()
            .next()
            .ok_or_else(|| example_err(ex, "rendered to no page"))
    }

    /// The page of `ex` (rendered and preprocessed once, then cached).
    pub fn page(&self, ex: &Example) -> Result<ImageInput, TrainError> {
        if let Some(p) = self.pages.borrow().get(&ex.id) {
            return Ok(p.clone());
        }
        let page = self.drawn(ex)?;
        let prepared = prepare_image(&page.to_rgb(), &self.mode, &self.device)
            .map_err(|e| example_err(ex, e))?;
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
        let page = self.drawn(ex)?;
        let png = page
            .to_png(crate::render::PngCompression::Fast)
            .map_err(|e| example_err(ex, e))?;
        let channels = if page.is_grayscale() { 1 } else { 3 };
        Ok((png, page.width(), page.height(), channels))
    }

    /// Image positions of one page in this mode.
    fn positions(&self, page: &ImageInput) -> usize {
        let grid = page.tiles.as_ref().map(|(_, g)| *g).unwrap_or((1, 1));
        self.mode.image_positions(grid)
    }

    /// The prompt of `ex` (with `target` + EOS as labels, if given) and its page.
    fn prompt(
        &self,
        ex: &Example,
        target: Option<&str>,
    ) -> Result<(Prompt, ImageInput), TrainError> {
        let page = self.page(ex)?;
        let prompt = Prompt::from_text(
            self.codec.as_ref(),
            &self.prompt,
            &[self.positions(&page)],
            target,
            self.ids,
        )
        .map_err(|e| example_err(ex, e))?;
        Ok((prompt, page))
    }

    /// The training prompt (prompt + summary + EOS, labels on the summary) and the page.
    pub fn training(&self, ex: &Example) -> Result<(Prompt, ImageInput), TrainError> {
        self.prompt(ex, Some(&ex.summary))
    }

    /// The generation prompt (no target) and the page.
    pub fn inference(&self, ex: &Example) -> Result<(Prompt, ImageInput), TrainError> {
        self.prompt(ex, None)
    }

    /// The training prompts of `examples` collated into one right-padded batch (pad = EOS).
    pub fn training_batch<'a>(
        &self,
        examples: impl IntoIterator<Item = &'a Example>,
    ) -> Result<Batch, TrainError> {
        let mut prompts = Vec::new();
        let mut pages = Vec::new();
        for ex in examples {
            let (p, page) = self.training(ex)?;
            prompts.push(p);
            pages.push(vec![page]);
        }
        Ok(collate(&prompts, pages, self.ids.eos, &self.device)?)
    }
}

fn example_err(ex: &Example, reason: impl std::fmt::Display) -> TrainError {
    TrainError::Example {
        id: ex.id.clone(),
        reason: reason.to_string(),
    }
}
