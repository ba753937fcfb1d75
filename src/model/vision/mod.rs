//! DeepSeek-OCR's vision side: SAM + compressor, CLIP, the linear projector and the token
//! layout that turns a page's views into decoder positions.
//!
//! Layout of one image (as `DeepseekOCRModel.forward`): the local tiles stitched into one grid,
//! each grid row followed by `image_newline`; then the global view, each row followed by
//! `image_newline`; then one `view_seperator`.

mod attention;
mod clip;
mod fused_attention;
mod sam;

pub use clip::Clip;
pub use sam::Sam;

use candle_core::{IndexOp, Tensor};

use super::config::Config;
use crate::quant::QLinear;
use crate::weights::{Weights, WeightsError};

/// One image ready for the encoder: its global view and, in crop mode, its tiles.
#[derive(Clone, Debug)]
pub struct ImageInput {
    /// The global view, normalised: `[3, S, S]`.
    pub global: Tensor,
    /// Tiles `[P, 3, s, s]` in row-major order and the grid (`cols`, `rows`), `P = cols * rows`.
    pub tiles: Option<(Tensor, (usize, usize))>,
}

/// Per-stage outputs of one view, for parity checks.
#[derive(Debug)]
pub struct ViewTrace {
    /// `net_2` output `[B, C2, h2, w2]`.
    pub sam_net2: Tensor,
    /// SAM output `[B, C3, h, w]`.
    pub sam: Tensor,
    /// CLIP embeddings before `pre_layrnorm` `[B, 1 + h*w, C3]`.
    pub clip_embeddings: Tensor,
    /// CLIP output `[B, 1 + h*w, C3]`.
    pub clip: Tensor,
    /// Projector output `[B, h*w, hidden]`.
    pub projected: Tensor,
}

/// SAM, CLIP, projector and the two layout embeddings.
pub struct VisionEncoder {
    sam: Sam,
    clip: Clip,
    projector: QLinear,
    image_newline: Tensor,
    view_seperator: Tensor,
}

impl VisionEncoder {
    /// Loads the encoder under `w` (the `model` prefix).
    pub fn new(cfg: &Config, w: &Weights) -> Result<Self, WeightsError> {
        let p = &cfg.projector_config;
        Ok(Self {
            sam: Sam::new(&cfg.vision_config, &w.pp("sam_model"))?,
            clip: Clip::new(&cfg.vision_config.width.clip_l, &w.pp("vision_model"))?,
            projector: QLinear::load(&w.pp("projector.layers"), p.input_dim, p.n_embed, true)?,
            image_newline: w.get(&[p.n_embed], "image_newline")?,
            view_seperator: w.get(&[p.n_embed], "view_seperator")?,
        })
    }

    /// Encodes a batch of same-size views with every intermediate.
    ///
    /// # Shapes
    /// `[B, 3, S, S]` -> projected `[B, (S/64)^2, hidden]`.
    pub fn encode_views_traced(&self, x: &Tensor) -> candle_core::Result<ViewTrace> {
        let (sam_net2, sam) = self.sam.forward_with_net2(x)?;
        let clip_embeddings = self.clip.embeddings(&sam)?;
        let clip = self.clip.forward(&sam)?;
        let projected = self.project(&clip, &sam)?;
        Ok(ViewTrace {
            sam_net2,
            sam,
            clip_embeddings,
            clip,
            projected,
        })
    }

    fn project(&self, clip: &Tensor, sam: &Tensor) -> candle_core::Result<Tensor> {
        let sam_flat = sam.flatten_from(2)?.transpose(1, 2)?;
        let feats = Tensor::cat(&[&clip.i((.., 1..))?, &sam_flat], 2)?;
        self.projector.forward(&feats)
    }

    /// Encodes a batch of same-size views.
    ///
    /// # Shapes
    /// `[B, 3, S, S]` -> `[B, (S/64)^2, hidden]`.
    pub fn encode_views(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let sam = self.sam.forward(x)?;
        let clip = self.clip.forward(&sam)?;
        self.project(&clip, &sam)
    }

    /// `[rows, cols, d]` grid -> rows each followed by `image_newline`, flattened.
    fn with_newlines(&self, grid: &Tensor) -> candle_core::Result<Tensor> {
        let (rows, _, d) = grid.dims3()?;
        let nl = self
            .image_newline
            .to_dtype(grid.dtype())?
            .reshape((1, 1, d))?
            .repeat((rows, 1, 1))?;
        Tensor::cat(&[grid, &nl], 1)?.reshape(((), d))
    }

    /// The decoder rows of one image in layout order.
    ///
    /// # Shapes
    /// -> `[positions, hidden]` (273 for a Base-mode page without tiles).
    pub fn encode_image(&self, image: &ImageInput) -> candle_core::Result<Tensor> {
        let global = self.encode_views(&image.global.unsqueeze(0)?)?;
        let (_, hw, d) = global.dims3()?;
        let side = (hw as f64).sqrt() as usize;
        let global = self.with_newlines(&global.reshape((side, side, d))?)?;
        let sep = self
            .view_seperator
            .to_dtype(global.dtype())?
            .reshape((1, d))?;
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
        let local = self.with_newlines(&local)?;
        Tensor::cat(&[&local, &global, &sep], 0)
    }
}
