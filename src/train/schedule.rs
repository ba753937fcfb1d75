//! Learning-rate schedules with linear warm-up, as transformers' `get_linear_schedule_with_warmup`
//! and `get_cosine_schedule_with_warmup` (half a cosine) compute them.

use serde::{Deserialize, Serialize};

/// The decay after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// Linear to 0 at the last step.
    Linear,
    /// Half a cosine to 0 at the last step.
    Cosine,
    /// Constant after warm-up.
    Constant,
}

/// A warm-up + decay schedule over `total` optimiser steps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up steps (linear from 0).
    pub warmup: u64,
    /// Total optimiser steps.
    pub total: u64,
    /// Decay after warm-up.
    pub decay: Decay,
}

impl Schedule {
    /// The multiplier of the peak rate at `step` (0-based, before that step's update).
    pub fn factor(&self, step: u64) -> f64 {
        if step < self.warmup {
            return step as f64 / self.warmup.max(1) as f64;
        }
        match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => {
                let rest = self.total.saturating_sub(self.warmup).max(1);
                (self.total.saturating_sub(step) as f64 / rest as f64).max(0.0)
            }
            Decay::Cosine => {
                let rest = self.total.saturating_sub(self.warmup).max(1);
                let progress = (step - self.warmup) as f64 / rest as f64;
                (0.5 * (1.0 + (std::f64::consts::PI * 0.5 * 2.0 * progress).cos())).max(0.0)
            }
        }
    }

    /// The learning rate at `step`.
    pub fn lr_at(&self, step: u64) -> f64 {
        self.lr * self.factor(step)
    }
}
