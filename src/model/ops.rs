//! Fast ops that keep autograd working.
//!
//! candle's fused `softmax_last_dim`, `rms_norm` and `layer_norm` record no backward, so a
//! gradient silently stops at them. These versions take the fused path when nothing needs a
//! gradient (inference, the frozen vision encoder), a fused CPU kernel with a hand-written
//! backward when something does, and plain differentiable tensor ops on other devices.
//!
//! Backward formulas (y the op's output, g the incoming gradient, r the inverse scale):
//! - softmax: `dx = y * (g - sum(g * y))`
//! - RMS normalise `y = x * r`, `r = (mean(x^2) + eps)^-1/2`: `dx = r * (g - y * mean(g * y))`
//! - layer normalise `y = (x - mean) * r`: `dx = r * (g - mean(g) - y * mean(g * y))`

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, WithDType, D};
use half::{bf16, f16};

type CResult<T> = candle_core::Result<T>;

/// The dtype reductions run in: f64 stays f64, everything else goes to f32.
pub fn accum_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// Softmax over the last dimension, differentiable.
pub fn softmax_last_dim(x: &Tensor) -> CResult<Tensor> {
    if !x.track_op() {
        return candle_nn::ops::softmax_last_dim(x);
    }
    if x.device().is_cpu() {
        return x.contiguous()?.apply_op1(RowOp::Softmax);
    }
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// `weight * x / sqrt(mean(x^2) + eps)` over the last dimension (RMSNorm), differentiable in `x`
/// and `weight` (candle's fused kernel has no f64; f64 always takes the row kernel). Half-precision inputs are normalised in f32 and cast back before the weight is
/// applied, as the reference `DeepseekV2RMSNorm` does.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> CResult<Tensor> {
    if !x.track_op() && !weight.track_op() && x.dtype() != DType::F64 {
        return candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps as f32);
    }
    let y = if x.device().is_cpu() {
        x.contiguous()?.apply_op1(RowOp::RmsNormalize(eps))?
    } else {
        let xf = x.to_dtype(DType::F32)?;
        let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
        xf.broadcast_div(&(ms + eps)?.sqrt()?)?
            .to_dtype(x.dtype())?
    };
    y.broadcast_mul(weight)
}

/// LayerNorm over the last dimension with affine `weight` and `bias`, differentiable.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> CResult<Tensor> {
    if !x.track_op() && !weight.track_op() && !bias.track_op() && x.dtype() != DType::F64 {
        return candle_nn::ops::layer_norm(&x.contiguous()?, weight, bias, eps as f32);
    }
    let y = if x.device().is_cpu() {
        x.contiguous()?.apply_op1(RowOp::LayerNormalize(eps))?
    } else {
        let xf = x.to_dtype(DType::F32)?;
        let mean = xf.mean_keepdim(D::Minus1)?;
        let c = xf.broadcast_sub(&mean)?;
        let var = c.sqr()?.mean_keepdim(D::Minus1)?;
        c.broadcast_div(&(var + eps)?.sqrt()?)?
            .to_dtype(x.dtype())?
    };
    y.broadcast_mul(weight)?.broadcast_add(bias)
}

/// The exact GELU `x (1 + erf(x / sqrt 2)) / 2`. Without gradients, contiguous f32 on the CPU
/// takes a vectorised kernel (see [`super::fastmath`]: its `erf` within 6e-7 of libm's, the
/// approximation PyTorch's own CPU kernel uses); everything else takes candle's `gelu_erf`.
pub fn gelu_erf(x: &Tensor) -> CResult<Tensor> {
    if !x.track_op() && x.device().is_cpu() && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1_no_bwd(&GeluErf);
    }
    x.gelu_erf()
}

/// [`gelu_erf`]'s CPU kernel.
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "deepsynth-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let (CpuStorage::F32(v), Some((a, b))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("{}: wants contiguous f32", self.name());
        };
        let mut out = v[a..b].to_vec();
        use rayon::prelude::*;
        out.par_chunks_mut(1 << 14)
            .for_each(super::fastmath::gelu_in_place);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// A per-row (last dimension) op with a CPU kernel and a backward.
#[derive(Clone, Copy, Debug)]
enum RowOp {
    Softmax,
    RmsNormalize(f64),
    LayerNormalize(f64),
}

/// Element types the row kernels run on: half types go through f32, f64 stays f64.
trait RowFloat: WithDType {
    fn to_acc(self) -> f64;
    fn from_acc(v: f64) -> Self;
}

impl RowFloat for f32 {
    fn to_acc(self) -> f64 {
        self as f64
    }
    fn from_acc(v: f64) -> Self {
        v as f32
    }
}
impl RowFloat for f64 {
    fn to_acc(self) -> f64 {
        self
    }
    fn from_acc(v: f64) -> Self {
        v
    }
}
impl RowFloat for bf16 {
    fn to_acc(self) -> f64 {
        self.to_f64()
    }
    fn from_acc(v: f64) -> Self {
        bf16::from_f64(v)
    }
}
impl RowFloat for f16 {
    fn to_acc(self) -> f64 {
        self.to_f64()
    }
    fn from_acc(v: f64) -> Self {
        f16::from_f64(v)
    }
}

impl RowOp {
    /// One row in f32 arithmetic (f64 for f64 data).
    fn row<T: RowFloat>(self, src: &[T], dst: &mut [T], wide: bool) {
        let n = src.len() as f64;
        // Accumulate in f64 only for f64 data; f32 otherwise (matches the reference's f32 math).
        let round = |v: f64| if wide { v } else { v as f32 as f64 };
        match self {
            RowOp::Softmax => {
                let max = src
                    .iter()
                    .map(|v| v.to_acc())
                    .fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for (d, s) in dst.iter_mut().zip(src) {
                    let e = round((s.to_acc() - max).exp());
                    sum = round(sum + e);
                    *d = T::from_acc(e);
                }
                let inv = round(1.0 / sum);
                for d in dst.iter_mut() {
                    *d = T::from_acc(round(d.to_acc() * inv));
                }
            }
            RowOp::RmsNormalize(eps) => {
                let mut ss = 0.0;
                for s in src {
                    let v = s.to_acc();
                    ss = round(ss + v * v);
                }
                let r = round(1.0 / round(round(ss / n) + eps).sqrt());
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = T::from_acc(round(s.to_acc() * r));
                }
            }
            RowOp::LayerNormalize(eps) => {
                let mut sum = 0.0;
                for s in src {
                    sum = round(sum + s.to_acc());
                }
                let mean = round(sum / n);
                let mut var = 0.0;
                for s in src {
                    let c = round(s.to_acc() - mean);
                    var = round(var + c * c);
                }
                let r = round(1.0 / round(round(var / n) + eps).sqrt());
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = T::from_acc(round(round(s.to_acc() - mean) * r));
                }
            }
        }
    }

    fn run<T: RowFloat>(self, data: &[T], layout: &Layout, wide: bool) -> CResult<Vec<T>> {
        let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: input not contiguous", self.name()))
        })?;
        let data = &data[start..end];
        let cols = layout.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![T::zero(); data.len()];
        use rayon::prelude::*;
        out.par_chunks_mut(cols)
            .zip(data.par_chunks(cols))
            .for_each(|(d, s)| self.row(s, d, wide));
        Ok(out)
    }
}

impl CustomOp1 for RowOp {
    fn name(&self) -> &'static str {
        match self {
            RowOp::Softmax => "deepsynth-softmax-last-dim",
            RowOp::RmsNormalize(_) => "deepsynth-rms-normalize",
            RowOp::LayerNormalize(_) => "deepsynth-layer-normalize",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let shape = layout.shape().clone();
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(self.run(v, layout, false)?),
            CpuStorage::F64(v) => CpuStorage::F64(self.run(v, layout, true)?),
            CpuStorage::BF16(v) => CpuStorage::BF16(self.run(v, layout, false)?),
            CpuStorage::F16(v) => CpuStorage::F16(self.run(v, layout, false)?),
            other => candle_core::bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        };
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let dtype = arg.dtype();
        let wide = if dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let g = grad.to_dtype(wide)?;
        let y = res.to_dtype(wide)?;
        let dx = match self {
            RowOp::Softmax => {
                let gy = (&g * &y)?.sum_keepdim(D::Minus1)?;
                (&y * g.broadcast_sub(&gy)?)?
            }
            RowOp::RmsNormalize(eps) => {
                let x = arg.to_dtype(wide)?;
                let r = (x.sqr()?.mean_keepdim(D::Minus1)? + *eps)?
                    .sqrt()?
                    .recip()?;
                let m = (&g * &y)?.mean_keepdim(D::Minus1)?;
                g.broadcast_sub(&y.broadcast_mul(&m)?)?.broadcast_mul(&r)?
            }
            RowOp::LayerNormalize(eps) => {
                let x = arg.to_dtype(wide)?;
                let c = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
                let r = (c.sqr()?.mean_keepdim(D::Minus1)? + *eps)?
                    .sqrt()?
                    .recip()?;
                let mg = g.mean_keepdim(D::Minus1)?;
                let m = (&g * &y)?.mean_keepdim(D::Minus1)?;
                g.broadcast_sub(&mg)?
                    .broadcast_sub(&y.broadcast_mul(&m)?)?
                    .broadcast_mul(&r)?
            }
        };
        Ok(Some(dx.to_dtype(dtype)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn finite_diff(f: impl Fn(&Tensor) -> Tensor, x: &[f64], dir: &[f64]) -> f64 {
        let dev = Device::Cpu;
        let h = 1e-6;
        let p: Vec<f64> = x.iter().zip(dir).map(|(a, d)| a + h * d).collect();
        let m: Vec<f64> = x.iter().zip(dir).map(|(a, d)| a - h * d).collect();
        let fp = f(&Tensor::from_vec(p, (3, 5), &dev).unwrap());
        let fm = f(&Tensor::from_vec(m, (3, 5), &dev).unwrap());
        let fp: f64 = fp.to_scalar().unwrap();
        let fm: f64 = fm.to_scalar().unwrap();
        (fp - fm) / (2.0 * h)
    }

    /// Each op's analytic gradient (a scalar loss `sum(op(x) * w)`) equals central differences.
    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let xs: Vec<f64> = (0..15)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) * 0.31)
            .collect();
        let dir: Vec<f64> = (0..15).map(|i| ((i * 13 % 7) as f64 - 3.0) * 0.2).collect();
        let wv: Vec<f64> = (0..15).map(|i| 0.5 + (i as f64) * 0.1).collect();
        let w = Tensor::from_vec(wv, (3, 5), &dev).unwrap();
        let gamma = Tensor::from_vec(vec![1.1f64, 0.9, 1.3, 0.7, 1.0], 5, &dev).unwrap();
        let beta = Tensor::from_vec(vec![0.1f64, -0.2, 0.0, 0.3, 0.05], 5, &dev).unwrap();
        type OpFn<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;
        let ops: Vec<(&str, OpFn)> = vec![
            (
                "softmax",
                Box::new(|x: &Tensor| softmax_last_dim(x).unwrap()),
            ),
            (
                "rms",
                Box::new(|x: &Tensor| rms_norm(x, &gamma, 1e-6).unwrap()),
            ),
            (
                "ln",
                Box::new(|x: &Tensor| layer_norm(x, &gamma, &beta, 1e-5).unwrap()),
            ),
        ];
        for (name, op) in &ops {
            let loss = |x: &Tensor| (op(x) * &w).unwrap().sum_all().unwrap();
            let var = Var::from_vec(xs.clone(), (3, 5), &dev).unwrap();
            let l = loss(var.as_tensor());
            let grads = l.backward().unwrap();
            let g = grads.get(var.as_tensor()).expect("gradient reaches x");
            let d = Tensor::from_vec(dir.clone(), (3, 5), &dev).unwrap();
            let analytic: f64 = (g * d).unwrap().sum_all().unwrap().to_scalar().unwrap();
            let numeric = finite_diff(loss, &xs, &dir);
            assert!(
                (analytic - numeric).abs() < 1e-6 * (1.0 + numeric.abs()),
                "{name}: analytic {analytic} vs numeric {numeric}"
            );
            // The tracked path equals the fused inference path.
            let fused = op(&Tensor::from_vec(xs.clone(), (3, 5), &dev).unwrap());
            let tracked = op(var.as_tensor());
            let diff: f64 = (fused - tracked)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(diff < 1e-12, "{name}: fused vs tracked differ by {diff}");
        }
    }
}
