//! The LoRA layer as one autograd node.
//!
//! Written with candle's ops, `base(x) + s * B(A(dropout(x)))` keeps six activations per layer
//! alive until the backward pass (the dropout mask, the dropped input, `xA^T`, its product with
//! `B^T`, the scaled product and the sum), and candle's matmul backward also computes a gradient
//! for the frozen base weight that nobody reads. [`LoraGrad`] computes the output with untracked
//! ops and records a single node over `(x, A, B)` whose backward recomputes the small `xA^T`,
//! redraws the dropout mask from its saved generator state, and returns exactly the three
//! gradients: for a full-size DeepSeek-OCR QLoRA step this removes about two thirds of the
//! activation memory.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use crate::quant::{Handoff, QLinear};
use crate::rng::Rng;

/// Inverted-dropout multipliers for `n` elements drawn from `rng`: `1 / (1 - p)` kept, `0`
/// dropped (one `next_f64` per element).
fn mask_values(rng: &mut Rng, n: usize, p: f32) -> Vec<f32> {
    let keep = 1.0 - p as f64;
    (0..n)
        .map(|_| {
            if rng.next_f64() < keep {
                (1.0 / keep) as f32
            } else {
                0.0
            }
        })
        .collect()
}

/// A dropout mask kept as the generator state that drew it.
#[derive(Clone, Debug)]
pub(super) struct Mask {
    /// The generator before the mask was drawn.
    rng: Rng,
    /// The dropout probability.
    p: f32,
}

fn mask_tensor(rng: &mut Rng, x: &Tensor, p: f32) -> candle_core::Result<Tensor> {
    let v = mask_values(rng, x.elem_count(), p);
    Tensor::from_vec(v, x.shape(), x.device())?.to_dtype(x.dtype())
}

impl Mask {
    /// Draws a mask for `x` from `rng` (which advances past it): the saved state and the mask
    /// as a tensor shaped and typed like `x`.
    pub(super) fn draw(rng: &mut Rng, x: &Tensor, p: f32) -> candle_core::Result<(Self, Tensor)> {
        let saved = Self {
            rng: rng.clone(),
            p,
        };
        Ok((saved, mask_tensor(rng, x, p)?))
    }

    /// The mask again, as a tensor shaped and typed like `x`.
    pub(super) fn tensor_like(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        mask_tensor(&mut self.rng.clone(), x, self.p)
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
        let xa = match &self.mask {
            Some(m) => (&x * m.tensor_like(&x)?)?,
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
        if let Some(m) = &self.mask {
            gx = (gx * m.tensor_like(&x)?)?;
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
