//! Rotary position embeddings (Su et al., 2021, <https://arxiv.org/abs/2104.09864>), as the
//! transformers 4.46 `LlamaRotaryEmbedding` computes them: `inv_freq = 1 / theta^(2i/d)` and
//! angles `position * inv_freq` in f32, the half-split (`rotate_half`) layout over the whole head.

use candle_core::{DType, Device, Tensor, D};

/// Precomputed cos/sin tables `[max_positions, head_dim]`.
#[derive(Clone, Debug)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Tables for `max_positions` positions, in `dtype`.
    pub fn new(
        head_dim: usize,
        theta: f64,
        max_positions: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let half = head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(max_positions * head_dim);
        let mut sin = Vec::with_capacity(max_positions * head_dim);
        for p in 0..max_positions {
            for _ in 0..2 {
                for f in &inv {
                    let a = (p as f32 * f) as f64;
                    cos.push(a.cos() as f32);
                    sin.push(a.sin() as f32);
                }
            }
        }
        let cos = Tensor::from_vec(cos, (max_positions, head_dim), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (max_positions, head_dim), device)?.to_dtype(dtype)?;
        Ok(Self { cos, sin })
    }

    /// Positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Rotates `x` `[B, heads, L, d]` at `positions` `[B, L]` (u32).
    pub fn apply(&self, x: &Tensor, positions: &Tensor) -> candle_core::Result<Tensor> {
        let (b, _, l, d) = x.dims4()?;
        let flat = positions.flatten_all()?;
        let cos = self.cos.index_select(&flat, 0)?.reshape((b, 1, l, d))?;
        let sin = self.sin.index_select(&flat, 0)?.reshape((b, 1, l, d))?;
        let cos = cos.to_dtype(x.dtype())?;
        let sin = sin.to_dtype(x.dtype())?;
        let x1 = x.narrow(D::Minus1, 0, d / 2)?;
        let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
    }
}
