//! DeepSeek-OCR 2's Qwen2 encoder ("Visual Causal Flow", <https://arxiv.org/abs/2601.20552>),
//! `model.qwen2_model`: SAM's `N = g*g` feature tokens followed by `N` learned queries
//! (`query_1024` for a 16x16 global grid, `query_768` for a 12x12 tile grid) run through
//! pre-norm Qwen2 layers (GQA with q/k/v bias, RoPE over positions `0..2N`, SiLU-gated MLP,
//! RMSNorm), then a final RMSNorm; only the queries' rows go on.
//!
//! The attention mask is bidirectional among the image tokens, causal among the queries, every
//! query sees every image token and image tokens never see queries. The layers are the
//! decoder's [`DecoderLayer`] with a dense MLP: the same attention, RoPE, norm and MLP code.

use candle_core::{DType, Device, Tensor};

use crate::lora::LoraLinear;
use crate::model::config::Qwen2EncoderConfig;
use crate::model::decoder::{Attention, AttentionHeads, DecoderLayer, FeedForward, Mlp, Rope};
use crate::model::nn::RmsNorm;
use crate::weights::{Weights, WeightsError};

/// The encoder's outputs over the whole sequence (image tokens then queries).
#[derive(Debug)]
pub struct EncoderStages {
    /// Output of layer 0 `[B, 2N, dim]`.
    pub layer0: Tensor,
    /// After the final norm `[B, 2N, dim]`; rows `N..` are the queries.
    pub output: Tensor,
}

/// The Qwen2 encoder with its two query banks.
#[derive(Clone, Debug)]
pub struct Qwen2Encoder {
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    rope: Rope,
    query_global: Tensor,
    query_tile: Tensor,
}

impl Qwen2Encoder {
    /// Loads the encoder under `w` (the `model.qwen2_model` prefix).
    pub fn new(cfg: &Qwen2EncoderConfig, w: &Weights) -> Result<Self, WeightsError> {
        let m = w.pp("model.model");
        let dim = cfg.dim;
        let heads = AttentionHeads {
            hidden: dim,
            heads: cfg.heads,
            kv_heads: cfg.kv_heads,
            head_dim: cfg.head_dim(),
        };
        let eps = cfg.rms_norm_eps;
        let layers = (0..cfg.layers)
            .map(|i| {
                let l = m.pp("layers").pp(i);
                Ok(DecoderLayer {
                    input_layernorm: RmsNorm::load(&l.pp("input_layernorm"), dim, eps)?,
                    self_attn: Attention::load(&l.pp("self_attn"), heads, true, false)?,
                    post_attention_layernorm: RmsNorm::load(
                        &l.pp("post_attention_layernorm"),
                        dim,
                        eps,
                    )?,
                    mlp: FeedForward::Dense(Mlp::new(&l.pp("mlp"), dim, cfg.intermediate_size)?),
                })
            })
            .collect::<Result<Vec<_>, WeightsError>>()?;
        let max_positions = 2 * cfg.queries_global.max(cfg.queries_tile);
        let rope = Rope::new(
            cfg.head_dim(),
            cfg.rope_theta,
            max_positions,
            DType::F32,
            w.device(),
        )
        .map_err(|source| WeightsError::Load {
            name: "qwen2 encoder rope tables".into(),
            source,
        })?;
        Ok(Self {
            layers,
            norm: RmsNorm::load(&m.pp("norm"), dim, eps)?,
            rope,
            query_global: w.get(&[cfg.queries_global, dim], "query_1024.weight")?,
            query_tile: w.get(&[cfg.queries_tile, dim], "query_768.weight")?,
        })
    }

    /// The query bank for `n` image tokens (`query_1024` or `query_768`, by their row counts).
    fn queries(&self, n: usize) -> candle_core::Result<&Tensor> {
        for q in [&self.query_global, &self.query_tile] {
            if q.dim(0)? == n {
                return Ok(q);
            }
        }
        candle_core::bail!(
            "the Qwen2 encoder has query banks for {} and {} image tokens, not {n}",
            self.query_global.dim(0)?,
            self.query_tile.dim(0)?
        )
    }

    /// Runs the encoder over SAM's output, keeping every stage; `train` records the backward
    /// pass (and LoRA dropout) for adapters on the encoder's layers.
    ///
    /// # Shapes
    /// `[B, dim, g, g]` -> layer 0 and output `[B, 2 g^2, dim]`.
    pub fn forward_stages(
        &self,
        sam_out: &Tensor,
        train: bool,
    ) -> candle_core::Result<EncoderStages> {
        let x = sam_out.flatten_from(2)?.transpose(1, 2)?;
        let (b, n, dim) = x.dims3()?;
        let q = self
            .queries(n)?
            .to_dtype(x.dtype())?
            .unsqueeze(0)?
            .broadcast_as((b, n, dim))?;
        let mut h = Tensor::cat(&[&x, &q], 1)?;
        let positions = Tensor::arange(0u32, (2 * n) as u32, x.device())?
            .unsqueeze(0)?
            .repeat((b, 1))?;
        let mask = hybrid_mask(n, x.device())?;
        let mut layer0 = None;
        for layer in &self.layers {
            h = layer
                .forward(&h, &self.rope, &positions, Some(&mask), None, train)?
                .hidden;
            if layer0.is_none() {
                layer0 = Some(h.clone());
            }
        }
        let output = self.norm.forward(&h)?;
        Ok(EncoderStages {
            layer0: layer0.unwrap_or_else(|| h.clone()),
            output,
        })
    }

    /// The queries' rows of the encoder output.
    ///
    /// # Shapes
    /// `[B, dim, g, g]` -> `[B, g^2, dim]`.
    pub fn forward(&self, sam_out: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let out = self.forward_stages(sam_out, train)?.output;
        let n = out.dim(1)? / 2;
        out.narrow(1, n, n)
    }
}

impl Qwen2Encoder {
    /// Every layer's linears under the real checkpoint's paths
    /// (`model.qwen2_model.model.model.layers.{i}.self_attn.q_proj`, ...).
    pub fn lora_layers(&self) -> Vec<(String, &LoraLinear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            l.lora_layers(&format!("{LAYERS}.{i}"), &mut out);
        }
        out
    }

    /// [`Self::lora_layers`], mutably, in the same order.
    pub fn lora_layers_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.lora_layers_mut(&format!("{LAYERS}.{i}"), &mut out);
        }
        out
    }
}

/// Where the encoder's layers sit in the checkpoint.
pub const LAYERS: &str = "model.qwen2_model.model.model.layers";

/// The additive mask `[1, 1, 2n, 2n]` (0 allowed, -inf blocked): image rows see all image
/// columns only; query row `n + k` sees every image column and queries `0..=k`.
pub fn hybrid_mask(n: usize, device: &Device) -> candle_core::Result<Tensor> {
    let l = 2 * n;
    let data: Vec<f32> = (0..l * l)
        .map(|ij| {
            let (i, j) = (ij / l, ij % l);
            let allowed = j < n || (i >= n && j <= i);
            if allowed {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    Tensor::from_vec(data, (1, 1, l, l), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mask rule of the spec, spelled out on n = 2: image rows are bidirectional over the
    /// image and blind to queries; query rows see the image and the queries up to themselves.
    #[test]
    fn hybrid_mask_is_bidirectional_over_the_image_and_causal_over_queries() {
        let m: Vec<Vec<f32>> = hybrid_mask(2, &Device::Cpu)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        let inf = f32::NEG_INFINITY;
        assert_eq!(
            m,
            vec![
                vec![0.0, 0.0, inf, inf],
                vec![0.0, 0.0, inf, inf],
                vec![0.0, 0.0, 0.0, inf],
                vec![0.0, 0.0, 0.0, 0.0],
            ]
        );
    }
}
