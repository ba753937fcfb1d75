//! The LoRA layer as one autograd node.
//!
//! Written with candle's ops, `base(x) + s * B(A(dropout(x)))` keeps six activations per layer
//! alive until the backward pass (the dropout mask, the dropped input, `xA^T`, its product with
//! `B^T`, the scaled product and the sum), and candle's matmul backward also computes a gradient
//! for the frozen base weight that nobody reads. [`LoraGrad`] computes the output with untracked
//! ops and records a single node over `(x, A, B)` whose backward recomputes the small `xA^T`,
//! rebuilds the dropout mask from its saved bits, and returns exactly the three
//! gradients: for a full-size DeepSeek-OCR QLoRA step this removes about two thirds of the
//! activation memory.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use crate::quant::{Handoff, QLinear};
use crate::rng::Rng;

/// A dropout mask: which elements were kept, one bit each (the backward pass needs the mask
/// again; a bit per element is 1/32 of keeping the f32 multipliers).
#[derive(Clone, Debug)]
pub(super) struct Mask {
    /// Bit `i % 64` of word `i / 64` is set when element `i` was kept.
    kept: Vec<u64>,
    /// Elements.
    len: usize,
    /// The multiplier of a kept element, `1 / (1 - p)`.
    scale: f32,
}

impl Mask {
    /// Draws a mask for `x` from `rng` (which advances past it, one `next_u64` per element:
    /// element `i` is kept when `next_f64() < 1 - p`), and returns it with its inverted-dropout
    /// multipliers (`1 / (1 - p)` kept, `0` dropped) as a tensor shaped and typed like `x`.
    pub(super) fn draw(rng: &mut Rng, x: &Tensor, p: f32) -> candle_core::Result<(Self, Tensor)> {
        let len = x.elem_count();
        let keep = 1.0 - p as f64;
        // `next_f64() < keep` is `(next_u64() >> 11) * 2^-53 < keep`, exactly `(next_u64() >>
        // 11) < ceil(keep * 2^53)`: both products are exact in f64.
        let threshold = (keep * (1u64 << 53) as f64).ceil() as u64;
        let scale = (1.0 / keep) as f32;
        let mut kept = vec![0u64; len.div_ceil(64)];
        let mut values = Vec::with_capacity(len);
        for i in 0..len {
            let k = (rng.next_u64() >> 11) < threshold;
            kept[i / 64] |= (k as u64) << (i % 64);
            values.push(if k { scale } else { 0.0 });
        }
        let t = Tensor::from_vec(values, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((Self { kept, len, scale }, t))
    }

    /// The multipliers again, as a tensor shaped and typed like `x`.
    pub(super) fn tensor_like(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.elem_count() != self.len {
            candle_core::bail!(
                "LoRA dropout mask of {} elements for a {:?} input",
                self.len,
                x.shape()
            );
        }
        let values: Vec<f32> = (0..self.len)
            .map(|i| {
                if self.kept[i / 64] >> (i % 64) & 1 == 1 {
                    self.scale
                } else {
                    0.0
                }
            })
            .collect();
        Tensor::from_vec(values, x.shape(), x.device())?.to_dtype(x.dtype())
    }
}

/// The backward of one LoRA layer (see the module docs). Its forward hands out the output that
/// [`lora_forward`] computed, once.
struct LoraGrad {
    out: Handoff,
    base: QLinear,
    scale: f64,
    mask: Option<Mask>,
}

impl CustomOp3 for LoraGrad {
    fn name(&self) -> &'static str {
        "deepsynth-lora"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.out.cpu()
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        self.out.cuda()
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (x, a, b) = (x.detach(), a.detach(), b.detach());
        let in_f = self.base.in_features();
        let out_f = self.base.out_features();
        let lead = x.elem_count() / in_f;
        let g2 = grad.contiguous()?.reshape((lead, out_f))?;
        let mask = match &self.mask {
            Some(m) => Some(m.tensor_like(&x)?),
            None => None,
        };
        let xa = match &mask {
            Some(m) => (&x * m)?,
            None => x.clone(),
        };
        let x2 = xa.reshape((lead, in_f))?;
        let (ac, bc) = (a.to_dtype(x2.dtype())?, b.to_dtype(x2.dtype())?);
        let u = x2.matmul(&ac.t()?)?; // [n, r]
        let gs = (&g2 * self.scale)?; // [n, out]
        let grad_b = gs.t()?.matmul(&u)?; // [out, r]
        let gu = gs.matmul(&bc)?; // [n, r]
        let grad_a = gu.t()?.matmul(&x2)?; // [r, in]
        let mut gx = gu.matmul(&ac)?.reshape(x.shape())?;
        if let Some(m) = &mask {
            gx = (gx * m)?;
        }
        let gx = (gx + self.base.input_grad(grad)?)?;
        Ok((
            Some(gx),
            Some(grad_a.to_dtype(a.dtype())?),
            Some(grad_b.to_dtype(b.dtype())?),
        ))
    }
}

/// `base(x) + scale * ((x * mask) A^T) B^T` with candle's ops (tracked as far as the inputs
/// are).
///
/// # Shapes
/// `x` `[..., in]`, `a` `[r, in]`, `b` `[out, r]`, `mask` like `x` -> `[..., out]`.
pub(super) fn lora_value(
    base: &QLinear,
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let y = base.forward(x)?;
    let xa = match mask {
        Some(m) => (x * m)?,
        None => x.clone(),
    };
    let dims = xa.dims().to_vec();
    let lead: usize = dims[..dims.len() - 1].iter().product();
    let x2 = xa.reshape((lead, base.in_features()))?;
    let ac = a.to_dtype(x2.dtype())?;
    let bc = b.to_dtype(x2.dtype())?;
    let delta = (x2.matmul(&ac.t()?)?.matmul(&bc.t()?)? * scale)?;
    let delta = delta.reshape(y.shape())?;
    y + delta
}

/// [`lora_value`] as one autograd node over `(x, A, B)`; `mask` is the dropout mask drawn by
/// the caller ([`Mask::draw`]), `None` without dropout.
///
/// # Shapes
/// `x` `[..., in]`, `a` `[r, in]`, `b` `[out, r]` -> `[..., out]`.
pub(super) fn lora_forward(
    base: &QLinear,
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    mask: Option<(Mask, Tensor)>,
) -> candle_core::Result<Tensor> {
    let (saved, mask) = match mask {
        Some((m, t)) => (Some(m), Some(t)),
        None => (None, None),
    };
    let out = lora_value(
        base,
        &x.detach(),
        &a.detach(),
        &b.detach(),
        scale,
        mask.as_ref(),
    )?
    .contiguous()?;
    let op = LoraGrad {
        out: Handoff::new(out),
        base: base.clone(),
        scale,
        mask: saved,
    };
    x.apply_op3(a, b, op)
}

#[cfg(test)]
mod tests {
    use super::Mask;
    use crate::rng::Rng;
    use candle_core::{DType, Device, Tensor};

    /// The mask is the one `next_f64() < 1 - p` draws element by element, the generator ends
    /// where that would leave it, and the saved bits give the same multipliers back.
    #[test]
    fn masks_match_the_per_element_draw_and_survive_as_bits() {
        for (&p, &n) in [0.05f32, 0.1, 0.5, 0.3].iter().zip(&[1usize, 63, 64, 1000]) {
            let x = Tensor::zeros(n, DType::F32, &Device::Cpu).unwrap();
            let mut rng = Rng::new(n as u64);
            let mut reference = rng.clone();
            let (mask, t) = Mask::draw(&mut rng, &x, p).unwrap();
            let keep = 1.0 - p as f64;
            let want: Vec<f32> = (0..n)
                .map(|_| {
                    if reference.next_f64() < keep {
                        (1.0 / keep) as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            assert_eq!(t.to_vec1::<f32>().unwrap(), want, "p {p}, n {n}");
            assert_eq!(rng, reference);
            let again = mask.tensor_like(&x).unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(again, want);
        }
        // About half kept at p = 0.5.
        let x = Tensor::zeros(4096, DType::F32, &Device::Cpu).unwrap();
        let (_, t) = Mask::draw(&mut Rng::new(7), &x, 0.5).unwrap();
        let kept = t
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .filter(|&&v| v > 0.0)
            .count();
        assert!(
            (1900..2200).contains(&kept),
            "{kept} of 4096 kept at p = 0.5"
        );
    }
}
