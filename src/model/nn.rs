//! Small layers shared by the encoders and the decoder: LayerNorm, RMSNorm, Conv2d.

use candle_core::{DType, Tensor};

use super::ops;
use crate::weights::{Weights, WeightsError};

/// LayerNorm over the last dimension with affine parameters.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads `weight` and `bias` `[dim]`.
    pub fn load(w: &Weights, dim: usize, eps: f64) -> Result<Self, WeightsError> {
        Ok(Self {
            weight: w.get(&[dim], "weight")?,
            bias: w.get(&[dim], "bias")?,
            eps,
        })
    }

    /// Normalises the last dimension.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }

    /// `LayerNorm2d`: normalises the channels of an NCHW tensor at every pixel.
    pub fn forward_nchw(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward(&x.permute((0, 2, 3, 1))?)?
            .permute((0, 3, 1, 2))
    }
}

/// RMSNorm over the last dimension (`DeepseekV2RMSNorm`).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Loads `weight` `[dim]`.
    pub fn load(w: &Weights, dim: usize, eps: f64) -> Result<Self, WeightsError> {
        Ok(Self {
            weight: w.get(&[dim], "weight")?,
            eps,
        })
    }

    /// Normalises the last dimension.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::rms_norm(x, &self.weight, self.eps)
    }
}

/// A square 2-D convolution (groups 1, dilation 1).
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// Loads `weight` `[out, in, k, k]` (and `bias` `[out]` if `bias`).
    pub fn load(
        w: &Weights,
        (cin, cout, k): (usize, usize, usize),
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Result<Self, WeightsError> {
        Ok(Self {
            weight: w.get(&[cout, cin, k, k], "weight")?,
            bias: if bias {
                Some(w.get(&[cout], "bias")?)
            } else {
                None
            },
            stride,
            padding,
        })
    }

    /// # Shapes
    /// `[B, in, H, W]` -> `[B, out, H', W']`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // candle's CPU convolution has no bf16 kernel: run it in f32 and round back.
        if x.device().is_cpu() && x.dtype() == DType::BF16 {
            let y = self.convolve(&x.to_dtype(DType::F32)?, &self.weight.to_dtype(DType::F32)?)?;
            let y = match &self.bias {
                Some(b) => y.broadcast_add(&b.to_dtype(DType::F32)?.reshape((1, (), 1, 1))?)?,
                None => y,
            };
            return y.to_dtype(DType::BF16);
        }
        let y = self.convolve(x, &self.weight)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }

    /// The convolution without bias: unrolled columns and one product where nothing needs a
    /// gradient (f32 on the CPU, see `im2col`), candle's `conv2d` otherwise.
    fn convolve(&self, x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
        let frozen = !x.track_op() && !weight.track_op();
        if frozen && x.device().is_cpu() && x.dtype() == DType::F32 {
            let op = super::im2col::FrozenConv {
                stride: self.stride,
                padding: self.padding,
            };
            return x.contiguous()?.apply_op2_no_bwd(&weight.contiguous()?, &op);
        }
        x.conv2d(weight, self.padding, self.stride, 1, 1)
    }
}
