//! Quantisation: bitsandbytes-compatible NF4 ([`nf4`]) and LLM.int8 ([`int8`]), the Hugging
//! Face 4-bit and 8-bit checkpoint layouts ([`hf`], [`hf8`]), fused CPU kernels ([`kernel`]), torch's float32 CPU sum order
//! ([`torch_reduce`], for the double-quantisation offset) and [`QLinear`], the one place where
//! a dense or quantised weight plugs into the model.

mod frozen_ops;
pub mod half;
mod handoff;
pub mod hf;
pub mod hf8;
pub mod int8;
pub mod kernel;
pub mod nf4;
#[cfg(feature = "cuda")]
mod nf4_cuda;
pub mod nf4_device;
mod qlinear;
pub mod torch_reduce;

pub use crate::weights::{QuantKind, QuantizeSpec};
pub use half::{HalfData, HalfMatrix};
pub(crate) use handoff::Handoff;
pub use int8::Int8Tensor;
pub use nf4::{Absmax, Nf4Tensor, QuantDtype};
pub use nf4_device::Nf4Resident;
pub use qlinear::{QLinear, QWeight};
