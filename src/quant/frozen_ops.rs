//! The custom ops behind [`super::QLinear`]: products with a packed frozen weight (NF4, a
//! 16-bit matrix or LLM.int8) through the fused CPU kernels, and a dense product whose backward
//! reaches the input only. Each records a backward to its input, none to the weight.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use super::half::HalfMatrix;
use super::handoff::Handoff;
use super::int8::{Int8Tensor, INT8_THRESHOLD};
use super::kernel::{self, Tiles};
use super::nf4::{Nf4Tensor, QuantDtype};

/// A packed weight the fused CPU kernels multiply with.
#[derive(Clone, Debug)]
pub(super) enum Packed {
    Nf4(Arc<Nf4Tensor>),
    Half(Arc<HalfMatrix>),
    Int8(Arc<Int8Tensor>),
}

impl Tiles for Packed {
    fn dims(&self) -> (usize, usize) {
        match self {
            Packed::Nf4(w) => w.dims(),
            Packed::Half(w) => w.dims(),
            Packed::Int8(w) => w.dims(),
        }
    }
    fn decode(&self, start: usize, out: &mut [f32], round: &[QuantDtype]) {
        match self {
            Packed::Nf4(w) => w.decode(start, out, round),
            Packed::Half(w) => w.decode(start, out, round),
            Packed::Int8(w) => Tiles::decode(&**w, start, out, round),
        }
    }
}

impl Packed {
    /// The backward product's extra rounding: bitsandbytes dequantises NF4 through the
    /// checkpoint dtype; a 16-bit weight decodes exactly.
    pub(super) fn backward_round(&self) -> Option<QuantDtype> {
        match self {
            Packed::Nf4(w) => Some(w.dtype),
            Packed::Half(_) | Packed::Int8(_) => None,
        }
    }
}

/// `x W^T` with a packed `W`; backward `g W`.
pub(super) struct PackedMatMul {
    pub(super) w: Packed,
    pub(super) transpose: bool,
    /// Extra rounding of the dequantised weight before the compute dtype's (the backward's
    /// pass through the checkpoint dtype).
    pub(super) pre_round: Option<QuantDtype>,
}

fn to_f32_vec(s: &CpuStorage, l: &Layout) -> candle_core::Result<Vec<f32>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("nf4 matmul: input not contiguous".into()))?;
    Ok(match s {
        CpuStorage::F32(v) => v[a..b].to_vec(),
        CpuStorage::BF16(v) => v[a..b].iter().map(|x| x.to_f32()).collect(),
        CpuStorage::F16(v) => v[a..b].iter().map(|x| x.to_f32()).collect(),
        CpuStorage::F64(v) => v[a..b].iter().map(|&x| x as f32).collect(),
        other => candle_core::bail!("nf4 matmul: unsupported dtype {:?}", other.dtype()),
    })
}

fn from_f32_vec(v: Vec<f32>, dtype: DType) -> candle_core::Result<CpuStorage> {
    Ok(match dtype {
        DType::F32 => CpuStorage::F32(v),
        DType::BF16 => CpuStorage::BF16(v.into_iter().map(half::bf16::from_f32).collect()),
        DType::F16 => CpuStorage::F16(v.into_iter().map(half::f16::from_f32).collect()),
        DType::F64 => CpuStorage::F64(v.into_iter().map(|x| x as f64).collect()),
        other => candle_core::bail!("nf4 matmul: unsupported dtype {other:?}"),
    })
}

/// bitsandbytes dequantises to the compute dtype (`A.dtype`) inside `gemm_4bit`.
pub(super) fn compute_round(dtype: DType) -> QuantDtype {
    match dtype {
        DType::BF16 => QuantDtype::Bf16,
        DType::F16 => QuantDtype::F16,
        _ => QuantDtype::F32,
    }
}

impl CustomOp1 for PackedMatMul {
    fn name(&self) -> &'static str {
        "deepsynth-packed-matmul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, cols) = l.shape().dims2()?;
        let (n, k) = self.w.dims();
        let x = to_f32_vec(s, l)?;
        let (want, out_cols) = if self.transpose { (n, k) } else { (k, n) };
        if cols != want {
            candle_core::bail!("nf4 matmul: input has {cols} columns, weight needs {want}");
        }
        let mut out = vec![0f32; m * out_cols];
        let round = [
            self.pre_round.unwrap_or(QuantDtype::F32),
            compute_round(s.dtype()),
        ];
        if matches!(self.w, Packed::Half(_)) && m >= kernel::WIDE_ROWS {
            kernel::matmul_wide(&x, m, &self.w, &round, self.transpose, &mut out);
        } else if self.transpose {
            kernel::matmul_gw(&x, m, &self.w, &round, &mut out);
        } else {
            kernel::matmul_xwt(&x, m, &self.w, &round, &mut out);
        }
        Ok((from_f32_vec(out, s.dtype())?, Shape::from((m, out_cols))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let back = PackedMatMul {
            w: self.w.clone(),
            transpose: !self.transpose,
            pre_round: self.w.backward_round(),
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

/// LLM.int8's `x W^T + b` on the CPU ([`Int8Tensor::matmul`]); backward `g W` with bitsandbytes'
/// backward weight, through the fused kernels.
pub(super) struct Int8MatMul {
    pub(super) w: Arc<Int8Tensor>,
    pub(super) bias: Option<Vec<f32>>,
}

impl CustomOp1 for Int8MatMul {
    fn name(&self) -> &'static str {
        "deepsynth-int8-matmul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, cols) = l.shape().dims2()?;
        let (n, k) = self.w.dims();
        if cols != k {
            candle_core::bail!("int8 matmul: input has {cols} columns, weight needs {k}");
        }
        let x = to_f32_vec(s, l)?;
        let y = self.w.matmul(&x, m, self.bias.as_deref(), INT8_THRESHOLD);
        Ok((from_f32_vec(y, s.dtype())?, Shape::from((m, n))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let back = PackedMatMul {
            w: Packed::Int8(self.w.clone()),
            transpose: true,
            pre_round: None,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

/// The backward of `y = x W^T` for a frozen `W`: the input gets `g W`, nothing else. Its
/// forward hands out `y`, computed beforehand with untracked ops.
///
/// candle's own matmul backward also computes (and keeps until the backward pass ends) the
/// gradient of a frozen weight: for a full-size `lm_head` that is 3 x 662 MB per step, and for
/// every frozen base linear a product as large as the forward one.
struct FrozenWeightGrad {
    out: Handoff,
    w: Tensor,
}

impl CustomOp1 for FrozenWeightGrad {
    fn name(&self) -> &'static str {
        "deepsynth-frozen-weight-matmul"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.out.cpu()
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        self.out.cuda()
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w)?))
    }
}

/// `x2 W^T` for a frozen `[out, in]` weight: gradients reach `x2` only (see
/// [`FrozenWeightGrad`]). A trainable `w` (a variable, or computed from one) takes candle's
/// ordinary matmul so that its gradient is kept.
pub(super) fn frozen_matmul(x2: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    if w.track_op() {
        return x2.matmul(&w.t()?);
    }
    let y = x2.detach().matmul(&w.t()?)?;
    if !x2.track_op() {
        return Ok(y);
    }
    x2.apply_op1(FrozenWeightGrad {
        out: Handoff::new(y),
        w: w.clone(),
    })
}
