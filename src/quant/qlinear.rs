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

use candle_core::{DType, Device, Tensor, Var};

use super::frozen_ops::{compute_round, frozen_matmul, Int8MatMul, Packed, PackedMatMul};
use super::half::HalfMatrix;
use super::hf;
use super::hf8;
use super::int8::Int8Tensor;
use super::nf4::{Nf4Tensor, QuantDtype};
use super::nf4_device::Nf4Resident;
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

/// A frozen linear layer.
#[derive(Clone, Debug)]
pub struct QLinear {
    weight: QWeight,
    bias: Option<Tensor>,
    in_features: usize,
    out_features: usize,
    /// The device the layer computes on.
    device: Device,
    /// An NF4 weight's codes and scales on `device` (off the CPU, or when asked for).
    resident: Option<Arc<Nf4Resident>>,
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
            device: weight.device().clone(),
            weight: QWeight::Dense(weight.detach()),
            bias: bias.map(|b| b.detach()),
            in_features,
            out_features,
            resident: None,
        })
    }

    /// A dense layer whose weight is a trainable variable (gradient checks, full fine-tuning of
    /// small layers): unlike [`QLinear::dense`], gradients reach `weight`.
    pub fn from_var(weight: &Var, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let (out_features, in_features) = weight.dims2()?;
        Ok(Self {
            device: weight.device().clone(),
            weight: QWeight::Dense(weight.as_tensor().clone()),
            bias,
            in_features,
            out_features,
            resident: None,
        })
    }

    /// An NF4 layer (computing where `bias` lives, else on the CPU; see
    /// [`QLinear::resident_on`] to move it).
    pub fn nf4(weight: Nf4Tensor, bias: Option<Tensor>) -> Result<Self, WeightsError> {
        let [out_features, in_features] = weight.shape[..] else {
            return Err(WeightsError::File {
                path: Default::default(),
                reason: format!("NF4 linear weight must be 2-D, got {:?}", weight.shape),
            });
        };
        Ok(Self {
            device: bias.as_ref().map_or(Device::Cpu, |b| b.device().clone()),
            weight: QWeight::Nf4(Arc::new(weight)),
            bias: bias.map(|b| b.detach()),
            in_features,
            out_features,
            resident: None,
        })
    }

    /// An LLM.int8 layer (bitsandbytes' `Linear8bitLt`, threshold 6.0), computing where
    /// `bias` lives, else on the CPU.
    pub fn int8(weight: Int8Tensor, bias: Option<Tensor>) -> Self {
        let [out_features, in_features] = weight.shape;
        Self {
            device: bias.as_ref().map_or(Device::Cpu, |b| b.device().clone()),
            weight: QWeight::Int8(Arc::new(weight)),
            bias: bias.map(|b| b.detach()),
            in_features,
            out_features,
            resident: None,
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
        let l = Self::load_stored(w, in_features, out_features, bias)?;
        if w.device().is_cpu() {
            return Ok(l);
        }
        l.resident_on(w.device())
            .map_err(|source| WeightsError::Load {
                name: w.key("weight"),
                source,
            })
    }

    /// [`QLinear::load`] before the layer is moved to `w`'s device.
    fn load_stored(
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
                device: Device::Cpu,
                resident: None,
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
                device: weight.device().clone(),
                weight: QWeight::Dense(weight),
                bias,
                in_features,
                out_features,
                resident: None,
            }),
        }
    }

    /// This layer computing on `device`: a dense weight and the bias are copied there, an NF4
    /// weight's codes and scales are uploaded there ([`Nf4Resident`]) and dequantised there for
    /// each product; a 16-bit CPU weight becomes a dense one off the CPU; an int8 weight stays
    /// on the host and is decoded for each product off the CPU.
    pub fn resident_on(&self, device: &Device) -> candle_core::Result<Self> {
        let weight = match &self.weight {
            QWeight::Dense(t) => QWeight::Dense(t.to_device(device)?),
            QWeight::Half(h) if !device.is_cpu() => QWeight::Dense(h.to_tensor(device)?),
            other => other.clone(),
        };
        let resident = match &self.weight {
            QWeight::Nf4(q) => Some(Arc::new(Nf4Resident::upload(q, device)?)),
            _ => None,
        };
        Ok(Self {
            weight,
            bias: match &self.bias {
                Some(b) => Some(b.to_device(device)?),
                None => None,
            },
            in_features: self.in_features,
            out_features: self.out_features,
            device: device.clone(),
            resident,
        })
    }

    /// The device the layer computes on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The NF4 weight's codes and scales on the layer's device, when they were uploaded.
    pub fn resident(&self) -> Option<&Nf4Resident> {
        self.resident.as_deref()
    }

    /// `self` (derived from `like`) computing where `like` does, its NF4 weight uploaded there
    /// when `like`'s was or `like` is off the CPU.
    fn keep_residency(self, like: &Self) -> candle_core::Result<Self> {
        if like.resident.is_some() || !like.device.is_cpu() {
            self.resident_on(&like.device)
        } else {
            Ok(self)
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
        Self {
            weight: QWeight::Nf4(Arc::new(q)),
            bias: self.bias.clone(),
            in_features: self.in_features,
            out_features: self.out_features,
            device: self.device.clone(),
            resident: None,
        }
        .keep_residency(self)
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
        Self {
            weight,
            bias: self.bias.clone(),
            in_features: self.in_features,
            out_features: self.out_features,
            device: self.device.clone(),
            resident: None,
        }
        .keep_residency(self)
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
            QWeight::Nf4(q) if device.is_cpu() && self.resident.is_none() => {
                Some(Packed::Nf4(q.clone()))
            }
            QWeight::Half(h) => Some(Packed::Half(h.clone())),
            QWeight::Int8(q) if device.is_cpu() => Some(Packed::Int8(q.clone())),
            _ => None,
        }
    }

    /// An NF4 weight dequantised whole (off the CPU), rounded through `round`, as a `[out, in]`
    /// tensor shaped like `like`'s dtype and device: on the device from its resident codes
    /// when they are there (`round` is then at most the checkpoint's dtype and `like`'s),
    /// else on the host and uploaded.
    fn nf4_dense(
        &self,
        q: &Nf4Tensor,
        round: &[QuantDtype],
        like: &Tensor,
    ) -> candle_core::Result<Tensor> {
        if let Some(r) = &self.resident {
            let out = like.dtype();
            let first = match round {
                [first, last] if *last == compute_round(out) => Some(*first),
                [last] if *last == compute_round(out) => Some(QuantDtype::F32),
                _ => None,
            };
            if let (true, Some(first), DType::F32 | DType::BF16 | DType::F16) =
                (r.device().same_device(like.device()), first, out)
            {
                return r.dequantize(first, out);
            }
        }
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
