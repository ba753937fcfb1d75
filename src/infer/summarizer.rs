//! `Summarizer`: text or page images in, summaries out, with the latency of each stage.
//!
//! Text is rendered to the page the model's image mode reads ([`crate::data::fit_first`]: the
//! whole document when it fits, on a larger page in the fallback mode when one is set;
//! otherwise its first page, counted in [`Summary::truncated_chars`], or an error, as
//! [`LoadOptions::on_overflow`] says), the page is preprocessed for the mode,
//! encoded by the vision tower, merged into the prompt (`<image>\n` + instruction in
//! DeepSeek-OCR's plain template), and decoded with a [`GenerationConfig`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::DType;

use crate::device::DeviceSpec;

use image::RgbImage;
use serde::Serialize;

use super::search::{generate, FinishReason, PromptInput};
use super::{GenerationConfig, InferError};
use crate::data::{
    decode_image, fit_first, page_config_for, prepare_image, ImageMode, OnOverflow, Prompt,
    SpecialIds, TextCodec, Tokenizer,
};
use crate::model::hub::{offline_from_env, resolve, ModelSource};
use crate::model::{DeepseekOcr, ImageInput, ModelError};
use crate::render::{Preset, Renderer};
use crate::weights::QuantizeSpec;

/// What [`Summarizer::load`] loads.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Hub id (`org/name[@revision]`) or a local folder with config.json, tokenizer.json and
    /// safetensors weights.
    pub model: String,
    /// A PEFT adapter folder to load on top.
    pub adapter: Option<PathBuf>,
    /// A `tokenizer.json` to use instead of the model's own.
    pub tokenizer: Option<PathBuf>,
    /// Compute dtype.
    pub dtype: DType,
    /// The device the model and every tensor of its runs live on (default: `auto`, the first
    /// CUDA GPU when built with `cuda` and one is present, else the CPU).
    pub device: DeviceSpec,
    /// Quantise the decoder to NF4 while loading.
    pub load_in_4bit: bool,
    /// Never touch the network (also `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Vision mode.
    pub mode: ImageMode,
    /// Render preset for text inputs; `None`: the page the mode reads
    /// ([`page_config_for`]).
    pub render: Option<Preset>,
    /// The mode (on its own page, [`page_config_for`]) of texts that do not fit on the first
    /// page; `None`: straight to the overflow policy.
    pub long_mode: Option<ImageMode>,
    /// What happens to a text input that does not fit on one page.
    pub on_overflow: OnOverflow,
    /// Decoding.
    pub generation: GenerationConfig,
    /// Replace `mode` and `long_mode` by the model architecture's defaults
    /// ([`crate::model::VisionConfig::image_modes`]); otherwise they must suit the model.
    pub auto_mode: bool,
}

impl LoadOptions {
    /// Defaults for `model`: f32, dense, Base mode and its page; texts too long for it on a
    /// Gundam page (global view + 2 x 3 tiles); longer ones truncated to that page (and
    /// counted); greedy.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            adapter: None,
            tokenizer: None,
            dtype: DType::F32,
            device: DeviceSpec::Auto,
            load_in_4bit: false,
            offline: false,
            mode: ImageMode::BASE,
            render: None,
            long_mode: Some(ImageMode::GUNDAM),
            on_overflow: OnOverflow::Truncate,
            generation: GenerationConfig::greedy(),
            auto_mode: false,
        }
    }
}

/// Seconds spent in each stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SummaryTimings {
    /// Rendering text to a page (0 for image inputs).
    pub render_s: f64,
    /// Preprocessing + vision encoder + projector.
    pub encode_s: f64,
    /// The prompt pass of the decoder.
    pub prefill_s: f64,
    /// Decoding steps.
    pub decode_s: f64,
}

/// One summary.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The decoded summary (special tokens dropped, trimmed).
    pub text: String,
    /// The generated ids (EOS included when finished by it).
    pub tokens: Vec<u32>,
    /// Why decoding stopped.
    pub finish: FinishReason,
    /// Stage timings.
    pub timings: SummaryTimings,
    /// Generated tokens per second of decoding.
    pub tokens_per_s: f64,
    /// Encoder output tokens of the page(s) (without newline/separator positions).
    pub visual_tokens: usize,
    /// Positions the image(s) take in the prompt.
    pub image_positions: usize,
    /// Text tokens shown on the page per visual token (text inputs only).
    pub compression: Option<f64>,
    /// Characters of the document on the page (text inputs only).
    pub shown_chars: Option<usize>,
    /// Characters of the document left off the page (0 unless truncated).
    pub truncated_chars: usize,
}

/// The summarisation service.
pub struct Summarizer {
    model: DeepseekOcr,
    codec: Box<dyn TextCodec>,
    renderer: Renderer,
    mode: ImageMode,
    prompt: String,
    ids: SpecialIds,
    on_overflow: OnOverflow,
    fallback: Option<(Renderer, ImageMode)>,
    /// How to decode.
    pub generation: GenerationConfig,
}

impl Summarizer {
    /// A service over a loaded model (adapters already attached or merged) and its tokenizer.
    pub fn new(
        model: DeepseekOcr,
        codec: Box<dyn TextCodec>,
        renderer: Renderer,
        mode: ImageMode,
        generation: GenerationConfig,
    ) -> Self {
        let d = &model.config().decoder;
        let ids = SpecialIds {
            bos: d.bos_token_id.unwrap_or(0),
            eos: d.eos_token_id.unwrap_or(1),
            image: model.config().image_token_id,
        };
        Self {
            model,
            codec,
            renderer,
            mode,
            prompt: "<image>\nSummarize this document.".into(),
            ids,
            on_overflow: OnOverflow::Truncate,
            fallback: None,
            generation,
        }
    }

    /// The same service rendering texts that do not fit on its page with `renderer` and
    /// reading them in `mode` (e.g. a Gundam page for long documents).
    pub fn with_fallback(mut self, renderer: Renderer, mode: ImageMode) -> Self {
        self.fallback = Some((renderer, mode));
        self
    }

    /// The same service with another policy for texts that do not fit on one page.
    pub fn with_on_overflow(mut self, on_overflow: OnOverflow) -> Self {
        self.on_overflow = on_overflow;
        self
    }

    /// Resolves, loads and wires a model, its tokenizer and an optional adapter; EOS/pad come
    /// from the model's config.
    pub fn load(opts: &LoadOptions) -> Result<Self, InferError> {
        let files = resolve(
            &ModelSource::parse(&opts.model),
            opts.offline || offline_from_env(),
        )?;
        let tok = opts
            .tokenizer
            .clone()
            .or(files.tokenizer.clone())
            .ok_or_else(|| ModelError::Hub {
                model: opts.model.clone(),
                reason: "the model has no tokenizer.json".into(),
            })?;
        let codec: Box<dyn TextCodec> = Box::new(Tokenizer::from_file(&tok)?);
        let quantize = opts.load_in_4bit.then(QuantizeSpec::nf4_decoder);
        let device = opts.device.resolve()?;
        let mut m = DeepseekOcr::from_files(&files, opts.dtype, &device, quantize)?;
        if let Some(a) = &opts.adapter {
            crate::lora::load_adapter(&mut m, a)?;
        }
        let mut g = opts.generation.clone();
        g.eos_token_ids = vec![m.config().decoder.eos_token_id.unwrap_or(1)];
        g.pad_token_id = g.eos_token_ids[0];
        let requested = (!opts.auto_mode).then_some((opts.mode, opts.long_mode));
        let (mode, long_mode) = m.config().vision_config.image_modes(requested)?;
        let renderer = match opts.render {
            Some(p) => Renderer::from_preset(p)?,
            None => Renderer::new(page_config_for(&mode))?,
        };
        let mut s = Self::new(m, codec, renderer, mode, g).with_on_overflow(opts.on_overflow);
        if let Some(long) = long_mode {
            s = s.with_fallback(Renderer::new(page_config_for(&long))?, long);
        }
        Ok(s)
    }

    /// Sets the prompt to `<image>\n` + `instruction` (default `Summarize this document.`).
    pub fn with_instruction(mut self, instruction: impl AsRef<str>) -> Self {
        self.prompt = format!("<image>\n{}", instruction.as_ref());
        self
    }

    /// Sets the whole prompt text; it must contain exactly one `<image>`.
    pub fn with_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = prompt.into();
        self
    }

    /// The model.
    pub fn model(&self) -> &DeepseekOcr {
        &self.model
    }

    /// The tokenizer.
    pub fn codec(&self) -> &dyn TextCodec {
        self.codec.as_ref()
    }

    /// The prompt text (`<image>\n` + instruction by default).
    pub fn prompt_text(&self) -> &str {
        &self.prompt
    }

    /// Renders `text` onto one page and summarises it; a text that does not fit is
    /// truncated to its first page (counted in [`Summary::truncated_chars`]) or refused, as
    /// the overflow policy says. The compression counts the text shown.
    pub fn summarize_text(&self, text: &str) -> Result<Summary, InferError> {
        let t0 = Instant::now();
        let mut layouts = vec![(&self.renderer, &self.mode)];
        if let Some((r, m)) = &self.fallback {
            layouts.push((r, m));
        }
        let (fitted, i) = fit_first(&layouts, text, self.on_overflow)?;
        let render_s = t0.elapsed().as_secs_f64();
        let mut s = self.summarize_in(&fitted.page.to_rgb(), layouts[i].1)?;
        s.timings.render_s = render_s;
        let text_tokens = self.codec.encode(fitted.shown_text(text))?.len();
        s.compression = Some(text_tokens as f64 / s.visual_tokens.max(1) as f64);
        s.shown_chars = Some(fitted.shown_chars);
        s.truncated_chars = fitted.truncated_chars;
        Ok(s)
    }

    /// Summarises encoded image bytes (PNG, JPEG); corrupt bytes give a typed error.
    pub fn summarize_image_bytes(&self, bytes: &[u8], name: &str) -> Result<Summary, InferError> {
        self.summarize_image(&decode_image(bytes, name)?)
    }

    /// Summarises an image file.
    pub fn summarize_file(&self, path: &Path) -> Result<Summary, InferError> {
        let bytes = std::fs::read(path)
            .map_err(|e| InferError::Input(format!("cannot read {}: {e}", path.display())))?;
        self.summarize_image_bytes(&bytes, &path.display().to_string())
    }

    /// Summarises one page image.
    pub fn summarize_image(&self, img: &RgbImage) -> Result<Summary, InferError> {
        self.summarize_in(img, &self.mode)
    }

    /// Summarises one page image read in `mode`.
    fn summarize_in(&self, img: &RgbImage, mode: &ImageMode) -> Result<Summary, InferError> {
        let t0 = Instant::now();
        let prepared = prepare_image(img, mode, self.model.device())?;
        let prompt = Prompt::from_text(
            self.codec.as_ref(),
            &self.prompt,
            &[prepared.positions],
            None,
            self.ids,
        )?;
        let image = ImageInput {
            global: prepared.global,
            tiles: prepared.tiles,
        };
        let dev = self.model.device();
        let ids = candle_core::Tensor::from_slice(&prompt.input_ids, (1, prompt.len()), dev)?;
        let mask = candle_core::Tensor::from_slice(&prompt.image_mask, (1, prompt.len()), dev)?;
        let feats = self.model.encode_images(&[vec![image]])?;
        let embeds = self.model.merge_embeddings(&ids, &mask, &feats)?;
        let encode_s = t0.elapsed().as_secs_f64();
        let input = PromptInput {
            embeds: embeds.squeeze(0)?,
            ids: prompt.input_ids.clone(),
        };
        let mut cfg = self.generation.clone();
        if cfg.eos_token_ids.is_empty() {
            cfg.eos_token_ids = vec![self.ids.eos];
        }
        let g = generate(&self.model, &[input], &cfg, None)?
            .pop()
            .expect("one prompt gives one result");
        let text = self.codec.decode(&g.tokens, true)?.trim().to_string();
        let (cols, rows) = prepared.grid;
        let visual_tokens = mode.visual_tokens((cols, rows));
        Ok(Summary {
            text,
            tokens_per_s: g.tokens.len() as f64 / g.decode_s.max(1e-9),
            tokens: g.tokens,
            finish: g.finish,
            timings: SummaryTimings {
                render_s: 0.0,
                encode_s,
                prefill_s: g.prefill_s,
                decode_s: g.decode_s,
            },
            visual_tokens,
            image_positions: prepared.positions,
            compression: None,
            shown_chars: None,
            truncated_chars: 0,
        })
    }
}

/// One row per `(label, summary)`: the text, token count, why it stopped, stage timings,
/// tokens/s and the visual token count, for comparing generation settings side by side.
#[cfg(feature = "frames")]
pub fn comparison_frame(
    rows: &[(&str, &Summary)],
) -> polars::prelude::PolarsResult<polars::prelude::DataFrame> {
    use polars::prelude::{Column, DataFrame};
    let col_f = |name: &str, f: &dyn Fn(&Summary) -> f64| {
        Column::new(
            name.into(),
            rows.iter().map(|(_, s)| f(s)).collect::<Vec<f64>>(),
        )
    };
    DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "setting".into(),
                rows.iter().map(|(l, _)| l.to_string()).collect::<Vec<_>>(),
            ),
            Column::new(
                "summary".into(),
                rows.iter().map(|(_, s)| s.text.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "tokens".into(),
                rows.iter()
                    .map(|(_, s)| s.tokens.len() as u64)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "finish".into(),
                rows.iter()
                    .map(|(_, s)| match s.finish {
                        FinishReason::Eos => "eos",
                        FinishReason::MaxTokens => "max_tokens",
                    })
                    .collect::<Vec<_>>(),
            ),
            col_f("encode_s", &|s| s.timings.encode_s),
            col_f("prefill_s", &|s| s.timings.prefill_s),
            col_f("decode_s", &|s| s.timings.decode_s),
            col_f("tokens_per_s", &|s| s.tokens_per_s),
            Column::new(
                "visual_tokens".into(),
                rows.iter()
                    .map(|(_, s)| s.visual_tokens as u64)
                    .collect::<Vec<_>>(),
            ),
        ],
    )
}
