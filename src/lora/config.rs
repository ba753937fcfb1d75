//! `LoraConfig`: PEFT's `adapter_config.json` (peft 0.21), read and written with the same keys,
//! and PEFT's rules for which modules an adapter targets.
//!
//! Matching (`check_target_module_exists`): a string `target_modules` is a regex that must match
//! the whole module path; a list matches a module whose path equals an entry or ends with
//! `.<entry>`; `exclude_modules` removes matches by the same rules; `layers_to_transform` keeps
//! modules of those layer indices (the number after `layers.`).
//! `rank_pattern` / `alpha_pattern` keys override `r` / `lora_alpha` for paths that match
//! `(.*\.)?<key>$`.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::LoraError;

/// `target_modules` / `exclude_modules`: a list of names or one regex.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModuleSelector {
    /// Names matched by equality or as a `.`-separated suffix.
    Names(Vec<String>),
    /// A regex matched against the whole path.
    Regex(String),
}

impl ModuleSelector {
    fn matches(&self, path: &str) -> Result<bool, LoraError> {
        Ok(match self {
            ModuleSelector::Names(names) => names
                .iter()
                .any(|n| path == n || path.ends_with(&format!(".{n}"))),
            ModuleSelector::Regex(r) => full_regex(r)?.is_match(path),
        })
    }
}

fn full_regex(r: &str) -> Result<Regex, LoraError> {
    Regex::new(&format!("^(?:{r})$")).map_err(|e| LoraError::Config {
        path: None,
        reason: format!("bad regex `{r}`: {e}"),
    })
}

/// `init_lora_weights`: `true` (kaiming-uniform A, zero B), `false` (random B too, for tests),
/// or `"gaussian"` (A ~ N(0, 1/r), zero B).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitLora {
    /// `true` / `false`.
    Bool(bool),
    /// `"gaussian"`.
    Named(String),
}

/// Writes `16.0` as `16`, as PEFT (Python ints) does.
fn int_if_whole<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

fn default_true() -> InitLora {
    InitLora::Bool(true)
}
fn lora_type() -> String {
    "LORA".into()
}
fn none_bias() -> String {
    "none".into()
}

/// PEFT's LoRA configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoraConfig {
    /// Rank.
    pub r: usize,
    /// Scale numerator: the update is `alpha / r * B A` (`alpha / sqrt(r)` with rsLoRA).
    #[serde(serialize_with = "int_if_whole")]
    pub lora_alpha: f64,
    /// Dropout on the adapter input.
    #[serde(default)]
    pub lora_dropout: f32,
    /// Which modules get adapters.
    pub target_modules: ModuleSelector,
    /// Modules never adapted.
    #[serde(default)]
    pub exclude_modules: Option<ModuleSelector>,
    /// Bias training: only `none` is supported.
    #[serde(default = "none_bias")]
    pub bias: String,
    /// rsLoRA scaling.
    #[serde(default)]
    pub use_rslora: bool,
    /// DoRA (not supported).
    #[serde(default)]
    pub use_dora: bool,
    /// Initialisation.
    #[serde(default = "default_true")]
    pub init_lora_weights: InitLora,
    /// Modules trained in full and saved with the adapter (not supported for DeepSeek-OCR
    /// modules; kept for round trips).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// Per-module ranks.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module alphas.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    /// Layer indices to adapt (all when absent).
    #[serde(default)]
    pub layers_to_transform: Option<serde_json::Value>,
    /// Name of the layer list (`layers`).
    #[serde(default)]
    pub layers_pattern: Option<serde_json::Value>,
    /// Weights stored transposed (false for `nn.Linear`).
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// LoRA bias on B (not supported).
    #[serde(default)]
    pub lora_bias: bool,
    /// `CAUSAL_LM`.
    #[serde(default)]
    pub task_type: Option<String>,
    /// The base model this adapter belongs to.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// The base model's revision.
    #[serde(default)]
    pub revision: Option<String>,
    /// True in saved adapters.
    #[serde(default)]
    pub inference_mode: bool,
    /// `LORA`.
    #[serde(default = "lora_type")]
    pub peft_type: String,
    /// The PEFT version that wrote it.
    #[serde(default)]
    pub peft_version: Option<String>,
    /// Every other key, kept as is.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// DeepSeek-OCR's decoder linear layers: attention, dense MLP, routed and shared experts.
pub const DECODER_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl LoraConfig {
    /// Rank `r`, `alpha`, dropout 0.05, every decoder linear (q, k, v, o, gate, up, down,
    /// experts included), `CAUSAL_LM`.
    pub fn new(r: usize, alpha: f64) -> Self {
        Self {
            r,
            lora_alpha: alpha,
            lora_dropout: 0.05,
            target_modules: ModuleSelector::Names(
                DECODER_TARGETS.iter().map(|s| s.to_string()).collect(),
            ),
            exclude_modules: None,
            bias: "none".into(),
            use_rslora: false,
            use_dora: false,
            init_lora_weights: InitLora::Bool(true),
            modules_to_save: None,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            layers_to_transform: None,
            layers_pattern: None,
            fan_in_fan_out: false,
            lora_bias: false,
            task_type: Some("CAUSAL_LM".into()),
            base_model_name_or_path: None,
            revision: None,
            inference_mode: false,
            peft_type: "LORA".into(),
            peft_version: Some("0.21.2".into()),
            extra: serde_json::Map::new(),
        }
    }

    /// With these target module names.
    pub fn with_targets(mut self, targets: &[&str]) -> Self {
        self.target_modules =
            ModuleSelector::Names(targets.iter().map(|s| s.to_string()).collect());
        self
    }

    /// With this dropout.
    pub fn with_dropout(mut self, p: f32) -> Self {
        self.lora_dropout = p;
        self
    }

    /// Reads `adapter_config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, LoraError> {
        let path = path.as_ref();
        let err = |reason: String| LoraError::Config {
            path: Some(path.to_path_buf()),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        cfg.validate().map_err(|e| match e {
            LoraError::Config { reason, .. } => err(reason),
            other => other,
        })?;
        Ok(cfg)
    }

    /// `adapter_config.json` text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("LoRA config serialises")
    }

    /// Refuses what this implementation does not do.
    pub fn validate(&self) -> Result<(), LoraError> {
        let bad = |reason: String| Err(LoraError::Config { path: None, reason });
        if self.r == 0 {
            return bad("r must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad(format!(
                "lora_dropout {} is not in [0, 1)",
                self.lora_dropout
            ));
        }
        if self.peft_type != "LORA" {
            return bad(format!("peft_type `{}` (only LORA)", self.peft_type));
        }
        if self.use_dora {
            return bad("use_dora is not supported".into());
        }
        if self.bias != "none" {
            return bad(format!("bias `{}` (only none)", self.bias));
        }
        if self.fan_in_fan_out || self.lora_bias {
            return bad("fan_in_fan_out and lora_bias are not supported".into());
        }
        match &self.init_lora_weights {
            InitLora::Bool(_) => {}
            InitLora::Named(n) if n == "gaussian" => {}
            InitLora::Named(n) => {
                return bad(format!("init_lora_weights `{n}` (true, false or gaussian)"))
            }
        }
        if let ModuleSelector::Regex(r) = &self.target_modules {
            full_regex(r)?;
        }
        Ok(())
    }

    /// Whether the module at `path` (e.g. `model.layers.3.mlp.experts.7.up_proj`) gets an adapter.
    pub fn targets(&self, path: &str) -> Result<bool, LoraError> {
        if !self.target_modules.matches(path)? {
            return Ok(false);
        }
        if let Some(ex) = &self.exclude_modules {
            if ex.matches(path)? {
                return Ok(false);
            }
        }
        if let Some(layers) = &self.layers_to_transform {
            let wanted: Vec<u64> = match layers {
                serde_json::Value::Number(n) => n.as_u64().into_iter().collect(),
                serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_u64()).collect(),
                _ => Vec::new(),
            };
            let idx = layer_index(path);
            if !idx.is_some_and(|i| wanted.contains(&i)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn pattern_key<'a, V>(
        map: &'a BTreeMap<String, V>,
        path: &str,
    ) -> Result<Option<&'a V>, LoraError> {
        for (k, v) in map {
            if Regex::new(&format!(r"(.*\.)?{k}$"))
                .map_err(|e| LoraError::Config {
                    path: None,
                    reason: format!("bad pattern `{k}`: {e}"),
                })?
                .is_match(path)
            {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Rank and scale for the module at `path` (patterns applied).
    pub fn rank_and_scale(&self, path: &str) -> Result<(usize, f64), LoraError> {
        let r = *Self::pattern_key(&self.rank_pattern, path)?.unwrap_or(&self.r);
        let alpha = *Self::pattern_key(&self.alpha_pattern, path)?.unwrap_or(&self.lora_alpha);
        let scale = if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        };
        Ok((r, scale))
    }
}

/// The number after `layers.` in a module path.
fn layer_index(path: &str) -> Option<u64> {
    let mut parts = path.split('.');
    while let Some(p) = parts.next() {
        if p == "layers" {
            return parts.next().and_then(|n| n.parse().ok());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_matching_rules() {
        let c = LoraConfig::new(8, 16.0);
        assert!(c.targets("model.layers.3.self_attn.q_proj").unwrap());
        assert!(c
            .targets("model.layers.3.mlp.experts.63.down_proj")
            .unwrap());
        assert!(c.targets("q_proj").unwrap());
        assert!(!c.targets("model.layers.3.self_attn.xq_proj").unwrap());
        assert!(!c
            .targets("model.vision_model.transformer.layers.0.self_attn.out_proj")
            .unwrap());
        let mut c = c;
        c.target_modules = ModuleSelector::Regex(r".*layers\.(0|1)\..*_proj".into());
        assert!(c.targets("model.layers.1.mlp.up_proj").unwrap());
        assert!(!c.targets("model.layers.2.mlp.up_proj").unwrap());
        let mut c = LoraConfig::new(8, 16.0);
        c.exclude_modules = Some(ModuleSelector::Names(vec!["shared_experts.up_proj".into()]));
        assert!(!c
            .targets("model.layers.1.mlp.shared_experts.up_proj")
            .unwrap());
        c.layers_to_transform = Some(serde_json::json!([0, 2]));
        assert!(c.targets("model.layers.2.self_attn.v_proj").unwrap());
        assert!(!c.targets("model.layers.1.self_attn.v_proj").unwrap());
    }

    #[test]
    fn scales_and_patterns() {
        let mut c = LoraConfig::new(16, 32.0);
        assert_eq!(
            c.rank_and_scale("model.layers.0.self_attn.q_proj").unwrap(),
            (16, 2.0)
        );
        c.rank_pattern.insert("q_proj".into(), 4);
        assert_eq!(
            c.rank_and_scale("model.layers.0.self_attn.q_proj").unwrap(),
            (4, 8.0)
        );
        c.use_rslora = true;
        assert_eq!(
            c.rank_and_scale("model.layers.0.self_attn.k_proj").unwrap(),
            (16, 8.0)
        );
    }

    #[test]
    fn bad_configs_are_refused_with_reasons() {
        let mut c = LoraConfig::new(8, 16.0);
        c.use_dora = true;
        assert!(c.validate().unwrap_err().to_string().contains("use_dora"));
        let mut c = LoraConfig::new(0, 16.0);
        assert!(c.validate().is_err());
        c.r = 4;
        c.lora_dropout = 1.5;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("lora_dropout"));
    }
}
