//! [`HalfMatrix`]: a frozen `[N, K]` weight kept in the checkpoint's 16-bit float format and
//! multiplied in f32 through the fused kernels of [`super::kernel`].
//!
//! A bf16 or f16 value converts to f32 exactly, so the products equal, up to summation order
//! (within 1e-5 in `tests/lora_fused.rs`), those of the weight converted up front, at half its
//! memory: for a full-size DeepSeek-OCR QLoRA run that is
//! 1.45 GB (the vision tower and `lm_head`).

use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};

use super::nf4::QuantDtype;

/// The stored values.
#[derive(Clone, Debug)]
pub enum HalfData {
    /// bfloat16.
    Bf16(Vec<bf16>),
    /// IEEE half.
    F16(Vec<f16>),
}

/// A row-major `[N, K]` matrix of 16-bit floats.
#[derive(Clone, Debug)]
pub struct HalfMatrix {
    /// The values.
    pub data: HalfData,
    /// `[N, K]`.
    pub shape: [usize; 2],
}

impl HalfMatrix {
    /// The matrix of a 2-D bf16 or f16 tensor; `None` for any other dtype or rank.
    pub fn from_tensor(t: &Tensor) -> candle_core::Result<Option<Self>> {
        let Ok((n, k)) = t.dims2() else {
            return Ok(None);
        };
        let flat = t.flatten_all()?;
        let data = match t.dtype() {
            DType::BF16 => HalfData::Bf16(flat.to_vec1()?),
            DType::F16 => HalfData::F16(flat.to_vec1()?),
            _ => return Ok(None),
        };
        Ok(Some(Self {
            data,
            shape: [n, k],
        }))
    }

    /// The stored format.
    pub fn dtype(&self) -> QuantDtype {
        match self.data {
            HalfData::Bf16(_) => QuantDtype::Bf16,
            HalfData::F16(_) => QuantDtype::F16,
        }
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.shape[0] * self.shape[1]
    }

    /// Whether the matrix has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of storage.
    pub fn storage_bytes(&self) -> usize {
        self.len() * 2
    }

    /// Decodes elements `start..start + out.len()` to f32, then applies `round` in order.
    pub fn decode_into(&self, start: usize, out: &mut [f32], round: &[QuantDtype]) {
        let end = start + out.len();
        match &self.data {
            HalfData::Bf16(v) => {
                for (o, x) in out.iter_mut().zip(&v[start..end]) {
                    *o = x.to_f32();
                }
            }
            HalfData::F16(v) => {
                for (o, x) in out.iter_mut().zip(&v[start..end]) {
                    *o = x.to_f32();
                }
            }
        }
        for d in round.iter().filter(|d| **d != QuantDtype::F32) {
            for o in out.iter_mut() {
                *o = d.round(*o);
            }
        }
    }

    /// The matrix as an f32 tensor on `device`.
    pub fn to_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        let mut v = vec![0f32; self.len()];
        self.decode_into(0, &mut v, &[]);
        Tensor::from_vec(v, (self.shape[0], self.shape[1]), device)
    }
}
