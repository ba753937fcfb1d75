//! `LoraLinear`: a frozen base layer plus an optional low-rank update,
//! `y = base(x) + s * B(A(dropout(x)))` (Hu et al., 2021, <https://arxiv.org/abs/2106.09685>).
//!
//! Dropout draws from one seeded generator per thread ([`set_dropout_seed`],
//! [`dropout_rng`]), so training is reproducible and a resumed run continues the same masks.

use std::cell::RefCell;

use candle_core::{Tensor, Var};

use super::fused::{lora_forward, Mask};
use crate::quant::QLinear;
use crate::rng::Rng;

thread_local! {
    static DROPOUT_RNG: RefCell<Rng> = RefCell::new(Rng::new(0));
}

/// Reseeds this thread's LoRA dropout generator.
pub fn set_dropout_seed(seed: u64) {
    DROPOUT_RNG.with(|r| *r.borrow_mut() = Rng::new(seed));
}

/// This thread's LoRA dropout generator state (for checkpoints).
pub fn dropout_rng() -> Rng {
    DROPOUT_RNG.with(|r| r.borrow().clone())
}

/// Restores this thread's LoRA dropout generator (when resuming).
pub fn set_dropout_rng(rng: Rng) {
    DROPOUT_RNG.with(|r| *r.borrow_mut() = rng);
}

/// The dropout mask for `n` inputs, drawn from the thread's seeded generator (which advances
/// past it): kept with probability `1 - p`, kept values scaled by `1 / (1 - p)`.
fn draw_mask(n: usize, p: f32) -> Mask {
    DROPOUT_RNG.with(|r| {
        let mut r = r.borrow_mut();
        let state = r.clone();
        for _ in 0..n {
            r.next_f64();
        }
        Mask { rng: state, p }
    })
}

/// The trainable part of a LoRA layer.
#[derive(Clone, Debug)]
pub struct LoraAdapter {
    /// `A` `[r, in]`.
    pub a: Var,
    /// `B` `[out, r]`.
    pub b: Var,
    /// `alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
    pub scale: f64,
    /// Dropout probability on the adapter's input (training only).
    pub dropout: f32,
}

impl LoraAdapter {
    /// The rank.
    pub fn rank(&self) -> usize {
        self.a.dims()[0]
    }

    /// `s * B A` `[out, in]` (f32).
    pub fn delta(&self) -> candle_core::Result<Tensor> {
        self.b.as_tensor().matmul(self.a.as_tensor())? * self.scale
    }
}

/// A linear layer of the model: the frozen base and, when attached, an adapter.
#[derive(Clone, Debug)]
pub struct LoraLinear {
    /// The frozen base layer.
    pub base: QLinear,
    /// The adapter, if one is attached.
    pub adapter: Option<LoraAdapter>,
    /// Whether the adapter is merged into `base` (then it is not applied again).
    pub merged: bool,
}

impl From<QLinear> for LoraLinear {
    fn from(base: QLinear) -> Self {
        Self {
            base,
            adapter: None,
            merged: false,
        }
    }
}

impl LoraLinear {
    /// `base(x) + s * B(A(dropout(x)))`; dropout only when `train`.
    ///
    /// # Shapes
    /// `x` `[..., in]` -> `[..., out]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let Some(ad) = self.adapter.as_ref().filter(|_| !self.merged) else {
            return self.base.forward(x);
        };
        if self.base.is_trainable() {
            return self.forward_unfused(x, ad, train);
        }
        let mask = (train && ad.dropout > 0.0).then(|| draw_mask(x.elem_count(), ad.dropout));
        lora_forward(
            &self.base,
            x,
            ad.a.as_tensor(),
            ad.b.as_tensor(),
            ad.scale,
            mask,
        )
    }

    /// The same with candle's own ops, for a base layer whose weight is itself trained.
    fn forward_unfused(
        &self,
        x: &Tensor,
        ad: &LoraAdapter,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        let y = self.base.forward(x)?;
        let xa = if train && ad.dropout > 0.0 {
            (x * draw_mask(x.elem_count(), ad.dropout).tensor_like(x)?)?
        } else {
            x.clone()
        };
        let dims = xa.dims().to_vec();
        let lead: usize = dims[..dims.len() - 1].iter().product();
        let x2 = xa.reshape((lead, self.base.in_features()))?;
        let a = ad.a.as_tensor().to_dtype(x2.dtype())?;
        let b = ad.b.as_tensor().to_dtype(x2.dtype())?;
        let delta = (x2.matmul(&a.t()?)?.matmul(&b.t()?)? * ad.scale)?;
        let delta = delta.reshape(y.shape())?;
        y + delta
    }

    /// [`forward_t`](Self::forward_t) in inference mode.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_t(x, false)
    }
}
