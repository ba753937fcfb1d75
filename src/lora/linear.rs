//! `LoraLinear`: a frozen base layer plus an optional low-rank update,
//! `y = base(x) + s * B(A(dropout(x)))` (Hu et al., 2021, <https://arxiv.org/abs/2106.09685>).
//!
//! Dropout draws from one seeded generator per thread ([`set_dropout_seed`],
//! [`dropout_rng`]), so training is reproducible and a resumed run continues the same masks.

use std::cell::RefCell;

use candle_core::{Tensor, Var};

use super::fused::{lora_forward, lora_value, Mask};
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

/// A dropout mask for `x`, drawn from the thread's seeded generator (which advances past it):
/// kept with probability `1 - p`, kept values scaled by `1 / (1 - p)`.
fn draw_mask(x: &Tensor, p: f32) -> candle_core::Result<(Mask, Tensor)> {
    DROPOUT_RNG.with(|r| Mask::draw(&mut r.borrow_mut(), x, p))
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
        let mask = if train && ad.dropout > 0.0 {
            Some(draw_mask(x, ad.dropout)?)
        } else {
            None
        };
        if self.base.is_trainable() {
            // A trained base weight needs candle's own ops, which keep its gradient.
            let mask = mask.map(|(_, t)| t);
            let (a, b) = (ad.a.as_tensor(), ad.b.as_tensor());
            return lora_value(&self.base, x, a, b, ad.scale, mask.as_ref());
        }
        lora_forward(
            &self.base,
            x,
            ad.a.as_tensor(),
            ad.b.as_tensor(),
            ad.scale,
            mask,
        )
    }

    /// [`forward_t`](Self::forward_t) in inference mode.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_t(x, false)
    }
}
