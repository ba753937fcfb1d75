//! The decoder's feed-forward layers: the SiLU-gated MLP and DeepseekMoE (Dai et al., 2024,
//! <https://arxiv.org/abs/2401.06066>) as DeepSeek-OCR configures it: a softmax gate in f32,
//! plain top-k ("greedy"), weights not renormalised (`norm_topk_prob: false`) times
//! `routed_scaling_factor`, plus shared experts added unweighted.
//!
//! Routing decisions are made on the host; the selected probabilities stay in the graph
//! (`gather`), so gradients reach the gate's inputs as in the reference.

use candle_core::{DType, Tensor, D};

use crate::lora::LoraLinear;
use crate::model::config::DecoderConfig;
use crate::model::ops;
use crate::quant::QLinear;
use crate::weights::{Weights, WeightsError};

/// `down(silu(gate(x)) * up(x))`.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// `gate_proj`.
    pub gate_proj: LoraLinear,
    /// `up_proj`.
    pub up_proj: LoraLinear,
    /// `down_proj`.
    pub down_proj: LoraLinear,
}

impl Mlp {
    /// Loads `gate_proj`, `up_proj`, `down_proj` under `w`.
    pub fn new(w: &Weights, hidden: usize, inter: usize) -> Result<Self, WeightsError> {
        Ok(Self {
            gate_proj: QLinear::load(&w.pp("gate_proj"), hidden, inter, false)?.into(),
            up_proj: QLinear::load(&w.pp("up_proj"), hidden, inter, false)?.into(),
            down_proj: QLinear::load(&w.pp("down_proj"), inter, hidden, false)?.into(),
        })
    }

    /// # Shapes
    /// `[..., hidden]` -> `[..., hidden]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let g = self.gate_proj.forward_t(x, train)?.silu()?;
        let u = self.up_proj.forward_t(x, train)?;
        self.down_proj.forward_t(&(g * u)?, train)
    }
}

/// The experts chosen for every token of one MoE layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Routing {
    /// Per token (batch-major), the chosen experts sorted by expert id.
    pub experts: Vec<Vec<u32>>,
    /// Their gate weights, in the same order.
    pub weights: Vec<Vec<f32>>,
}

/// What one MoE layer produced besides its output.
#[derive(Debug)]
pub struct MoeExtras {
    /// The routing, always recorded (it is computed on the host anyway).
    pub routing: Routing,
    /// The load-balancing loss (training with `aux_loss_alpha > 0` only).
    pub aux_loss: Option<Tensor>,
}

/// A mixture-of-experts feed-forward layer.
#[derive(Clone, Debug)]
pub struct Moe {
    /// The gate `[experts, hidden]` (frozen, f32 math).
    pub gate: Tensor,
    /// Routed experts.
    pub experts: Vec<Mlp>,
    /// Shared experts (one MLP), if any.
    pub shared: Option<Mlp>,
    top_k: usize,
    norm_topk: bool,
    scaling: f64,
    aux_alpha: f64,
    seq_aux: bool,
}

impl Moe {
    /// Loads `gate.weight`, `experts.{e}.*` and `shared_experts.*` under `w` (`...mlp`).
    pub fn new(cfg: &DecoderConfig, w: &Weights) -> Result<Self, WeightsError> {
        let n = cfg.routed_experts();
        let h = cfg.hidden_size;
        let experts = (0..n)
            .map(|e| Mlp::new(&w.pp("experts").pp(e), h, cfg.moe_intermediate_size))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = match cfg.n_shared_experts {
            Some(s) if s > 0 => Some(Mlp::new(
                &w.pp("shared_experts"),
                h,
                cfg.moe_intermediate_size * s,
            )?),
            _ => None,
        };
        Ok(Self {
            gate: w.get(&[n, h], "gate.weight")?,
            experts,
            shared,
            top_k: cfg.experts_per_token(),
            norm_topk: cfg.norm_topk_prob,
            scaling: cfg.routed_scaling_factor,
            aux_alpha: cfg.aux_loss_alpha,
            seq_aux: cfg.seq_aux,
        })
    }

    /// # Shapes
    /// `[B, L, hidden]` -> `[B, L, hidden]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<(Tensor, MoeExtras)> {
        let (b, l, h) = x.dims3()?;
        let t = b * l;
        let xf = x.reshape((t, h))?;
        let acc = ops::accum_dtype(x.dtype());
        let logits = xf.to_dtype(acc)?.matmul(&self.gate.to_dtype(acc)?.t()?)?;
        let scores = ops::softmax_last_dim(&logits)?; // [T, E]
        let host: Vec<Vec<f32>> = scores.detach().to_dtype(DType::F32)?.to_vec2()?;
        let n_exp = self.experts.len();
        let mut chosen: Vec<Vec<u32>> = Vec::with_capacity(t);
        for row in &host {
            let mut idx: Vec<u32> = (0..n_exp as u32).collect();
            // Largest first; on equal scores the lower expert id wins.
            idx.sort_by(|&a, &b| {
                row[b as usize]
                    .partial_cmp(&row[a as usize])
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(a.cmp(&b))
            });
            idx.truncate(self.top_k);
            idx.sort_unstable();
            chosen.push(idx);
        }
        let flat: Vec<u32> = chosen.iter().flatten().copied().collect();
        let idx = Tensor::from_vec(flat, (t, self.top_k), x.device())?;
        let mut topw = scores.gather(&idx, 1)?; // [T, k], differentiable
        if self.norm_topk && self.top_k > 1 {
            topw = topw.broadcast_div(&(topw.sum_keepdim(1)? + 1e-20)?)?;
        } else if self.scaling != 1.0 {
            topw = (topw * self.scaling)?;
        }
        let weights_host: Vec<Vec<f32>> = topw.detach().to_dtype(DType::F32)?.to_vec2()?;

        // Dispatch: for each expert, its tokens and the slot (token, k) they came from. The
        // weighted outputs are gathered and added back in one `index_add`: a chain of one
        // `index_add` per expert would keep a `[T, hidden]` tensor per expert in the graph.
        let topw_flat = topw.flatten_all()?;
        let (mut outs, mut all_tokens) = (Vec::new(), Vec::new());
        for (e, expert) in self.experts.iter().enumerate() {
            let mut tokens = Vec::new();
            let mut slots = Vec::new();
            for (tok, ex) in chosen.iter().enumerate() {
                if let Some(k) = ex.iter().position(|&c| c as usize == e) {
                    tokens.push(tok as u32);
                    slots.push((tok * self.top_k + k) as u32);
                }
            }
            if tokens.is_empty() {
                continue;
            }
            let n = tokens.len();
            all_tokens.extend_from_slice(&tokens);
            let tok = Tensor::from_vec(tokens, n, x.device())?;
            let slot = Tensor::from_vec(slots, n, x.device())?;
            let out = expert.forward_t(&xf.index_select(&tok, 0)?, train)?;
            let w = topw_flat.index_select(&slot, 0)?.unsqueeze(1)?;
            outs.push(out.to_dtype(acc)?.broadcast_mul(&w)?);
        }
        let n = all_tokens.len();
        let tok = Tensor::from_vec(all_tokens, n, x.device())?;
        let y =
            Tensor::zeros((t, h), acc, x.device())?.index_add(&tok, &Tensor::cat(&outs, 0)?, 0)?;
        let mut y = y.to_dtype(x.dtype())?.reshape((b, l, h))?;
        if let Some(shared) = &self.shared {
            y = (y + shared.forward_t(x, train)?)?;
        }
        let aux_loss = if train && self.aux_alpha > 0.0 {
            Some(self.aux_loss(&scores, &chosen, b, l)?)
        } else {
            None
        };
        Ok((
            y,
            MoeExtras {
                routing: Routing {
                    experts: chosen,
                    weights: weights_host,
                },
                aux_loss,
            },
        ))
    }

    /// `MoEGate`'s balancing loss: with `seq_aux`, per sequence
    /// `sum_e (count_e / (L k / E)) * mean_t p_e`, averaged over the batch, times alpha;
    /// otherwise `sum_e (mean_t onehot_e * E) * mean_t p_e` over all tokens.
    fn aux_loss(
        &self,
        scores: &Tensor,
        chosen: &[Vec<u32>],
        b: usize,
        l: usize,
    ) -> candle_core::Result<Tensor> {
        let e = self.experts.len();
        let k = self.top_k;
        let dev = scores.device();
        if self.seq_aux {
            let mut ce = vec![0f32; b * e];
            for (tok, ex) in chosen.iter().enumerate() {
                for &c in ex {
                    ce[(tok / l) * e + c as usize] += 1.0;
                }
            }
            let norm = (l * k) as f32 / e as f32;
            ce.iter_mut().for_each(|v| *v /= norm);
            let ce = Tensor::from_vec(ce, (b, e), dev)?.to_dtype(scores.dtype())?;
            let mean_p = scores.reshape((b, l, e))?.mean(1)?;
            (ce * mean_p)?.sum(D::Minus1)?.mean_all()? * self.aux_alpha
        } else {
            let mut fi = vec![0f32; e];
            for ex in chosen {
                for &c in ex {
                    fi[c as usize] += 1.0;
                }
            }
            let t = (b * l * k) as f32;
            fi.iter_mut().for_each(|v| *v = *v / t * e as f32);
            let fi = Tensor::from_vec(fi, e, dev)?.to_dtype(scores.dtype())?;
            (scores.mean(0)? * fi)?.sum_all()? * self.aux_alpha
        }
    }
}
