//! The CLIP-L part of DeepSeek-OCR's encoder (`model.vision_model`, Radford et al., 2021,
//! <https://arxiv.org/abs/2103.00020>), consuming SAM's features as its patch embeddings: class
//! token + features + (bicubic-antialias resized) positions, `pre_layrnorm`, pre-LN blocks with a
//! fused `qkv_proj` and quick-GELU, and no final norm.

use candle_core::{DType, IndexOp, Tensor};

use crate::model::config::ClipConfig;
use crate::model::interp;
use crate::model::nn::LayerNorm;
use crate::model::ops;
use crate::quant::QLinear;
use crate::weights::{Weights, WeightsError};

struct Layer {
    ln1: LayerNorm,
    qkv: QLinear,
    out: QLinear,
    ln2: LayerNorm,
    fc1: QLinear,
    fc2: QLinear,
}

fn quick_gelu(x: &Tensor) -> candle_core::Result<Tensor> {
    x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
}

/// The CLIP transformer over SAM features.
pub struct Clip {
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
}

impl Clip {
    /// Loads the model under `w` (the `model.vision_model` prefix).
    pub fn new(cfg: &ClipConfig, w: &Weights) -> Result<Self, WeightsError> {
        let d = cfg.width;
        let grid = cfg.image_size / cfg.patch_size;
        let e = w.pp("embeddings");
        let layers = (0..cfg.layers)
            .map(|i| {
                let l = w.pp("transformer.layers").pp(i);
                Ok(Layer {
                    ln1: LayerNorm::load(&l.pp("layer_norm1"), d, cfg.layernorm_epsilon)?,
                    qkv: QLinear::load(&l.pp("self_attn.qkv_proj"), d, 3 * d, true)?,
                    out: QLinear::load(&l.pp("self_attn.out_proj"), d, d, true)?,
                    ln2: LayerNorm::load(&l.pp("layer_norm2"), d, cfg.layernorm_epsilon)?,
                    fc1: QLinear::load(&l.pp("mlp.fc1"), d, cfg.ffn_hidden_size, true)?,
                    fc2: QLinear::load(&l.pp("mlp.fc2"), cfg.ffn_hidden_size, d, true)?,
                })
            })
            .collect::<Result<Vec<_>, WeightsError>>()?;
        Ok(Self {
            class_embedding: e.get(&[d], "class_embedding")?,
            position_embedding: e.get(&[grid * grid + 1, d], "position_embedding.weight")?,
            pre_layrnorm: LayerNorm::load(&w.pp("pre_layrnorm"), d, cfg.pre_layernorm_epsilon)?,
            layers,
            heads: cfg.heads,
        })
    }

    /// Positions for `tokens` = grid^2 + 1 (`get_abs_pos`: class row kept, the grid resized).
    fn positions(&self, tokens: usize) -> candle_core::Result<Tensor> {
        let (rows, d) = self.position_embedding.dims2()?;
        let src = ((rows - 1) as f64).sqrt() as usize;
        let tgt = (tokens as f64).sqrt() as usize;
        if src == tgt {
            return Ok(self.position_embedding.clone());
        }
        if self.position_embedding.track_op() {
            // A trained table: resize through its matrix so the gradient reaches it.
            let resized = interp::resize_rows_differentiable(
                &self.position_embedding.i(1..)?,
                tgt * tgt,
                |d, ch| interp::bicubic_antialias(d, ch, (src, src), (tgt, tgt)),
            )?;
            return Tensor::cat(&[&self.position_embedding.i(0..1)?, &resized], 0);
        }
        let grid = self
            .position_embedding
            .i(1..)?
            .to_dtype(DType::F32)?
            .t()? // [d, src*src]
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let out = interp::bicubic_antialias(&grid, d, (src, src), (tgt, tgt));
        let resized = Tensor::from_vec(out, (d, tgt * tgt), self.position_embedding.device())?
            .t()?
            .to_dtype(self.position_embedding.dtype())?;
        Tensor::cat(&[&self.position_embedding.i(0..1)?, &resized], 0)
    }

    /// The embeddings before `pre_layrnorm` (class token first).
    ///
    /// # Shapes
    /// SAM features `[B, C, h, w]` -> `[B, 1 + h*w, C]`.
    pub fn embeddings(&self, sam: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, _, _) = sam.dims4()?;
        let patches = sam.flatten_from(2)?.transpose(1, 2)?;
        let cls = self.class_embedding.reshape((1, 1, c))?.repeat((b, 1, 1))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?;
        let pos = self.positions(x.dim(1)?)?;
        x.broadcast_add(&pos.unsqueeze(0)?)
    }

    /// # Shapes
    /// SAM features `[B, C, h, w]` -> `[B, 1 + h*w, C]` (class token at index 0).
    pub fn forward(&self, sam: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = self.pre_layrnorm.forward(&self.embeddings(sam)?)?;
        for l in &self.layers {
            let h = (&x + self.attention(l, &l.ln1.forward(&x)?)?)?;
            x = (&h
                + l.fc2
                    .forward(&quick_gelu(&l.fc1.forward(&l.ln2.forward(&h)?)?)?)?)?;
        }
        Ok(x)
    }

    fn attention(&self, l: &Layer, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, s, d) = x.dims3()?;
        let nh = self.heads;
        let hd = d / nh;
        let qkv = l
            .qkv
            .forward(x)?
            .reshape((b, s, 3, nh, hd))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?; // [3, B, nh, S, hd]
        let (q, k, v) = (qkv.i(0)?, qkv.i(1)?, qkv.i(2)?);
        let logits = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let out = ops::softmax_last_dim(&logits)?.matmul(&v)?;
        let out = out.transpose(1, 2)?.reshape((b, s, d))?;
        l.out.forward(&out)
    }
}
