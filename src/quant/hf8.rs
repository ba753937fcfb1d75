//! The Hugging Face layout of bitsandbytes 8-bit weights (what `save_pretrained` writes for a
//! `Linear8bitLt` loaded with `load_in_8bit=True`): for a layer `W`, `W.weight` (safetensors
//! `I8` `[out, in]`, the row-major codes `CB`), `W.SCB` (f32 `[out]`, the row absmax) and
//! `W.weight_format` (a `u8` scalar, 0 = row-major, the only format bitsandbytes 0.50 writes),
//! plus the `quantization_config` block of `config.json` (`load_in_8bit`,
//! `llm_int8_threshold` 6.0).

use std::borrow::Cow;

use candle_core::{DType, Tensor};

use super::int8::Int8Tensor;
use crate::weights::{Weights, WeightsError};

/// Whether the layer under `w` is stored in the 8-bit layout (an `SCB` or int8 `weight`).
pub fn is_prequantized(w: &Weights) -> bool {
    w.contains("SCB") || w.is_int8("weight")
}

fn bad(w: &Weights, reason: String) -> WeightsError {
    WeightsError::File {
        path: w.key("weight").into(),
        reason,
    }
}

/// Reads the 8-bit weight of the layer under `w`: int8 codes, their f32 row scales (`SCB`,
/// whose absence is a [`WeightsError::MissingTensor`]) and, when present, a row-major
/// `weight_format`.
pub fn load_int8(w: &Weights) -> Result<Int8Tensor, WeightsError> {
    if !w.is_int8("weight") {
        return Err(bad(w, "an 8-bit layer's weight must be int8 codes".into()));
    }
    let load = |name: &str| w.get_raw(name);
    let codes = load("weight")?;
    let [rows, cols] = codes.dims()[..] else {
        return Err(bad(
            w,
            format!("int8 weight must be 2-D, got {:?}", codes.dims()),
        ));
    };
    let scb = load("SCB")?;
    if scb.dtype() != DType::F32 || scb.dims() != [rows] {
        return Err(WeightsError::File {
            path: w.key("SCB").into(),
            reason: format!(
                "SCB must be f32 [{rows}], got {:?} {:?}",
                scb.dtype(),
                scb.dims()
            ),
        });
    }
    if w.contains("weight_format") {
        let f = load("weight_format")?;
        let v: Vec<u8> = f
            .flatten_all()
            .and_then(|t| t.to_dtype(DType::U8)?.to_vec1())
            .map_err(|source| WeightsError::Load {
                name: w.key("weight_format"),
                source,
            })?;
        if v != [0] {
            return Err(bad(
                w,
                format!("weight_format {v:?}: only 0 (row-major) is supported"),
            ));
        }
    }
    let codes: Vec<u8> = flat(w, &codes, "weight")?;
    let scb: Vec<f32> = flat(w, &scb, "SCB")?;
    Ok(Int8Tensor {
        codes: codes.into_iter().map(|b| b as i8).collect(),
        scb,
        shape: [rows, cols],
    })
}

fn flat<T: candle_core::WithDType>(
    w: &Weights,
    t: &Tensor,
    name: &str,
) -> Result<Vec<T>, WeightsError> {
    t.flatten_all()
        .and_then(|t| t.to_vec1())
        .map_err(|source| WeightsError::Load {
            name: w.key(name),
            source,
        })
}

/// A tensor to write: a candle tensor, or int8 codes (safetensors `I8`, a dtype candle lacks).
#[derive(Clone, Debug)]
pub enum Stored {
    /// Written in its own dtype.
    Tensor(Tensor),
    /// Written as `I8`.
    Int8 {
        /// Row-major codes.
        codes: Vec<i8>,
        /// Shape.
        shape: Vec<usize>,
    },
}

impl safetensors::View for &Stored {
    fn dtype(&self) -> safetensors::Dtype {
        match self {
            Stored::Tensor(t) => <Tensor as safetensors::View>::dtype(t),
            Stored::Int8 { .. } => safetensors::Dtype::I8,
        }
    }
    fn shape(&self) -> &[usize] {
        match self {
            Stored::Tensor(t) => t.dims(),
            Stored::Int8 { shape, .. } => shape,
        }
    }
    fn data(&self) -> Cow<'_, [u8]> {
        match self {
            Stored::Tensor(t) => <Tensor as safetensors::View>::data(t),
            Stored::Int8 { codes, .. } => Cow::Owned(codes.iter().map(|&c| c as u8).collect()),
        }
    }
    fn data_len(&self) -> usize {
        match self {
            Stored::Tensor(t) => <Tensor as safetensors::View>::data_len(t),
            Stored::Int8 { codes, .. } => codes.len(),
        }
    }
}

/// The tensors `save_pretrained` writes for the 8-bit layer `prefix` (e.g.
/// `model.layers.0.mlp.up_proj`): `weight` (I8), `SCB`, `weight_format`.
pub fn int8_tensors(q: &Int8Tensor, prefix: &str) -> candle_core::Result<Vec<(String, Stored)>> {
    let dev = candle_core::Device::Cpu;
    Ok(vec![
        (
            format!("{prefix}.weight"),
            Stored::Int8 {
                codes: q.codes.clone(),
                shape: q.shape.to_vec(),
            },
        ),
        (
            format!("{prefix}.SCB"),
            Stored::Tensor(Tensor::new(q.scb.as_slice(), &dev)?),
        ),
        (
            format!("{prefix}.weight_format"),
            Stored::Tensor(Tensor::new(0u8, &dev)?),
        ),
    ])
}

/// The `quantization_config` block transformers 5.24 writes into `config.json` for
/// `BitsAndBytesConfig(load_in_8bit=True)`.
pub fn quantization_config() -> serde_json::Value {
    serde_json::json!({
        "_load_in_4bit": false,
        "_load_in_8bit": true,
        "bnb_4bit_compute_dtype": "float32",
        "bnb_4bit_quant_storage": "uint8",
        "bnb_4bit_quant_type": "fp4",
        "bnb_4bit_use_double_quant": false,
        "llm_int8_enable_fp32_cpu_offload": false,
        "llm_int8_has_fp16_weight": false,
        "llm_int8_skip_modules": null,
        "llm_int8_threshold": 6.0,
        "load_in_4bit": false,
        "load_in_8bit": true,
        "quant_method": "bitsandbytes"
    })
}
