//! Multi-head self-attention as transformers 4.46 `LlamaAttention` (eager) computes it for
//! DeepSeek-OCR (`use_mla: false`): q/k/v projections without bias, RoPE, grouped keys repeated
//! to every head, `softmax(q k^T / sqrt(d) + mask)` in f32, output projection.

use candle_core::Tensor;

use super::cache::KvCache;
use super::rope::Rope;
use crate::lora::LoraLinear;
use crate::model::config::DecoderConfig;
use crate::model::ops;
use crate::quant::QLinear;
use crate::weights::{Weights, WeightsError};

/// The sizes of one attention layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionHeads {
    /// Model width.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (each shared by `heads / kv_heads` query heads).
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
}

/// One layer's attention.
#[derive(Clone, Debug)]
pub struct Attention {
    /// `q_proj` `[heads*d, hidden]`.
    pub q_proj: LoraLinear,
    /// `k_proj` `[kv_heads*d, hidden]`.
    pub k_proj: LoraLinear,
    /// `v_proj` `[kv_heads*d, hidden]`.
    pub v_proj: LoraLinear,
    /// `o_proj` `[hidden, heads*d]`.
    pub o_proj: LoraLinear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Loads `q_proj`, `k_proj`, `v_proj`, `o_proj` under `w` (`model.layers.{i}.self_attn`).
    pub fn new(cfg: &DecoderConfig, w: &Weights) -> Result<Self, WeightsError> {
        let bias = cfg.attention_bias;
        let heads = AttentionHeads {
            hidden: cfg.hidden_size,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.kv_heads(),
            head_dim: cfg.head_dim(),
        };
        Self::load(w, heads, bias, bias)
    }

    /// Loads the four projections under `w`, with biases on q/k/v (`qkv_bias`) and on `o_proj`
    /// (`o_bias`) as given: the Qwen2 encoder of DeepSeek-OCR 2 has the former only.
    pub fn load(
        w: &Weights,
        AttentionHeads {
            hidden: h,
            heads: nh,
            kv_heads: nkv,
            head_dim: d,
        }: AttentionHeads,
        qkv_bias: bool,
        o_bias: bool,
    ) -> Result<Self, WeightsError> {
        let lin = |name: &str, i, o, bias| -> Result<LoraLinear, WeightsError> {
            Ok(QLinear::load(&w.pp(name), i, o, bias)?.into())
        };
        Ok(Self {
            q_proj: lin("q_proj", h, nh * d, qkv_bias)?,
            k_proj: lin("k_proj", h, nkv * d, qkv_bias)?,
            v_proj: lin("v_proj", h, nkv * d, qkv_bias)?,
            o_proj: lin("o_proj", nh * d, h, o_bias)?,
            heads: nh,
            kv_heads: nkv,
            head_dim: d,
        })
    }

    /// # Shapes
    /// `x` `[B, L, hidden]`, `positions` `[B, L]`, `mask` broadcastable to `[B, 1, L, L_total]`
    /// (additive, f32) -> `[B, L, hidden]`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        positions: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let d = self.head_dim;
        let shape = |t: Tensor, n: usize| t.reshape((b, l, n, d))?.transpose(1, 2);
        let q = shape(self.q_proj.forward_t(x, train)?, self.heads)?;
        let k = shape(self.k_proj.forward_t(x, train)?, self.kv_heads)?;
        let v = shape(self.v_proj.forward_t(x, train)?, self.kv_heads)?.contiguous()?;
        let q = rope.apply(&q.contiguous()?, positions)?;
        let k = rope.apply(&k.contiguous()?, positions)?;
        let (k, v) = match cache {
            Some((c, layer)) => c.append(layer, &k, &v)?,
            None => (k, v),
        };
        let rep = self.heads / self.kv_heads;
        let (k, v) = if rep > 1 {
            (repeat_kv(&k, rep)?, repeat_kv(&v, rep)?)
        } else {
            (k, v)
        };
        let scale = 1.0 / (d as f64).sqrt();
        let logits = (q.matmul(&k.t()?)? * scale)?.to_dtype(ops::accum_dtype(q.dtype()))?;
        let logits = match mask {
            Some(m) => logits.broadcast_add(&m.to_dtype(logits.dtype())?)?,
            None => logits,
        };
        let p = ops::softmax_last_dim(&logits)?.to_dtype(q.dtype())?;
        let out = p
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, l, self.heads * d))?;
        self.o_proj.forward_t(&out, train)
    }
}

/// `[B, kv, L, d]` -> `[B, kv*rep, L, d]`, each key head repeated `rep` times in place.
fn repeat_kv(x: &Tensor, rep: usize) -> candle_core::Result<Tensor> {
    let (b, kv, l, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, kv, rep, l, d))?
        .reshape((b, kv * rep, l, d))
}
