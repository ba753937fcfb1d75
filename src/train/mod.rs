//! Training: AdamW on the LoRA parameters ([`optim`]), warm-up schedules ([`schedule`]).

pub mod optim;
pub mod schedule;

pub use optim::{clip_grad_norm, named_grads, AdamW, AdamWConfig};
pub use schedule::{Decay, Schedule};
