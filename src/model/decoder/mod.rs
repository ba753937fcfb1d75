//! The DeepseekV2 language model of DeepSeek-OCR (DeepSeek-AI, 2024,
//! <https://arxiv.org/abs/2405.04434>) without MLA: pre-norm layers of multi-head attention and
//! a dense MLP (first `first_k_dense_replace` layers) or a mixture of experts, RMSNorm, an untied
//! `lm_head`, and a key/value cache for generation.

mod attention;
mod cache;
pub mod checkpoint;
mod moe;
mod rope;

pub use attention::{Attention, AttentionHeads};
pub use cache::KvCache;
pub use moe::{Mlp, Moe, MoeExtras, Routing};
pub use rope::Rope;

use candle_core::{DType, Device, Tensor};

use super::config::DecoderConfig;
use super::nn::RmsNorm;
use crate::lora::{LoraLinear, LoraModel};
use crate::quant::QLinear;
use crate::weights::{Weights, WeightsError};

/// A layer's feed-forward part.
#[derive(Clone, Debug)]
pub enum FeedForward {
    /// The dense SiLU-gated MLP.
    Dense(Mlp),
    /// Mixture of experts.
    Moe(Moe),
}

/// One decoder layer.
#[derive(Clone, Debug)]
pub struct DecoderLayer {
    /// `input_layernorm`.
    pub input_layernorm: RmsNorm,
    /// `self_attn`.
    pub self_attn: Attention,
    /// `post_attention_layernorm`.
    pub post_attention_layernorm: RmsNorm,
    /// `mlp`.
    pub mlp: FeedForward,
}

/// Options of one decoder pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardOptions {
    /// Training mode: LoRA dropout on, MoE balancing loss computed.
    pub train: bool,
    /// Keep every layer's input (and the final normed states) and the MoE routing.
    pub trace: bool,
    /// Compute logits only for the last position (generation).
    pub last_only: bool,
    /// With labels: logits only at the positions the loss scores (`[1, scored, vocab]`),
    /// which is all a training step needs.
    pub scored_only: bool,
    /// Gradient checkpointing (with `train`, without a cache): each layer keeps only its input
    /// and output for the backward pass, which recomputes the rest ([`checkpoint`]).
    pub checkpoint: bool,
}

/// What a decoder pass returns.
#[derive(Debug)]
pub struct DecoderOutput {
    /// `[B, L, vocab]` in f32, f64 for f64 models (`[B, 1, vocab]` with `last_only`).
    pub logits: Tensor,
    /// With `trace`: the input of every layer, then `norm(last output)` (as HF's
    /// `output_hidden_states` of this remote code).
    pub hidden_states: Vec<Tensor>,
    /// With `trace`: the routing of every MoE layer, by layer index.
    pub routing: Vec<(usize, Routing)>,
    /// In training: the MoE balancing losses (to add to the loss that is backpropagated).
    pub aux_losses: Vec<Tensor>,
}

/// The language model.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// `model.embed_tokens.weight` `[vocab, hidden]` (in the checkpoint's bf16/f16 under
    /// [`crate::weights::QuantizeSpec::compact_frozen`]; rows are converted as they are read).
    pub embed_tokens: Tensor,
    /// The compute dtype.
    dtype: DType,
    /// `model.layers`.
    pub layers: Vec<DecoderLayer>,
    /// `model.norm`.
    pub norm: RmsNorm,
    /// `lm_head` (never quantised, as transformers keeps it).
    pub lm_head: QLinear,
    rope: Rope,
    cfg: DecoderConfig,
}

impl Decoder {
    /// Loads the decoder: `model.*` under `model`, `lm_head` under `root`.
    pub fn new(cfg: &DecoderConfig, model: &Weights, root: &Weights) -> Result<Self, WeightsError> {
        let h = cfg.hidden_size;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let w = model.pp("layers").pp(i);
                let mlp = if cfg.is_moe_layer(i) {
                    FeedForward::Moe(Moe::new(cfg, &w.pp("mlp"))?)
                } else {
                    FeedForward::Dense(Mlp::new(&w.pp("mlp"), h, cfg.intermediate_size)?)
                };
                Ok(DecoderLayer {
                    input_layernorm: RmsNorm::load(&w.pp("input_layernorm"), h, cfg.rms_norm_eps)?,
                    self_attn: Attention::new(cfg, &w.pp("self_attn"))?,
                    post_attention_layernorm: RmsNorm::load(
                        &w.pp("post_attention_layernorm"),
                        h,
                        cfg.rms_norm_eps,
                    )?,
                    mlp,
                })
            })
            .collect::<Result<Vec<_>, WeightsError>>()?;
        let rope = Rope::new(
            cfg.head_dim(),
            cfg.rope_theta,
            cfg.max_position_embeddings,
            DType::F32,
            model.device(),
        )
        .map_err(|source| WeightsError::Load {
            name: "rope tables".into(),
            source,
        })?;
        Ok(Self {
            embed_tokens: match model.get_compact(&[cfg.vocab_size, h], "embed_tokens.weight")? {
                Some(t) => t,
                None => model.get(&[cfg.vocab_size, h], "embed_tokens.weight")?,
            },
            dtype: model.dtype(),
            layers,
            norm: RmsNorm::load(&model.pp("norm"), h, cfg.rms_norm_eps)?,
            lm_head: QLinear::load(&root.pp("lm_head"), h, cfg.vocab_size, false)?,
            rope,
            cfg: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.embed_tokens.device()
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Token embeddings.
    ///
    /// # Shapes
    /// `ids` `[B, L]` (u32) -> `[B, L, hidden]`.
    pub fn embed(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l) = ids.dims2()?;
        self.embed_tokens
            .index_select(&ids.flatten_all()?, 0)?
            .to_dtype(self.dtype)?
            .reshape((b, l, self.cfg.hidden_size))
    }

    /// Runs the layers over `embeds`.
    ///
    /// `positions` `[B, L]` (u32) are RoPE positions; `key_mask` `[B, L_total]` (1 = attend,
    /// 0 = padding) covers cached and new positions; the causal mask is always applied, with
    /// the new positions after the `cache`'s.
    ///
    /// # Shapes
    /// `embeds` `[B, L, hidden]` -> logits `[B, L, vocab]` (f32).
    pub fn forward(
        &self,
        embeds: &Tensor,
        positions: &Tensor,
        key_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        opts: ForwardOptions,
    ) -> candle_core::Result<DecoderOutput> {
        self.forward_rows(embeds, positions, key_mask, cache, opts, None)
    }

    /// [`forward`](Self::forward) with logits for the flattened positions `rows` (`b * L + t`)
    /// only, as `[1, rows, vocab]` (a training step needs them only where the loss scores:
    /// `lm_head` and the loss then run on those rows instead of all).
    pub fn forward_rows(
        &self,
        embeds: &Tensor,
        positions: &Tensor,
        key_mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        opts: ForwardOptions,
        rows: Option<&[u32]>,
    ) -> candle_core::Result<DecoderOutput> {
        let (b, l, _) = embeds.dims3()?;
        let past = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        if past + l > self.rope.max_positions() {
            candle_core::bail!(
                "sequence of {} positions exceeds max_position_embeddings {}",
                past + l,
                self.rope.max_positions()
            );
        }
        let mask = build_mask(b, l, past, key_mask, embeds.device())?;
        let mut x = embeds.clone();
        let mut hidden_states = Vec::new();
        let mut routing = Vec::new();
        let mut aux_losses = Vec::new();
        let checkpointed = opts.checkpoint && opts.train && cache.is_none();
        for (i, layer) in self.layers.iter().enumerate() {
            if opts.trace {
                hidden_states.push(x.clone());
            }
            let out = if checkpointed {
                let f = checkpoint::LayerFn {
                    layer: layer.clone(),
                    rope: self.rope.clone(),
                    positions: positions.clone(),
                    mask: mask.clone(),
                };
                checkpoint::run(f, &x)?
            } else {
                layer.forward(
                    &x,
                    &self.rope,
                    positions,
                    mask.as_ref(),
                    cache.as_deref_mut().map(|c| (c, i)),
                    opts.train,
                )?
            };
            if let (true, Some(r)) = (opts.trace, out.routing) {
                routing.push((i, r));
            }
            aux_losses.extend(out.aux_loss);
            x = out.hidden;
        }
        let x = self.norm.forward(&x)?;
        if opts.trace {
            hidden_states.push(x.clone());
        }
        let x = match rows {
            Some(r) => {
                let h = x.dim(2)?;
                let idx = Tensor::from_vec(r.to_vec(), r.len(), x.device())?;
                x.reshape((b * l, h))?.index_select(&idx, 0)?.unsqueeze(0)?
            }
            None if opts.last_only => x.narrow(1, l - 1, 1)?,
            None => x,
        };
        let logits = self.lm_head.forward(&x)?;
        let logits = logits.to_dtype(super::ops::accum_dtype(logits.dtype()))?;
        Ok(DecoderOutput {
            logits,
            hidden_states,
            routing,
            aux_losses,
        })
    }

    /// Positions `start..start+len` for every row: `[B, len]` (u32).
    pub fn positions(&self, batch: usize, start: usize, len: usize) -> candle_core::Result<Tensor> {
        let row: Vec<u32> = (start as u32..(start + len) as u32).collect();
        Tensor::from_vec(row, (1, len), self.device())?.repeat((batch, 1))
    }
}

/// Additive f32 mask `[B, 1, L, past + L]`: causal, plus `key_mask` padding. `None` when a
/// single new position attends to everything (no padding).
fn build_mask(
    b: usize,
    l: usize,
    past: usize,
    key_mask: Option<&Tensor>,
    device: &Device,
) -> candle_core::Result<Option<Tensor>> {
    let total = past + l;
    if l == 1 && key_mask.is_none() {
        return Ok(None);
    }
    let keys: Option<Vec<Vec<u8>>> = match key_mask {
        Some(m) => Some(m.to_dtype(DType::U8)?.to_vec2()?),
        None => None,
    };
    let mut data = vec![0f32; b * l * total];
    for row in 0..b {
        for i in 0..l {
            for j in 0..total {
                let causal = j > past + i;
                let padded = keys.as_ref().is_some_and(|k| k[row][j] == 0);
                if causal || padded {
                    data[(row * l + i) * total + j] = f32::NEG_INFINITY;
                }
            }
            // A fully masked row (a padding query) would give NaN: let it see itself.
            let r = &mut data[(row * l + i) * total..(row * l + i + 1) * total];
            if r.iter().all(|v| v.is_infinite()) {
                r[past + i] = 0.0;
            }
        }
    }
    Ok(Some(Tensor::from_vec(data, (b, 1, l, total), device)?))
}

/// What one decoder layer returns.
pub struct LayerOutput {
    /// The layer's output `[B, L, hidden]`.
    pub hidden: Tensor,
    /// The MoE balancing loss (MoE layers in training).
    pub aux_loss: Option<Tensor>,
    /// The MoE routing (MoE layers).
    pub routing: Option<Routing>,
}

impl DecoderLayer {
    /// One pre-norm layer: `x + attn(norm(x))`, then `+ mlp(norm(...))`; `cache` is the KV
    /// cache with this layer's index.
    ///
    /// # Shapes
    /// `x` `[B, L, hidden]` -> `[B, L, hidden]`.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        positions: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        train: bool,
    ) -> candle_core::Result<LayerOutput> {
        let h = self.input_layernorm.forward(x)?;
        let a = self
            .self_attn
            .forward(&h, rope, positions, mask, cache, train)?;
        let x1 = (x + a)?;
        let h = self.post_attention_layernorm.forward(&x1)?;
        let (f, aux_loss, routing) = match &self.mlp {
            FeedForward::Dense(m) => (m.forward_t(&h, train)?, None, None),
            FeedForward::Moe(m) => {
                let (y, extras) = m.forward_t(&h, train)?;
                (y, extras.aux_loss, Some(extras.routing))
            }
        };
        Ok(LayerOutput {
            hidden: (x1 + f)?,
            aux_loss,
            routing,
        })
    }
}

impl Mlp {
    fn layers_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut LoraLinear)>) {
        out.push((format!("{prefix}.gate_proj"), &mut self.gate_proj));
        out.push((format!("{prefix}.up_proj"), &mut self.up_proj));
        out.push((format!("{prefix}.down_proj"), &mut self.down_proj));
    }

    fn layers<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a LoraLinear)>) {
        out.push((format!("{prefix}.gate_proj"), &self.gate_proj));
        out.push((format!("{prefix}.up_proj"), &self.up_proj));
        out.push((format!("{prefix}.down_proj"), &self.down_proj));
    }
}

impl DecoderLayer {
    /// This layer's linears (attention, then the MLP or experts and shared experts) under
    /// `prefix` (e.g. `model.layers.3`).
    pub fn lora_layers<'a>(&'a self, p: &str, out: &mut Vec<(String, &'a LoraLinear)>) {
        let a = &self.self_attn;
        out.push((format!("{p}.self_attn.q_proj"), &a.q_proj));
        out.push((format!("{p}.self_attn.k_proj"), &a.k_proj));
        out.push((format!("{p}.self_attn.v_proj"), &a.v_proj));
        out.push((format!("{p}.self_attn.o_proj"), &a.o_proj));
        match &self.mlp {
            FeedForward::Dense(m) => m.layers(&format!("{p}.mlp"), out),
            FeedForward::Moe(m) => {
                for (e, ex) in m.experts.iter().enumerate() {
                    ex.layers(&format!("{p}.mlp.experts.{e}"), out);
                }
                if let Some(s) = &m.shared {
                    s.layers(&format!("{p}.mlp.shared_experts"), out);
                }
            }
        }
    }

    /// [`Self::lora_layers`], mutably, in the same order.
    pub fn lora_layers_mut<'a>(&'a mut self, p: &str, out: &mut Vec<(String, &'a mut LoraLinear)>) {
        let a = &mut self.self_attn;
        out.push((format!("{p}.self_attn.q_proj"), &mut a.q_proj));
        out.push((format!("{p}.self_attn.k_proj"), &mut a.k_proj));
        out.push((format!("{p}.self_attn.v_proj"), &mut a.v_proj));
        out.push((format!("{p}.self_attn.o_proj"), &mut a.o_proj));
        match &mut self.mlp {
            FeedForward::Dense(m) => m.layers_mut(&format!("{p}.mlp"), out),
            FeedForward::Moe(m) => {
                for (e, ex) in m.experts.iter_mut().enumerate() {
                    ex.layers_mut(&format!("{p}.mlp.experts.{e}"), out);
                }
                if let Some(s) = &mut m.shared {
                    s.layers_mut(&format!("{p}.mlp.shared_experts"), out);
                }
            }
        }
    }
}

impl LoraModel for Decoder {
    fn lora_layers(&self) -> Vec<(String, &LoraLinear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            l.lora_layers(&format!("model.layers.{i}"), &mut out);
        }
        out
    }

    fn lora_layers_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.lora_layers_mut(&format!("model.layers.{i}"), &mut out);
        }
        out
    }
}
