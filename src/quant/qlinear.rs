//! `QLinear`: `y = x W^T + b` over a frozen weight, dense, NF4 or LLM.int8.
//!
//! The weight never receives a gradient; the input does (through the dequantised weight), which
//! is what LoRA training needs. On the CPU an NF4 weight goes through the fused
//! dequantise + matmul kernels of [`super::kernel`] in both directions; elsewhere it is
//! dequantised for each product. An int8 weight computes bitsandbytes' LLM.int8 forward on the
//! CPU ([`super::int8`]) and its backward through the fused kernels.
//!
//! The dtypes follow bitsandbytes 0.50's `MatMul4Bit`: the forward product dequantises straight
//! to the compute dtype (`gemm_4bit`), the backward one through `dequantize_4bit`, i.e. the
//! checkpoint's dtype, then the gradient's (outputs and gradients within 1e-5 of their scale of
//! bitsandbytes' f64 reference, `tests/qlora.rs`).

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var};

use super::half::HalfMatrix;
use super::handoff::Handoff;
use super::hf;
use super::hf8;
use super::int8::{Int8Tensor, INT8_THRESHOLD};
use super::kernel::{self, Tiles};
use super::nf4::{Nf4Tensor, QuantDtype};
use crate::weights::{QuantKind, Weights, WeightsError};

/// The stored weight.
#[derive(Clone, Debug)]
pub enum QWeight {
    /// A dense `[out, in]` tensor.
    Dense(Tensor),
    /// NF4 codes and scales of an `[out, in]` matrix.
    Nf4(Arc<Nf4Tensor>),
    /// A frozen `[out, in]` matrix kept in the checkpoint's bf16/f16 and computed in f32 (CPU).
    Half(Arc<HalfMatrix>),
    /// LLM.int8 codes and row scales of an `[out, in]` matrix (bitsandbytes' `Linear8bitLt`).
    Int8(Arc<Int8Tensor>),
}

/// A packed weight the fused CPU kernels multiply with.
#[derive(Clone, Debug)]
enum Packed {
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
    fn backward_round(&self) -> Option<QuantDtype> {
        match self {
            Packed::Nf4(w) => Some(w.dtype),
            Packed::Half(_) | Packed::Int8(_) => None,
        }
    }
}

/// A frozen linear layer.
#[derive(Clone, Debug)]
pub struct QLinear {
    weight: QWeight,
    bias: Option<Tensor>,
    in_features: usize,
    out_features: usize,
}

/// `x W^T` with a packed `W`; backward `g W`.
struct PackedMatMul {
    w: Packed,
    transpose: bool,
    /// Extra rounding of the dequantised weight before the compute dtype's (the backward's
    /// pass through the checkpoint dtype).
    pre_round: Option<QuantDtype>,
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
fn compute_round(dtype: DType) -> QuantDtype {
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
struct Int8MatMul {
    w: Arc<Int8Tensor>,
    bias: Option<Vec<f32>>,
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
fn frozen_matmul(x2: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
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

/// The layer's weight as a [`HalfMatrix`] when it is not quantised and
/// [`Weights::get_compact`] keeps it in the checkpoint's 16-bit dtype.
fn compact_weight(
    w: &Weights,
    in_features: usize,
    out_features: usize,
) -> Result<Option<HalfMatrix>, WeightsError> {
    if w.quantize_spec()
        .is_some_and(|s| s.selects(&w.key("weight")))
    {
        return Ok(None);
    }
    let Some(raw) = w.get_compact(&[out_features, in_features], "weight")? else {
        return Ok(None);
    };
    HalfMatrix::from_tensor(&raw).map_err(|source| WeightsError::Load {
        name: w.key("weight"),
        source,
    })
}

impl QLinear {
    /// A dense layer from `weight` `[out, in]` and an optional `bias` `[out]`.
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let (out_features, in_features) = weight.dims2()?;
        Ok(Self {
            weight: QWeight::Dense(weight.detach()),
            bias: bias.map(|b| b.detach()),
            in_features,
            out_features,
        })
    }

    /// A dense layer whose weight is a trainable variable (gradient checks, full fine-tuning of
    /// small layers): unlike [`QLinear::dense`], gradients reach `weight`.
    pub fn from_var(weight: &Var, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let (out_features, in_features) = weight.dims2()?;
        Ok(Self {
            weight: QWeight::Dense(weight.as_tensor().clone()),
            bias,
            in_features,
            out_features,
        })
    }

    /// An NF4 layer.
    pub fn nf4(weight: Nf4Tensor, bias: Option<Tensor>) -> Result<Self, WeightsError> {
        let [out_features, in_features] = weight.shape[..] else {
            return Err(WeightsError::File {
                path: Default::default(),
                reason: format!("NF4 linear weight must be 2-D, got {:?}", weight.shape),
            });
        };
        Ok(Self {
            weight: QWeight::Nf4(Arc::new(weight)),
            bias: bias.map(|b| b.detach()),
            in_features,
            out_features,
        })
    }

    /// An LLM.int8 layer (bitsandbytes' `Linear8bitLt`, threshold 6.0).
    pub fn int8(weight: Int8Tensor, bias: Option<Tensor>) -> Self {
        let [out_features, in_features] = weight.shape;
        Self {
            weight: QWeight::Int8(Arc::new(weight)),
            bias: bias.map(|b| b.detach()),
            in_features,
            out_features,
        }
    }

    /// Loads the layer under `w`'s prefix: an HF bitsandbytes 4-bit weight when the checkpoint
    /// has one (`weight.quant_state.bitsandbytes__nf4`), an 8-bit one (`SCB`, int8 `weight`),
    /// else a dense `weight`, quantised now if `w` carries a [`QuantizeSpec`] that selects this
    /// layer.
    ///
    /// # Shapes
    /// `weight` `[out, in]`, `bias` `[out]`.
    pub fn load(
        w: &Weights,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Self, WeightsError> {
        let bias = if bias {
            Some(w.get(&[out_features], "bias")?)
        } else {
            None
        };
        if hf::is_prequantized(w) {
            let q = hf::load_nf4(w)?;
            if q.shape != [out_features, in_features] {
                return Err(WeightsError::TensorShape {
                    name: w.key("weight"),
                    expected: vec![out_features, in_features],
                    got: q.shape.clone(),
                });
            }
            return Self::nf4(q, bias);
        }
        if hf8::is_prequantized(w) {
            let q = hf8::load_int8(w)?;
            if q.shape != [out_features, in_features] {
                return Err(WeightsError::TensorShape {
                    name: w.key("weight"),
                    expected: vec![out_features, in_features],
                    got: q.shape.to_vec(),
                });
            }
            return Ok(Self::int8(q, bias));
        }
        if let Some(h) = compact_weight(w, in_features, out_features)? {
            return Ok(Self {
                weight: QWeight::Half(Arc::new(h)),
                bias,
                in_features,
                out_features,
            });
        }
        let weight = w.get(&[out_features, in_features], "weight")?;
        match w.quantize_spec() {
            Some(spec) if spec.selects(&w.key("weight")) && spec.kind == QuantKind::Int8 => {
                let data = weight
                    .to_dtype(DType::F32)
                    .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                    .map_err(|source| WeightsError::Load {
                        name: w.key("weight"),
                        source,
                    })?;
                Ok(Self::int8(
                    Int8Tensor::quantize(&data, [out_features, in_features]),
                    bias,
                ))
            }
            Some(spec) if spec.selects(&w.key("weight")) => {
                if !(32..=4096).contains(&spec.blocksize) || !spec.blocksize.is_power_of_two() {
                    return Err(WeightsError::File {
                        path: w.key("weight").into(),
                        reason: format!(
                            "NF4 blocksize {} must be a power of two in 32..=4096",
                            spec.blocksize
                        ),
                    });
                }
                let data = weight
                    .to_dtype(DType::F32)
                    .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                    .map_err(|source| WeightsError::Load {
                        name: w.key("weight"),
                        source,
                    })?;
                let dtype = match w.dtype() {
                    DType::BF16 => QuantDtype::Bf16,
                    DType::F16 => QuantDtype::F16,
                    _ => QuantDtype::F32,
                };
                let q = Nf4Tensor::quantize(
                    &data,
                    &[out_features, in_features],
                    spec.blocksize,
                    spec.double_quant,
                    dtype,
                );
                Self::nf4(q, bias)
            }
            _ => Ok(Self {
                weight: QWeight::Dense(weight),
                bias,
                in_features,
                out_features,
            }),
        }
    }

    /// This layer with its weight quantised to NF4 (a no-op for NF4 layers).
    pub fn quantized(&self, blocksize: usize, double_quant: bool) -> candle_core::Result<Self> {
        let t = match &self.weight {
            QWeight::Dense(t) => t.clone(),
            QWeight::Half(h) => h.to_tensor(&candle_core::Device::Cpu)?,
            QWeight::Int8(_) => self.dense_weight()?,
            QWeight::Nf4(_) => return Ok(self.clone()),
        };
        let dtype = match (&self.weight, t.dtype()) {
            (QWeight::Half(h), _) => h.dtype(),
            (_, DType::BF16) => QuantDtype::Bf16,
            (_, DType::F16) => QuantDtype::F16,
            _ => QuantDtype::F32,
        };
        let data = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let q = Nf4Tensor::quantize(
            &data,
            &[self.out_features, self.in_features],
            blocksize,
            double_quant,
            dtype,
        );
        Ok(Self {
            weight: QWeight::Nf4(Arc::new(q)),
            bias: self.bias.clone(),
            in_features: self.in_features,
            out_features: self.out_features,
        })
    }

    /// This layer with its weight quantised to LLM.int8 (a no-op for int8 layers).
    pub fn quantized_int8(&self) -> candle_core::Result<Self> {
        if matches!(self.weight, QWeight::Int8(_)) {
            return Ok(self.clone());
        }
        let data = self
            .dense_weight()?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(Self::int8(
            Int8Tensor::quantize(&data, [self.out_features, self.in_features]),
            self.bias.clone(),
        ))
    }

    /// This layer with `delta` `[out, in]` added to its weight (LoRA merge). An NF4 weight is
    /// dequantised, updated and requantised with its blocksize, double quantisation and dtype;
    /// an int8 weight (decoded as bitsandbytes' backward does) is requantised to int8.
    pub fn add_delta(&self, delta: &Tensor) -> candle_core::Result<Self> {
        let weight = match &self.weight {
            QWeight::Dense(t) => {
                QWeight::Dense((t + delta.to_device(t.device())?.to_dtype(t.dtype())?)?.detach())
            }
            // The merged weight is no longer a 16-bit checkpoint value: keep it in f32.
            QWeight::Half(h) => {
                let t = h.to_tensor(&candle_core::Device::Cpu)?;
                QWeight::Dense((&t + delta.to_device(t.device())?.to_dtype(DType::F32)?)?.detach())
            }
            QWeight::Nf4(q) => {
                let d = delta
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let w: Vec<f32> = q.dequantize().iter().zip(&d).map(|(a, b)| a + b).collect();
                let double = matches!(q.absmax, super::nf4::Absmax::Double { .. });
                QWeight::Nf4(Arc::new(Nf4Tensor::quantize(
                    &w,
                    &q.shape,
                    q.blocksize,
                    double,
                    q.dtype,
                )))
            }
            QWeight::Int8(q) => {
                let d = delta
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let w: Vec<f32> = q.decode().iter().zip(&d).map(|(a, b)| a + b).collect();
                QWeight::Int8(Arc::new(Int8Tensor::quantize(&w, q.shape)))
            }
        };
        Ok(Self {
            weight,
            bias: self.bias.clone(),
            in_features: self.in_features,
            out_features: self.out_features,
        })
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The stored weight.
    pub fn weight(&self) -> &QWeight {
        &self.weight
    }

    /// The weight as a dense `[out, in]` tensor (for NF4: f32 values rounded through the
    /// checkpoint dtype, as `bitsandbytes.functional.dequantize_4bit` returns them; for int8:
    /// `code * (SCB / 127)`, the weight of bitsandbytes' backward).
    pub fn dense_weight(&self) -> candle_core::Result<Tensor> {
        match &self.weight {
            QWeight::Dense(t) => Ok(t.clone()),
            QWeight::Half(h) => h.to_tensor(&candle_core::Device::Cpu),
            QWeight::Nf4(q) => Tensor::from_vec(
                q.dequantize(),
                (self.out_features, self.in_features),
                &candle_core::Device::Cpu,
            ),
            QWeight::Int8(q) => Tensor::from_vec(
                q.decode(),
                (self.out_features, self.in_features),
                &candle_core::Device::Cpu,
            ),
        }
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Parameters stored (weight elements + bias).
    pub fn param_count(&self) -> usize {
        self.in_features * self.out_features + self.bias.as_ref().map_or(0, |b| b.elem_count())
    }

    /// Bytes the weight takes in memory.
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            QWeight::Dense(t) => t.elem_count() * t.dtype().size_in_bytes(),
            QWeight::Nf4(q) => q.storage_bytes(),
            QWeight::Half(h) => h.storage_bytes(),
            QWeight::Int8(q) => q.storage_bytes(),
        }
    }

    /// The weight for the fused CPU kernels, when it is packed and they apply on `device`.
    fn packed_on(&self, device: &Device) -> Option<Packed> {
        match &self.weight {
            QWeight::Nf4(q) if device.is_cpu() => Some(Packed::Nf4(q.clone())),
            QWeight::Half(h) => Some(Packed::Half(h.clone())),
            QWeight::Int8(q) if device.is_cpu() => Some(Packed::Int8(q.clone())),
            _ => None,
        }
    }

    /// An NF4 weight dequantised whole (off the CPU), rounded through `round`, as a `[out, in]`
    /// tensor shaped like `like`'s dtype and device.
    fn nf4_dense(
        &self,
        q: &Nf4Tensor,
        round: &[QuantDtype],
        like: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let mut w = vec![0f32; q.len()];
        q.dequantize_into_as(0, &mut w, round);
        Tensor::from_vec(w, (self.out_features, self.in_features), like.device())?
            .to_dtype(like.dtype())
    }

    /// Whether the weight takes part in autograd (a variable, see [`QLinear::from_var`]).
    pub fn is_trainable(&self) -> bool {
        matches!(&self.weight, QWeight::Dense(w) if w.track_op())
    }

    /// The input gradient of [`forward`](Self::forward), `g W`, for the output gradient `g`
    /// (untracked; the frozen weight and bias get none).
    ///
    /// # Shapes
    /// `g` `[..., out]` -> `[..., in]`.
    pub fn input_grad(&self, g: &Tensor) -> candle_core::Result<Tensor> {
        let dims = g.dims();
        let lead: usize = dims[..dims.len() - 1].iter().product();
        let g2 = g
            .detach()
            .contiguous()?
            .reshape((lead, self.out_features))?;
        let gx = match (self.packed_on(g.device()), &self.weight) {
            (Some(w), _) => g2.apply_op1_no_bwd(&PackedMatMul {
                pre_round: w.backward_round(),
                w,
                transpose: true,
            })?,
            (None, QWeight::Dense(w)) => g2.matmul(&w.detach().to_dtype(g2.dtype())?)?,
            (None, QWeight::Nf4(q)) => {
                g2.matmul(&self.nf4_dense(q, &[q.dtype, compute_round(g.dtype())], &g2)?)?
            }
            (None, QWeight::Int8(_)) => g2.matmul(
                &self
                    .dense_weight()?
                    .to_device(g2.device())?
                    .to_dtype(g2.dtype())?,
            )?,
            (None, QWeight::Half(_)) => unreachable!("a 16-bit weight is always packed"),
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = self.in_features;
        gx.reshape(out_dims)
    }

    /// LLM.int8's forward of `x2` `[lead, in]` on the CPU (bias inside, as bitsandbytes adds it
    /// before the outlier columns); elsewhere the decoded weight's product.
    fn int8_forward(
        &self,
        q: &Arc<Int8Tensor>,
        x2: &Tensor,
        dims: &[usize],
    ) -> candle_core::Result<Tensor> {
        let y = if x2.device().is_cpu() {
            let bias = match &self.bias {
                Some(b) => Some(b.to_dtype(DType::F32)?.to_vec1::<f32>()?),
                None => None,
            };
            x2.contiguous()?
                .apply_op1(Int8MatMul { w: q.clone(), bias })?
        } else {
            let w = self
                .dense_weight()?
                .to_device(x2.device())?
                .to_dtype(x2.dtype())?;
            let y = frozen_matmul(x2, &w)?;
            match &self.bias {
                Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?)?,
                None => y,
            }
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = self.out_features;
        y.reshape(out_dims)
    }

    /// `x W^T + b`.
    ///
    /// # Shapes
    /// `x` `[..., in]` -> `[..., out]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let lead: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((lead, self.in_features))?;
        if let QWeight::Int8(q) = &self.weight {
            return self.int8_forward(q, &x2, dims);
        }
        let y = match (self.packed_on(x.device()), &self.weight) {
            (Some(w), _) => x2.contiguous()?.apply_op1(PackedMatMul {
                w,
                transpose: false,
                pre_round: None,
            })?,
            (None, QWeight::Dense(w)) => frozen_matmul(&x2, w)?,
            (None, QWeight::Nf4(q)) => {
                frozen_matmul(&x2, &self.nf4_dense(q, &[compute_round(x.dtype())], &x2)?)?
            }
            (None, QWeight::Half(_) | QWeight::Int8(_)) => {
                unreachable!("16-bit weights are packed, int8 ones take int8_forward")
            }
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?)?,
            None => y,
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = self.out_features;
        y.reshape(out_dims)
    }
}
