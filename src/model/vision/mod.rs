//! The vision side of both DeepSeek-OCR generations: SAM + compressor, then CLIP
//! (DeepSeek-OCR) or the Qwen2 encoder with learned queries (DeepSeek-OCR 2), the linear
//! projector and the token layout that turns a page's views into decoder positions.
//!
//! Layout of one image in DeepSeek-OCR (as `DeepseekOCRModel.forward`): the local tiles
//! stitched into one grid, each grid row followed by `image_newline`; then the global view, each
//! row followed by `image_newline`; then one `view_seperator`. In DeepSeek-OCR 2: each tile's
//! query outputs in tile order, then the global view's, then `view_seperator` (no newlines).

mod attention;
mod clip;
mod fused_attention;
mod qwen2_encoder;
mod sam;

pub use clip::Clip;
pub use qwen2_encoder::{hybrid_mask, EncoderStages, Qwen2Encoder, LAYERS as QWEN2_LAYERS};
pub use sam::{Sam, SamStages};

use candle_core::{IndexOp, Tensor};

use super::config::{Architecture, Config};
use super::ModelError;
use crate::quant::QLinear;
use crate::weights::Weights;

/// One image ready for the encoder: its global view and, in crop mode, its tiles.
#[derive(Clone, Debug)]
pub struct ImageInput {
    /// The global view, normalised: `[3, S, S]`.
    pub global: Tensor,
    /// Tiles `[P, 3, s, s]` in row-major order and the grid (`cols`, `rows`), `P = cols * rows`.
    pub tiles: Option<(Tensor, (usize, usize))>,
}

/// The encoder-specific stages of one view.
#[derive(Debug)]
pub enum EncoderTrace {
    /// DeepSeek-OCR's CLIP.
    Clip {
        /// CLIP embeddings before `pre_layrnorm` `[B, 1 + h*w, C3]`.
        embeddings: Tensor,
        /// CLIP output `[B, 1 + h*w, C3]`.
        output: Tensor,
    },
    /// DeepSeek-OCR 2's Qwen2 encoder over image tokens and queries, `[B, 2*h*w, C3]` each.
    Qwen2(EncoderStages),
}

/// Per-stage outputs of one view, for parity checks.
#[derive(Debug)]
pub struct ViewTrace {
    /// SAM neck output `[B, out_chans, S/16, S/16]`.
    pub sam_neck: Tensor,
    /// `net_2` output `[B, C2, h2, w2]`.
    pub sam_net2: Tensor,
    /// SAM output `[B, C3, h, w]`.
    pub sam: Tensor,
    /// The second encoder's stages.
    pub encoder: EncoderTrace,
    /// Projector output `[B, h*w, hidden]`.
    pub projected: Tensor,
}

/// What follows SAM: CLIP and `image_newline` (DeepSeek-OCR) or the Qwen2 encoder
/// (DeepSeek-OCR 2).
enum Tower {
    Clip { clip: Clip, image_newline: Tensor },
    Qwen2(Qwen2Encoder),
}

/// SAM, the second encoder, the projector and the layout embeddings.
pub struct VisionEncoder {
    sam: Sam,
    tower: Tower,
    projector: QLinear,
    view_seperator: Tensor,
}

impl VisionEncoder {
    /// Loads the encoder under `w` (the `model` prefix), for the architecture `cfg` describes.
    pub fn new(cfg: &Config, w: &Weights) -> Result<Self, ModelError> {
        let p = &cfg.projector_config;
        let tower = match cfg.vision_config.architecture()? {
            Architecture::Ocr1(c) => Tower::Clip {
                clip: Clip::new(c, &w.pp("vision_model"))?,
                image_newline: w.get(&[p.n_embed], "image_newline")?,
            },
            Architecture::Ocr2(q) => Tower::Qwen2(Qwen2Encoder::new(q, &w.pp("qwen2_model"))?),
        };
        Ok(Self {
            sam: Sam::new(&cfg.vision_config, &w.pp("sam_model"))?,
            tower,
            projector: QLinear::load(&w.pp("projector.layers"), p.input_dim, p.n_embed, true)?,
            view_seperator: w.get(&[p.n_embed], "view_seperator")?,
        })
    }

    /// SAM (with its compressor).
    pub fn sam(&self) -> &Sam {
        &self.sam
    }

    /// Encodes a batch of same-size views with every intermediate.
    ///
    /// # Shapes
    /// `[B, 3, S, S]` -> projected `[B, (S/64)^2, hidden]`.
    pub fn encode_views_traced(&self, x: &Tensor) -> candle_core::Result<ViewTrace> {
        let s = self.sam.forward_stages(x)?;
        let (encoder, projected) = match &self.tower {
            Tower::Clip { clip, .. } => {
                let embeddings = clip.embeddings(&s.out)?;
                let output = clip.forward(&s.out)?;
                let projected = self.project_clip(&output, &s.out)?;
                (EncoderTrace::Clip { embeddings, output }, projected)
            }
            Tower::Qwen2(enc) => {
                let stages = enc.forward_stages(&s.out, false)?;
                let n = stages.output.dim(1)? / 2;
                let projected = self.projector.forward(&stages.output.narrow(1, n, n)?)?;
                (EncoderTrace::Qwen2(stages), projected)
            }
        };
        Ok(ViewTrace {
            sam_neck: s.neck,
            sam_net2: s.net2,
            sam: s.out,
            encoder,
            projected,
        })
    }

    fn project_clip(&self, clip: &Tensor, sam: &Tensor) -> candle_core::Result<Tensor> {
        let sam_flat = sam.flatten_from(2)?.transpose(1, 2)?;
        let feats = Tensor::cat(&[&clip.i((.., 1..))?, &sam_flat], 2)?;
        self.projector.forward(&feats)
    }

    /// Encodes a batch of same-size views.
    ///
    /// # Shapes
    /// `[B, 3, S, S]` -> `[B, (S/64)^2, hidden]`.
    pub fn encode_views(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.encode_views_t(x, false)
    }

    /// [`Self::encode_views`]; `train` records the backward pass through the Qwen2 encoder
    /// (SAM and CLIP stay frozen either way).
    pub fn encode_views_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let sam = self.sam.forward(x)?;
        match &self.tower {
            Tower::Clip { clip, .. } => self.project_clip(&clip.forward(&sam)?, &sam),
            Tower::Qwen2(enc) => self.projector.forward(&enc.forward(&sam, train)?),
        }
    }

    /// DeepSeek-OCR 2's Qwen2 encoder (`None` for DeepSeek-OCR).
    pub fn qwen2(&self) -> Option<&Qwen2Encoder> {
        match &self.tower {
            Tower::Qwen2(enc) => Some(enc),
            Tower::Clip { .. } => None,
        }
    }

    /// [`Self::qwen2`], mutably.
    pub fn qwen2_mut(&mut self) -> Option<&mut Qwen2Encoder> {
        match &mut self.tower {
            Tower::Qwen2(enc) => Some(enc),
            Tower::Clip { .. } => None,
        }
    }

    /// `[rows, cols, d]` grid -> rows each followed by `image_newline`, flattened.
    fn with_newlines(&self, grid: &Tensor, newline: &Tensor) -> candle_core::Result<Tensor> {
        let (rows, _, d) = grid.dims3()?;
        let nl = newline
            .to_dtype(grid.dtype())?
            .reshape((1, 1, d))?
            .repeat((rows, 1, 1))?;
        Tensor::cat(&[grid, &nl], 1)?.reshape(((), d))
    }

    /// The decoder rows of one image in layout order: DeepSeek-OCR's 2-D grids with newlines
    /// (module docs), or DeepSeek-OCR 2's flat list (tiles in order, global, separator).
    ///
    /// # Shapes
    /// -> `[positions, hidden]` (273 for an OCR 1 Base-mode page without tiles; 257 + 144 per
    /// tile for OCR 2).
    pub fn encode_image(&self, image: &ImageInput) -> candle_core::Result<Tensor> {
        self.encode_image_t(image, false)
    }

    /// [`Self::encode_image`]; `train` as in [`Self::encode_views_t`].
    pub fn encode_image_t(&self, image: &ImageInput, train: bool) -> candle_core::Result<Tensor> {
        let global = self.encode_views_t(&image.global.unsqueeze(0)?, train)?;
        let (_, hw, d) = global.dims3()?;
        let sep = self
            .view_seperator
            .to_dtype(global.dtype())?
            .reshape((1, d))?;
        let newline = match &self.tower {
            Tower::Clip { image_newline, .. } => image_newline,
            Tower::Qwen2(_) => {
                let global = global.squeeze(0)?;
                let Some((tiles, _)) = &image.tiles else {
                    return Tensor::cat(&[&global, &sep], 0);
                };
                let local = self.encode_views_t(tiles, train)?.flatten_to(1)?;
                return Tensor::cat(&[&local, &global, &sep], 0);
            }
        };
        let side = (hw as f64).sqrt() as usize;
        let global = self.with_newlines(&global.reshape((side, side, d))?, newline)?;
        let Some((tiles, (cols, rows))) = &image.tiles else {
            return Tensor::cat(&[&global, &sep], 0);
        };
        let local = self.encode_views(tiles)?; // [P, hw2, d]
        let (_, hw2, _) = local.dims3()?;
        let s2 = (hw2 as f64).sqrt() as usize;
        let local = local
            .reshape((*rows, *cols, s2, s2, d))?
            .permute((0, 2, 1, 3, 4))?
            .reshape((rows * s2, cols * s2, d))?;
        let local = self.with_newlines(&local, newline)?;
        Tensor::cat(&[&local, &global, &sep], 0)
    }
}
