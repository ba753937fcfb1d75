//! The Hugging Face layout of bitsandbytes 4-bit weights (what `save_pretrained` writes for a
//! `Linear4bit`): for a layer `W`, `W.weight` (packed u8 `[(n + 1) / 2, 1]`), `W.weight.absmax`
//! (f32, or u8 when double-quantised), `W.weight.quant_map` (f32 `[16]`),
//! `W.weight.nested_absmax`, `W.weight.nested_quant_map` (f32 `[256]`) and
//! `W.weight.quant_state.bitsandbytes__nf4` (the JSON quant state as u8 bytes), plus the
//! `quantization_config` block of `config.json`.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::hf8::{self, Stored};
use super::int8::Int8Tensor;
use super::nf4::{Absmax, Nf4Tensor, QuantDtype, NF4_CODE};
use crate::weights::{QuantKind, Weights, WeightsError};

const STATE_KEY: &str = "weight.quant_state.bitsandbytes__nf4";

/// The JSON quant state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantState {
    /// `nf4` (fp4 is not supported).
    pub quant_type: String,
    /// Elements per block.
    pub blocksize: usize,
    /// Dtype of the original weight.
    pub dtype: QuantDtype,
    /// Shape of the original weight.
    pub shape: Vec<usize>,
    /// Blocks per nested scale (double quantisation).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nested_blocksize: Option<usize>,
    /// Dtype of the nested scales (`float32`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nested_dtype: Option<String>,
    /// The mean subtracted before double quantisation.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nested_offset: Option<f64>,
}

impl QuantState {
    /// The number of weight elements, after checking the sizes: a power-of-two `blocksize`
    /// in 16..=4096 (bitsandbytes uses 32..=4096), a positive `nested_blocksize`, a shape
    /// whose element count fits in memory addressing.
    pub fn checked_elements(&self) -> Result<usize, String> {
        if !(16..=4096).contains(&self.blocksize) || !self.blocksize.is_power_of_two() {
            return Err(format!(
                "blocksize {} is not a power of two in 16..=4096",
                self.blocksize
            ));
        }
        if self.nested_blocksize == Some(0) {
            return Err("nested_blocksize is 0".into());
        }
        self.shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|&n| n > 0 && n <= 1 << 40)
            .ok_or_else(|| format!("shape {:?} has no or too many elements", self.shape))
    }
}

/// Whether the layer under `w` is stored pre-quantised.
pub fn is_prequantized(w: &Weights) -> bool {
    w.contains(STATE_KEY)
}

fn bad(w: &Weights, reason: String) -> WeightsError {
    WeightsError::File {
        path: w.key("weight").into(),
        reason,
    }
}

fn raw<T: candle_core::WithDType>(w: &Weights, name: &str) -> Result<Vec<T>, WeightsError> {
    w.get_raw(name)?
        .flatten_all()
        .and_then(|t| t.to_vec1::<T>())
        .map_err(|source| WeightsError::Load {
            name: w.key(name),
            source,
        })
}

/// Reads the NF4 weight of the layer under `w`.
pub fn load_nf4(w: &Weights) -> Result<Nf4Tensor, WeightsError> {
    let state_bytes: Vec<u8> = raw(w, STATE_KEY)?;
    let state: QuantState = serde_json::from_slice(&state_bytes)
        .map_err(|e| bad(w, format!("quant state is not valid JSON: {e}")))?;
    if state.quant_type != "nf4" {
        return Err(bad(
            w,
            format!("quant_type `{}` (only nf4 is supported)", state.quant_type),
        ));
    }
    let n = state
        .checked_elements()
        .map_err(|e| bad(w, format!("quant state: {e}")))?;
    let codes: Vec<u8> = raw(w, "weight")?;
    if codes.len() != n.div_ceil(2) {
        return Err(bad(
            w,
            format!("{} code bytes for {n} elements", codes.len()),
        ));
    }
    let quant_map: Vec<f32> = raw(w, "weight.quant_map")?;
    if quant_map.len() != 16
        || quant_map
            .iter()
            .zip(NF4_CODE)
            .any(|(a, b)| a.to_bits() != b.to_bits())
    {
        return Err(bad(w, "quant_map is not the NF4 table".into()));
    }
    let blocks = n.div_ceil(state.blocksize);
    let absmax = match state.nested_offset {
        None => {
            let a: Vec<f32> = raw(w, "weight.absmax")?;
            if a.len() != blocks {
                return Err(bad(w, format!("{} scales for {blocks} blocks", a.len())));
            }
            Absmax::Single(a)
        }
        Some(offset) => {
            let codes2: Vec<u8> = raw(w, "weight.absmax")?;
            let nested: Vec<f32> = raw(w, "weight.nested_absmax")?;
            let map: Vec<f32> = raw(w, "weight.nested_quant_map")?;
            let nb = state.nested_blocksize.unwrap_or(256);
            if codes2.len() != blocks || nested.len() != blocks.div_ceil(nb) || map.len() != 256 {
                return Err(bad(
                    w,
                    format!(
                        "double-quant scales do not fit: {} codes, {} nested, map {} for {blocks} blocks",
                        codes2.len(),
                        nested.len(),
                        map.len()
                    ),
                ));
            }
            Absmax::Double {
                codes: codes2,
                nested_absmax: nested,
                nested_map: map,
                offset: offset as f32,
                nested_blocksize: nb,
            }
        }
    };
    Ok(Nf4Tensor {
        codes,
        absmax,
        blocksize: state.blocksize,
        shape: state.shape,
        dtype: state.dtype,
    })
}

/// The quant state of `q`.
pub fn quant_state(q: &Nf4Tensor) -> QuantState {
    let (nested_blocksize, nested_dtype, nested_offset) = match &q.absmax {
        Absmax::Single(_) => (None, None, None),
        Absmax::Double {
            offset,
            nested_blocksize,
            ..
        } => (
            Some(*nested_blocksize),
            Some("float32".to_string()),
            Some(*offset as f64),
        ),
    };
    QuantState {
        quant_type: "nf4".into(),
        blocksize: q.blocksize,
        dtype: q.dtype,
        shape: q.shape.clone(),
        nested_blocksize,
        nested_dtype,
        nested_offset,
    }
}

/// The quant state as Python's `json.dumps` writes it (`", "` and `": "` separators, keys in
/// bitsandbytes' order, floats as `repr`), so the saved quant-state bytes equal transformers'.
pub fn python_json(s: &QuantState) -> String {
    let dtype = serde_json::to_string(&s.dtype).expect("dtype serialises");
    let shape: Vec<String> = s.shape.iter().map(|d| d.to_string()).collect();
    let mut out = format!(
        "{{\"quant_type\": {}, \"blocksize\": {}, \"dtype\": {dtype}, \"shape\": [{}]",
        serde_json::to_string(&s.quant_type).expect("string serialises"),
        s.blocksize,
        shape.join(", ")
    );
    if let (Some(nb), Some(nd), Some(off)) = (s.nested_blocksize, &s.nested_dtype, s.nested_offset)
    {
        out += &format!(
            ", \"nested_blocksize\": {nb}, \"nested_dtype\": {}, \"nested_offset\": {}",
            serde_json::to_string(nd).expect("string serialises"),
            python_float_repr(off)
        );
    }
    out.push('}');
    out
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 or from 1e16.
fn python_float_repr(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let a = v.abs();
    if (1e-4..1e16).contains(&a) {
        let s = format!("{v}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        // Rust's `{:e}` gives `1.5e-5`; Python writes `1.5e-05`.
        let s = format!("{v:e}");
        let (m, e) = s.split_once('e').expect("exponent form");
        let (sign, digits) = match e.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("+", e),
        };
        format!("{m}e{sign}{digits:0>2}")
    }
}

/// The tensors `save_pretrained` writes for the layer `prefix` (e.g. `model.layers.0.mlp.up_proj`).
pub fn nf4_tensors(q: &Nf4Tensor, prefix: &str) -> candle_core::Result<Vec<(String, Tensor)>> {
    let dev = Device::Cpu;
    let key = |s: &str| format!("{prefix}.{s}");
    let mut out = vec![
        (
            key("weight"),
            Tensor::from_vec(q.codes.clone(), (q.codes.len(), 1), &dev)?,
        ),
        (key("weight.quant_map"), Tensor::new(&NF4_CODE, &dev)?),
    ];
    match &q.absmax {
        Absmax::Single(a) => out.push((key("weight.absmax"), Tensor::new(a.as_slice(), &dev)?)),
        Absmax::Double {
            codes,
            nested_absmax,
            nested_map,
            ..
        } => {
            out.push((key("weight.absmax"), Tensor::new(codes.as_slice(), &dev)?));
            out.push((
                key("weight.nested_absmax"),
                Tensor::new(nested_absmax.as_slice(), &dev)?,
            ));
            out.push((
                key("weight.nested_quant_map"),
                Tensor::new(nested_map.as_slice(), &dev)?,
            ));
        }
    }
    let state = python_json(&quant_state(q)).into_bytes();
    out.push((
        key(STATE_KEY),
        Tensor::from_vec(state.clone(), state.len(), &dev)?,
    ));
    Ok(out)
}

/// The `quantization_config` block transformers writes into `config.json`.
pub fn quantization_config(double_quant: bool, compute_dtype: DType) -> serde_json::Value {
    let compute = match compute_dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    };
    serde_json::json!({
        "_load_in_4bit": true,
        "_load_in_8bit": false,
        "bnb_4bit_compute_dtype": compute,
        "bnb_4bit_quant_storage": "uint8",
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": double_quant,
        "llm_int8_enable_fp32_cpu_offload": false,
        "llm_int8_has_fp16_weight": false,
        "llm_int8_skip_modules": null,
        "llm_int8_threshold": 6.0,
        "load_in_4bit": true,
        "load_in_8bit": false,
        "quant_method": "bitsandbytes"
    })
}

/// Writes an HF bitsandbytes 4-bit (or, for [`QuantKind::Int8`], 8-bit) copy of the dense
/// checkpoint in `src` into `dst`, tensor by tensor: every weight `spec` selects becomes the
/// `Linear4bit` tensors of [`nf4_tensors`] (quantised from its stored dtype, which becomes the
/// quant state's dtype) or the `Linear8bitLt` tensors of [`hf8::int8_tensors`]; MoE routers
/// (`*.mlp.gate.weight`, not `nn.Linear` modules in transformers) and everything else are
/// copied as stored; `config.json` gets transformers'
/// `quantization_config`. Output files are written atomically. Returns the number of quantised
/// layers. Double-quantisation offsets are summed as torch does on `torch_threads` threads
/// (see [`Nf4Tensor::quantize_with_threads`]).
pub fn quantize_checkpoint(
    src: &std::path::Path,
    dst: &std::path::Path,
    spec: &crate::weights::QuantizeSpec,
    torch_threads: usize,
) -> Result<usize, WeightsError> {
    use crate::fsutil::IoError;
    let w = Weights::from_dir(src, DType::F32, &Device::Cpu)?;
    let cfg_path = src.join("config.json");
    let text =
        std::fs::read_to_string(&cfg_path).map_err(|e| IoError::new("read", &cfg_path, e))?;
    let mut cfg: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| WeightsError::File {
            path: cfg_path.clone(),
            reason: e.to_string(),
        })?;
    let mut out: Vec<(String, Stored)> = Vec::new();
    let mut layers = 0;
    let mut compute = DType::F32;
    for key in w.keys() {
        let t = w.get_raw(&key)?;
        let is_linear = key.ends_with(".weight") && t.rank() == 2;
        let int8 = spec.kind == QuantKind::Int8;
        // transformers' bitsandbytes integration replaces `nn.Linear` modules only: a
        // DeepseekV2 MoE router (`mlp.gate`, a bare parameter) stays dense in 4-bit and
        // 8-bit, as the model reads it.
        let router = key.ends_with(".mlp.gate.weight");
        if is_linear && spec.selects(&key) && int8 && !router {
            let data = t
                .to_dtype(DType::F32)
                .and_then(|x| x.flatten_all()?.to_vec1::<f32>())
                .map_err(|source| WeightsError::Load {
                    name: key.clone(),
                    source,
                })?;
            let q = Int8Tensor::quantize(&data, [t.dims()[0], t.dims()[1]]);
            let prefix = key.trim_end_matches(".weight");
            out.extend(
                hf8::int8_tensors(&q, prefix).map_err(|source| WeightsError::Load {
                    name: key.clone(),
                    source,
                })?,
            );
            layers += 1;
        } else if is_linear && spec.selects(&key) && !int8 && !router {
            let dtype = match t.dtype() {
                DType::BF16 => QuantDtype::Bf16,
                DType::F16 => QuantDtype::F16,
                _ => QuantDtype::F32,
            };
            compute = t.dtype();
            let data = t
                .to_dtype(DType::F32)
                .and_then(|x| x.flatten_all()?.to_vec1::<f32>())
                .map_err(|source| WeightsError::Load {
                    name: key.clone(),
                    source,
                })?;
            let q = Nf4Tensor::quantize_with_threads(
                &data,
                t.dims(),
                spec.blocksize,
                spec.double_quant,
                dtype,
                torch_threads,
            );
            let prefix = key.trim_end_matches(".weight");
            let tensors = nf4_tensors(&q, prefix).map_err(|source| WeightsError::Load {
                name: key.clone(),
                source,
            })?;
            out.extend(tensors.into_iter().map(|(k, t)| (k, Stored::Tensor(t))));
            layers += 1;
        } else {
            out.push((key, Stored::Tensor(t)));
        }
    }
    cfg["quantization_config"] = match spec.kind {
        QuantKind::Nf4 => quantization_config(spec.double_quant, compute),
        QuantKind::Int8 => hf8::quantization_config(),
    };
    crate::fsutil::create_dir_all(dst)?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(out.iter().map(|(k, t)| (k.clone(), t)), Some(meta))
        .map_err(|e| WeightsError::File {
            path: dst.join("model.safetensors"),
            reason: e.to_string(),
        })?;
    crate::fsutil::atomic_write(&dst.join("model.safetensors"), &bytes)?;
    let cfg_text = serde_json::to_string_pretty(&cfg).expect("config serialises");
    crate::fsutil::atomic_write(&dst.join("config.json"), cfg_text.as_bytes())?;
    Ok(layers)
}
