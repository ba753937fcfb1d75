//! Attaching, saving, loading and merging LoRA adapters on any model that lists its linear
//! layers by HF module path ([`LoraModel`]).
//!
//! Files are PEFT's: `adapter_config.json` and `adapter_model.safetensors` with keys
//! `base_model.model.<module path>.lora_A.weight` `[r, in]` and `...lora_B.weight` `[out, r]`
//! (f32, metadata `{"format": "pt"}`). Saving writes a temporary folder, reloads it to verify,
//! then renames it into place.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};

use super::config::{InitLora, LoraConfig, ModuleSelector};
use super::linear::{LoraAdapter, LoraLinear};
use super::LoraError;
use crate::rng::Rng;

/// PEFT's key prefix for a causal-LM model.
pub const PEFT_PREFIX: &str = "base_model.model.";
/// The adapter weights file.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The adapter config file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// A model whose adaptable linear layers can be listed with their HF module paths.
pub trait LoraModel {
    /// Every adaptable layer, in a stable order.
    fn lora_layers(&self) -> Vec<(String, &LoraLinear)>;
    /// Every adaptable layer, mutably, in the same order.
    fn lora_layers_mut(&mut self) -> Vec<(String, &mut LoraLinear)>;

    /// Names of the model's modules that never get adapters here but whose linears PEFT's
    /// name matching could still pick (DeepSeek-OCR 2's Qwen2 encoder has `q_proj` ... like
    /// the decoder). Written adapter configs exclude them, so PEFT adapts exactly our layers.
    fn frozen_modules(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Called by [`load_adapter`] with the module paths of the adapter's tensors before it
    /// matches them to layers: a model with optional adaptable groups (DeepSeek-OCR 2's
    /// encoder layers) enables the ones the adapter needs.
    fn enable_layers_for(&mut self, _paths: &[String]) -> Result<(), LoraError> {
        Ok(())
    }
}

/// What [`apply_lora`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoraSummary {
    /// Layers that got an adapter.
    pub adapted_layers: usize,
    /// Trainable parameters (`sum r * (in + out)`).
    pub trainable_params: usize,
    /// Parameters of the adaptable layers' frozen weights.
    pub frozen_linear_params: usize,
}

fn kaiming_uniform(rng: &mut Rng, rows: usize, cols: usize) -> Vec<f32> {
    // kaiming_uniform_(a = sqrt(5)) on [rows, cols]: bound = sqrt(6 / ((1 + a^2) fan_in))
    // = 1 / sqrt(fan_in).
    let bound = 1.0 / (cols as f64).sqrt();
    (0..rows * cols)
        .map(|_| rng.uniform(-bound, bound) as f32)
        .collect()
}

/// Attaches fresh adapters to every layer `cfg` targets (replacing existing ones).
pub fn apply_lora(
    model: &mut dyn LoraModel,
    cfg: &LoraConfig,
    rng: &mut Rng,
) -> Result<LoraSummary, LoraError> {
    cfg.validate()?;
    let mut summary = LoraSummary {
        adapted_layers: 0,
        trainable_params: 0,
        frozen_linear_params: 0,
    };
    for (path, layer) in model.lora_layers_mut() {
        summary.frozen_linear_params += layer.base.in_features() * layer.base.out_features();
        if !cfg.targets(&path)? {
            continue;
        }
        let (r, scale) = cfg.rank_and_scale(&path)?;
        let (i, o) = (layer.base.in_features(), layer.base.out_features());
        let a = match &cfg.init_lora_weights {
            InitLora::Named(_) => (0..r * i)
                .map(|_| (rng.normal() / r as f64) as f32)
                .collect(),
            InitLora::Bool(_) => kaiming_uniform(rng, r, i),
        };
        let b = match cfg.init_lora_weights {
            InitLora::Bool(false) => kaiming_uniform(rng, o, r),
            _ => vec![0f32; o * r],
        };
        // The adapter lives where its layer computes.
        let dev = layer.base.device().clone();
        layer.adapter = Some(LoraAdapter {
            a: Var::from_vec(a, (r, i), &dev)?,
            b: Var::from_vec(b, (o, r), &dev)?,
            scale,
            dropout: cfg.lora_dropout,
        });
        layer.merged = false;
        summary.adapted_layers += 1;
        summary.trainable_params += r * (i + o);
    }
    if summary.adapted_layers == 0 {
        return Err(LoraError::NoTargets(format!("{:?}", cfg.target_modules)));
    }
    Ok(summary)
}

/// The trainable variables with their PEFT names (`...lora_A.weight`, `...lora_B.weight`).
pub fn trainable_vars(model: &dyn LoraModel) -> Vec<(String, Var)> {
    let mut out = Vec::new();
    for (path, layer) in model.lora_layers() {
        if let Some(ad) = &layer.adapter {
            out.push((format!("{PEFT_PREFIX}{path}.lora_A.weight"), ad.a.clone()));
            out.push((format!("{PEFT_PREFIX}{path}.lora_B.weight"), ad.b.clone()));
        }
    }
    out
}

/// The adapter tensors under their PEFT names.
pub fn adapter_tensors(model: &dyn LoraModel) -> Result<Vec<(String, Tensor)>, LoraError> {
    trainable_vars(model)
        .into_iter()
        .map(|(k, v)| Ok((k, v.as_tensor().to_dtype(DType::F32)?.contiguous()?)))
        .collect()
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into the existing folder `dir`
/// (no atomicity: [`save_adapter`] and training checkpoints wrap this in a temporary folder).
pub fn write_adapter_files(
    model: &dyn LoraModel,
    cfg: &LoraConfig,
    dir: &Path,
) -> Result<(), LoraError> {
    let tensors = adapter_tensors(model)?;
    if tensors.is_empty() {
        return Err(LoraError::NoTargets("no adapter is attached".into()));
    }
    let mut cfg = cfg.clone();
    cfg.inference_mode = true;
    cfg.exclude_modules = with_frozen(cfg.exclude_modules.take(), &model.frozen_modules());
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(tensors.iter().map(|(k, t)| (k.clone(), t)), Some(meta))
        .map_err(|e| LoraError::Io(format!("serialise adapter: {e}")))?;
    std::fs::write(dir.join(ADAPTER_WEIGHTS), &bytes)
        .and_then(|()| std::fs::write(dir.join(ADAPTER_CONFIG), cfg.to_json().as_bytes()))
        .map_err(|e| LoraError::Io(format!("{}: {e}", dir.display())))
}

/// `exclude` widened to PEFT paths under any of `frozen` (at any depth). PEFT matches a regex
/// `exclude_modules` against the whole path and a list by suffix; the union is one regex.
fn with_frozen(exclude: Option<ModuleSelector>, frozen: &[&str]) -> Option<ModuleSelector> {
    if frozen.is_empty() {
        return exclude;
    }
    let names: Vec<String> = frozen.iter().map(|n| regex::escape(n)).collect();
    let frozen = format!(r"(?:.*\.)?(?:{})\..*", names.join("|"));
    Some(ModuleSelector::Regex(match exclude {
        None => frozen,
        Some(ModuleSelector::Regex(r)) => format!("(?:{r})|{frozen}"),
        Some(ModuleSelector::Names(list)) if list.is_empty() => frozen,
        Some(ModuleSelector::Names(list)) => {
            let list: Vec<String> = list.iter().map(|n| regex::escape(n)).collect();
            format!(r"(?:.*\.)?(?:{})|{frozen}", list.join("|"))
        }
    }))
}

/// Checks that `dir` holds a readable adapter: the config parses and the weights load.
pub fn verify_adapter_files(dir: &Path) -> Result<usize, LoraError> {
    LoraConfig::from_file(dir.join(ADAPTER_CONFIG))?;
    let file = dir.join(ADAPTER_WEIGHTS);
    let t = candle_core::safetensors::load(&file, &Device::Cpu).map_err(|e| LoraError::Tensor {
        name: file.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(t.len())
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` atomically: a
/// temporary folder is written, reloaded to verify, then renamed into place.
pub fn save_adapter(model: &dyn LoraModel, cfg: &LoraConfig, dir: &Path) -> Result<(), LoraError> {
    let expected = trainable_vars(model).len();
    crate::fsutil::atomic_dir(
        dir,
        |tmp| {
            write_adapter_files(model, cfg, tmp).map_err(|e| std::io::Error::other(e.to_string()))
        },
        |tmp| match verify_adapter_files(tmp) {
            Ok(n) if n == expected => Ok(()),
            Ok(n) => Err(std::io::Error::other(format!(
                "reloaded adapter has {n} tensors, expected {expected}"
            ))),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        },
    )
    .map_err(|e| LoraError::Io(e.to_string()))
}

/// Loads a PEFT adapter folder onto `model` (replacing existing adapters); every tensor must be
/// present with the right shape, and no tensor may be left unused.
pub fn load_adapter(model: &mut dyn LoraModel, dir: &Path) -> Result<LoraConfig, LoraError> {
    let cfg = LoraConfig::from_file(dir.join(ADAPTER_CONFIG))?;
    let file = dir.join(ADAPTER_WEIGHTS);
    let mut tensors =
        candle_core::safetensors::load(&file, &Device::Cpu).map_err(|e| LoraError::Tensor {
            name: file.display().to_string(),
            reason: e.to_string(),
        })?;
    let paths: Vec<String> = tensors
        .keys()
        .filter_map(|k| k.strip_prefix(PEFT_PREFIX))
        .filter_map(|k| k.strip_suffix(".lora_A.weight"))
        .map(str::to_string)
        .collect();
    model.enable_layers_for(&paths)?;
    for (path, layer) in model.lora_layers_mut() {
        if !cfg.targets(&path)? {
            layer.adapter = None;
            continue;
        }
        let (r, scale) = cfg.rank_and_scale(&path)?;
        let device = layer.base.device().clone();
        let mut take = |suffix: &str, shape: (usize, usize)| -> Result<Var, LoraError> {
            let name = format!("{PEFT_PREFIX}{path}.{suffix}");
            let t = tensors.remove(&name).ok_or_else(|| LoraError::Tensor {
                name: name.clone(),
                reason: format!("missing from {}", file.display()),
            })?;
            if t.dims() != [shape.0, shape.1] {
                return Err(LoraError::Tensor {
                    name,
                    reason: format!("shape {:?}, expected [{}, {}]", t.dims(), shape.0, shape.1),
                });
            }
            Ok(Var::from_tensor(
                &t.to_dtype(DType::F32)?.to_device(&device)?,
            )?)
        };
        let a = take("lora_A.weight", (r, layer.base.in_features()))?;
        let b = take("lora_B.weight", (layer.base.out_features(), r))?;
        layer.adapter = Some(LoraAdapter {
            a,
            b,
            scale,
            dropout: cfg.lora_dropout,
        });
        layer.merged = false;
    }
    if let Some(extra) = tensors.keys().next() {
        return Err(LoraError::Tensor {
            name: extra.clone(),
            reason: "in the adapter file but no module of the model matches it".into(),
        });
    }
    Ok(cfg)
}

/// Merges every attached adapter into its base weight (`W += s B A`; NF4 weights are
/// dequantised, updated and requantised with the same settings).
pub fn merge(model: &mut dyn LoraModel) -> Result<usize, LoraError> {
    let mut n = 0;
    for (_, layer) in model.lora_layers_mut() {
        if layer.merged {
            continue;
        }
        if let Some(ad) = &layer.adapter {
            layer.base = layer.base.add_delta(&ad.delta()?)?;
            layer.merged = true;
            n += 1;
        }
    }
    Ok(n)
}

/// Undoes [`merge`] (`W -= s B A`; for NF4 within requantisation rounding).
pub fn unmerge(model: &mut dyn LoraModel) -> Result<usize, LoraError> {
    let mut n = 0;
    for (_, layer) in model.lora_layers_mut() {
        if !layer.merged {
            continue;
        }
        if let Some(ad) = &layer.adapter {
            layer.base = layer.base.add_delta(&ad.delta()?.neg()?)?;
            layer.merged = false;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROZEN: [&str; 2] = ["qwen2_model", "vision_tower"];

    fn targets(exclude: Option<ModuleSelector>, path: &str) -> bool {
        let mut cfg = LoraConfig::new(4, 8.0);
        cfg.exclude_modules = with_frozen(exclude, &FROZEN);
        cfg.targets(path).unwrap()
    }

    #[test]
    fn written_configs_exclude_the_frozen_encoder_under_both_namings() {
        for path in [
            "model.qwen2_model.model.model.layers.0.self_attn.q_proj",
            "model.vision_tower.vision_encoder.layers.1.mlp.up_proj",
        ] {
            assert!(!targets(None, path), "{path}");
        }
        assert!(targets(None, "model.layers.0.self_attn.q_proj"));
        assert!(targets(
            None,
            "model.language_model.layers.1.mlp.shared_experts.up_proj"
        ));
        // A user's list stays a suffix match inside the union.
        let names = Some(ModuleSelector::Names(vec!["shared_experts.up_proj".into()]));
        assert!(!targets(
            names.clone(),
            "model.layers.1.mlp.shared_experts.up_proj"
        ));
        assert!(!targets(
            names.clone(),
            "model.qwen2_model.model.model.layers.0.mlp.up_proj"
        ));
        assert!(targets(names, "model.layers.1.mlp.experts.0.up_proj"));
        // A user's regex too.
        let re = Some(ModuleSelector::Regex(r".*\.experts\.\d+\..*".into()));
        assert!(!targets(re.clone(), "model.layers.1.mlp.experts.0.up_proj"));
        assert!(targets(re, "model.layers.1.mlp.gate_proj"));
        // Nothing frozen: the user's choice is written as it is.
        assert_eq!(with_frozen(None, &[]), None);
    }
}
