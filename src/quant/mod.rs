//! Quantisation: bitsandbytes-compatible NF4 ([`nf4`]), the Hugging Face 4-bit checkpoint
//! layout ([`hf`]), fused CPU kernels ([`kernel`]), torch's float32 CPU sum order
//! ([`torch_reduce`], for the double-quantisation offset) and [`QLinear`], the one place where
//! a dense or quantised weight plugs into the model.

pub mod half;
mod handoff;
pub mod hf;
pub mod kernel;
pub mod nf4;
mod qlinear;
pub mod torch_reduce;

pub use crate::weights::QuantizeSpec;
pub use half::{HalfData, HalfMatrix};
pub(crate) use handoff::Handoff;
pub use nf4::{Absmax, Nf4Tensor, QuantDtype};
pub use qlinear::{QLinear, QWeight};
