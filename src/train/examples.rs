//! Training examples: a document and its reference summary, turned into a prompt with labels
//! and the page the model reads.
//!
//! The whole document is rendered onto one page of the vision mode
//! ([`crate::data::fit_first`]; documents too long for it go to the fallback page and mode when
//! one is set, [`ExampleEncoder::with_fallback`]); a document that does not fit follows the encoder's [`OnOverflow`] policy and what the page
//! shows is reported ([`Shown`]). Pages are cached by content (the text, the render settings
//! and fonts, the image mode), never by example id, in the encoder's [`TensorCache`], whose
//! byte budget a run shares with the vision features.

use std::rc::Rc;
use std::sync::Arc;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::collate::collate;
use super::TrainError;
use crate::data::{
    fit_first, prepare_views, DataError, FittedPage, ImageMode, OnOverflow, PageViews, Pair,
    Prompt, SpecialIds, TextCodec,
};
use crate::model::{Batch, CacheKey, CacheKind, ImageInput, TensorCache};
use crate::render::Renderer;

/// Default byte budget of an encoder's cache (pages, and features during a run): 1 GiB.
pub const DEFAULT_CACHE_BYTES: usize = 1 << 30;

/// A document with its reference summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// Identifier (a label for logs and reports; caches never use it).
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

/// How much of a document its page shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    /// Characters on the page.
    pub shown_chars: usize,
    /// Characters left out (0 unless the document was truncated).
    pub truncated_chars: usize,
    /// Pages the whole document would need.
    pub pages_needed: usize,
}

/// A cached page: the views the model reads and what the page shows.
struct CachedPage {
    views: PageViews,
    shown: Shown,
}

/// Turns examples into model inputs.
pub struct ExampleEncoder {
    renderer: Renderer,
    mode: ImageMode,
    codec: Rc<dyn TextCodec>,
    prompt: String,
    ids: SpecialIds,
    device: Device,
    on_overflow: OnOverflow,
    /// Where documents that overflow the first page go (`--mode auto`: Gundam).
    fallback: Option<(Renderer, ImageMode)>,
    cache: Arc<TensorCache>,
    /// SHA-256 state over the render settings, fonts and mode: a page's key adds its text.
    settings: Sha256,
}

impl ExampleEncoder {
    /// An encoder rendering with `renderer`, preprocessing for `mode`, tokenising with `codec`,
    /// prompting with `prompt` (one `<image>`); long documents are truncated to their first
    /// page ([`OnOverflow::Truncate`]) and pages are cached within [`DEFAULT_CACHE_BYTES`].
    pub fn new(
        renderer: Renderer,
        mode: ImageMode,
        codec: Rc<dyn TextCodec>,
        prompt: impl Into<String>,
        ids: SpecialIds,
        device: &Device,
    ) -> Self {
        let mut settings = Sha256::new();
        settings.update(b"deepsynth page v1\0");
        settings.update(serde_json::to_vec(renderer.config()).expect("config serialises"));
        for f in renderer.fonts().fonts() {
            settings.update(f.name().as_bytes());
            settings.update([0]);
        }
        settings.update(serde_json::to_vec(&mode).expect("mode serialises"));
        Self {
            renderer,
            mode,
            codec,
            prompt: prompt.into(),
            ids,
            device: device.clone(),
            on_overflow: OnOverflow::default(),
            fallback: None,
            cache: Arc::new(TensorCache::new(DEFAULT_CACHE_BYTES)),
            settings,
        }
    }

    /// The same encoder rendering documents that do not fit on its page with `renderer` and
    /// reading them in `mode` (e.g. a Gundam page and mode for long documents, the CLI's
    /// `--mode auto`); the overflow policy then applies to that page.
    pub fn with_fallback(mut self, renderer: Renderer, mode: ImageMode) -> Self {
        self.settings.update(b"\0fallback\0");
        self.settings
            .update(serde_json::to_vec(renderer.config()).expect("config serialises"));
        self.settings
            .update(serde_json::to_vec(&mode).expect("mode serialises"));
        self.fallback = Some((renderer, mode));
        self
    }

    /// The same encoder with another overflow policy.
    pub fn with_on_overflow(mut self, on_overflow: OnOverflow) -> Self {
        self.on_overflow = on_overflow;
        self
    }

    /// The same encoder keeping its pages in `cache` (e.g. one shared with the model's vision
    /// features, under one budget).
    pub fn with_cache(mut self, cache: Arc<TensorCache>) -> Self {
        self.cache = cache;
        self
    }

    /// The cache of pages (and, during a run, of vision features).
    pub fn cache(&self) -> &Arc<TensorCache> {
        &self.cache
    }

    /// The overflow policy.
    pub fn on_overflow(&self) -> OnOverflow {
        self.on_overflow
    }

    /// The tokenizer.
    pub fn codec(&self) -> &dyn TextCodec {
        self.codec.as_ref()
    }

    /// Special ids.
    pub fn special_ids(&self) -> SpecialIds {
        self.ids
    }

    /// The content key of `text`'s page under these settings.
    pub fn page_key(&self, text: &str) -> CacheKey {
        let mut h = self.settings.clone();
        h.update(text.as_bytes());
        let d = h.finalize();
        let word = |i: usize| u64::from_le_bytes(d[i..i + 8].try_into().expect("8 bytes"));
        [word(0), word(8)]
    }

    /// The page of `ex` as views and what it shows (rendered once, then cached by content).
    fn cached(&self, ex: &Example) -> Result<Arc<CachedPage>, TrainError> {
        let key = self.page_key(&ex.text);
        if let Some(hit) = self.cache.get::<CachedPage>(CacheKind::Page, &key) {
            return Ok(hit);
        }
        let (fitted, mode) = self.fit(ex)?;
        let views = prepare_views(&fitted.page.to_rgb(), mode).map_err(|e| example_err(ex, e))?;
        let entry = Arc::new(CachedPage {
            shown: Shown {
                shown_chars: fitted.shown_chars,
                truncated_chars: fitted.truncated_chars,
                pages_needed: fitted.pages_needed,
            },
            views,
        });
        let bytes = entry.views.bytes() + std::mem::size_of::<CachedPage>();
        self.cache
            .insert(CacheKind::Page, key, entry.clone(), bytes);
        Ok(entry)
    }

    /// The page of `ex` and the mode it is read in.
    fn fit(&self, ex: &Example) -> Result<(FittedPage, &ImageMode), TrainError> {
        let mut layouts = vec![(&self.renderer, &self.mode)];
        if let Some((r, m)) = &self.fallback {
            layouts.push((r, m));
        }
        let (fitted, i) = fit_first(&layouts, &ex.text, self.on_overflow).map_err(|e| match e {
            DataError::Overflow { .. } if self.on_overflow == OnOverflow::Error => {
                TrainError::Overflow {
                    id: ex.id.clone(),
                    reason: e.to_string(),
                }
            }
            e => example_err(ex, e),
        })?;
        Ok((fitted, layouts[i].1))
    }

    /// The page of `ex`, preprocessed for the mode.
    pub fn page(&self, ex: &Example) -> Result<ImageInput, TrainError> {
        Ok(self.page_and_positions(ex)?.0)
    }

    /// The page of `ex` and the prompt positions it takes.
    fn page_and_positions(&self, ex: &Example) -> Result<(ImageInput, usize), TrainError> {
        let cached = self.cached(ex)?;
        let prepared = cached
            .views
            .to_tensors(&self.device)
            .map_err(|e| example_err(ex, e))?;
        let input = ImageInput {
            global: prepared.global,
            tiles: prepared.tiles,
        };
        Ok((input, prepared.positions))
    }

    /// How much of `ex` its page shows.
    pub fn shown(&self, ex: &Example) -> Result<Shown, TrainError> {
        Ok(self.cached(ex)?.shown)
    }

    /// The page of `ex` as drawn (before preprocessing), PNG-encoded, with its width, height
    /// and channels (1 for grayscale pages, 3 for colour).
    pub fn page_png(&self, ex: &Example) -> Result<(Vec<u8>, u32, u32, u32), TrainError> {
        let page = self.fit(ex)?.0.page;
        let png = page
            .to_png(crate::render::PngCompression::Fast)
            .map_err(|e| example_err(ex, e))?;
        let channels = if page.is_grayscale() { 1 } else { 3 };
        Ok((png, page.width(), page.height(), channels))
    }

    /// The prompt of `ex` (with `target` + EOS as labels, if given) and its page.
    fn prompt(
        &self,
        ex: &Example,
        target: Option<&str>,
    ) -> Result<(Prompt, ImageInput), TrainError> {
        let (page, positions) = self.page_and_positions(ex)?;
        let prompt = Prompt::from_text(
            self.codec.as_ref(),
            &self.prompt,
            &[positions],
            target,
            self.ids,
        )
        .map_err(|e| example_err(ex, e))?;
        Ok((prompt, page))
    }

    /// The training prompt (prompt + summary + EOS, labels on the summary) and the page; an
    /// empty summary is refused (there would be nothing to learn but EOS).
    pub fn training(&self, ex: &Example) -> Result<(Prompt, ImageInput), TrainError> {
        if ex.summary.trim().is_empty() {
            return Err(example_err(ex, "the reference summary is empty"));
        }
        self.prompt(ex, Some(&ex.summary))
    }

    /// The generation prompt (no target) and the page.
    pub fn inference(&self, ex: &Example) -> Result<(Prompt, ImageInput), TrainError> {
        self.prompt(ex, None)
    }

    /// The training prompts of `examples` collated into one right-padded batch (pad = EOS);
    /// the first example that cannot be prepared fails the batch.
    pub fn training_batch<'a>(
        &self,
        examples: impl IntoIterator<Item = &'a Example>,
    ) -> Result<Batch, TrainError> {
        let prepared = examples
            .into_iter()
            .map(|ex| self.training(ex))
            .collect::<Result<Vec<_>, _>>()?;
        self.collate(prepared)
    }

    /// Prepared prompts and pages collated into one right-padded batch (pad = EOS).
    pub fn collate(&self, prepared: Vec<(Prompt, ImageInput)>) -> Result<Batch, TrainError> {
        let (prompts, pages): (Vec<Prompt>, Vec<Vec<ImageInput>>) =
            prepared.into_iter().map(|(p, i)| (p, vec![i])).unzip();
        Ok(collate(&prompts, pages, self.ids.eos, &self.device)?)
    }
}

fn example_err(ex: &Example, reason: impl std::fmt::Display) -> TrainError {
    TrainError::Example {
        id: ex.id.clone(),
        reason: reason.to_string(),
    }
}
