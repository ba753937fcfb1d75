//! DeepSeek-OCR configuration, read from the Hugging Face `config.json` exactly as the HF remote
//! code reads it: the decoder's keys at the top level (a copy of `language_config`), the vision
//! encoders under `vision_config.width.{sam_vit_b, clip-l-14-224}`, the projector under
//! `projector_config`. Keys the real file omits take the defaults the reference relies on
//! (`DeepseekV2Config` defaults and the constants hard-coded in `deepencoder.py`).
//!
//! Model card: <https://huggingface.co/deepseek-ai/DeepSeek-OCR>.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use super::config_encoders::{Architecture, Qwen2EncoderConfig};
use super::ModelError;

/// The DeepseekV2 decoder as DeepSeek-OCR uses it (multi-head attention, no MLA).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DecoderConfig {
    /// Vocabulary size (rows of `embed_tokens` and `lm_head`).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Intermediate size of the dense MLP layers (those before `first_k_dense_replace`).
    pub intermediate_size: usize,
    /// Intermediate size of one routed expert (absent in models without MoE).
    #[serde(default)]
    pub moe_intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Key/value heads (equal to `num_attention_heads` in DeepSeek-OCR: plain MHA).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Shared experts (their MLP has `n_shared_experts * moe_intermediate_size` channels).
    #[serde(default)]
    pub n_shared_experts: Option<usize>,
    /// Routed experts per MoE layer.
    #[serde(default)]
    pub n_routed_experts: Option<usize>,
    /// Experts each token is routed to.
    #[serde(default)]
    pub num_experts_per_tok: Option<usize>,
    /// Multiplier of the routed experts' weights.
    #[serde(default = "one")]
    pub routed_scaling_factor: f64,
    /// Routing: only `greedy` (plain top-k) is used by DeepSeek-OCR.
    #[serde(default = "greedy")]
    pub topk_method: String,
    /// Gate scoring: only `softmax`.
    #[serde(default = "softmax")]
    pub scoring_func: String,
    /// Whether the top-k weights are renormalised to sum to one.
    #[serde(default)]
    pub norm_topk_prob: bool,
    /// Layers before this index use the dense MLP.
    #[serde(default)]
    pub first_k_dense_replace: usize,
    /// Every `moe_layer_freq`-th layer (from `first_k_dense_replace`) is MoE.
    #[serde(default = "one_usize")]
    pub moe_layer_freq: usize,
    /// Weight of the MoE load-balancing loss (added to the gradient in training only).
    #[serde(default = "aux_alpha")]
    pub aux_loss_alpha: f64,
    /// Whether the balancing loss is computed per sequence.
    #[serde(default = "yes")]
    pub seq_aux: bool,
    /// Activation of the MLPs (`silu`).
    #[serde(default = "silu")]
    pub hidden_act: String,
    /// Longest sequence the RoPE tables are built for.
    #[serde(default = "max_pos")]
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    #[serde(default = "rms_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "rope_theta")]
    pub rope_theta: f64,
    /// RoPE scaling (unsupported unless absent or null).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Bias on q/k/v/o (false in DeepSeek-OCR).
    #[serde(default)]
    pub attention_bias: bool,
    /// Multi-head latent attention (false in DeepSeek-OCR; MLA is not supported here).
    #[serde(default)]
    pub use_mla: bool,
    /// Whether `lm_head` shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

/// SAM ViT-B (`vision_config.width.sam_vit_b`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SamConfig {
    /// Embedding width.
    pub width: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Blocks with global (not windowed) attention.
    pub global_attn_indexes: Vec<usize>,
    /// Output channels of `net_2` and `net_3` (the two stride-2 compressor convs).
    pub downsample_channels: Vec<usize>,
    /// Patch size of the patch embedding.
    #[serde(default = "sam_patch")]
    pub patch_size: usize,
    /// Window of the windowed-attention blocks.
    #[serde(default = "sam_window")]
    pub window_size: usize,
    /// Channels of the neck.
    #[serde(default = "sam_out")]
    pub out_chans: usize,
    /// MLP width as a multiple of `width`.
    #[serde(default = "sam_mlp_ratio")]
    pub mlp_ratio: f64,
    /// LayerNorm epsilon of the blocks and the neck.
    #[serde(default = "ln_eps_sam")]
    pub layer_norm_eps: f64,
}

/// The CLIP-L part (`vision_config.width.clip-l-14-224`); its patch conv is never used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClipConfig {
    /// Hidden width (equals the last SAM downsample channels).
    pub width: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Image size the position embedding was trained for.
    pub image_size: usize,
    /// Patch size (with `image_size`, gives the position-embedding grid).
    pub patch_size: usize,
    /// MLP width.
    #[serde(default = "clip_ffn")]
    pub ffn_hidden_size: usize,
    /// LayerNorm epsilon of the blocks.
    #[serde(default = "ln_eps_clip")]
    pub layernorm_epsilon: f64,
    /// Epsilon of `pre_layrnorm`.
    #[serde(default = "ln_eps_clip")]
    pub pre_layernorm_epsilon: f64,
}

/// The two vision encoders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisionWidths {
    /// SAM.
    pub sam_vit_b: SamConfig,
    /// CLIP (DeepSeek-OCR 1 only).
    #[serde(
        rename = "clip-l-14-224",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub clip_l: Option<ClipConfig>,
    /// The Qwen2 encoder with learned queries (DeepSeek-OCR 2 only).
    #[serde(
        rename = "qwen2-0-5b",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub qwen2: Option<Qwen2EncoderConfig>,
}

/// `vision_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VisionConfig {
    /// SAM's native input size (its absolute position grid is `image_size / patch_size`).
    pub image_size: usize,
    /// The encoders.
    pub width: VisionWidths,
}

/// `projector_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProjectorConfig {
    /// Input features (CLIP width + SAM channels).
    pub input_dim: usize,
    /// Output features (the decoder width).
    pub n_embed: usize,
    /// Only `linear`.
    #[serde(default = "linear")]
    pub projector_type: String,
}

/// The whole model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Config {
    /// The decoder (read from the top level, as the HF model does).
    #[serde(flatten)]
    pub decoder: DecoderConfig,
    /// The vision encoders.
    pub vision_config: VisionConfig,
    /// The projector.
    pub projector_config: ProjectorConfig,
    /// Token id of `<image>` (hard-coded to 128815 in the reference `infer()`).
    #[serde(default = "image_token")]
    pub image_token_id: u32,
    /// Tile layout tag (`2D`).
    #[serde(default = "tile_tag")]
    pub tile_tag: String,
}

fn one() -> f64 {
    1.0
}
fn one_usize() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn aux_alpha() -> f64 {
    0.001
}
fn greedy() -> String {
    "greedy".into()
}
fn softmax() -> String {
    "softmax".into()
}
fn silu() -> String {
    "silu".into()
}
fn linear() -> String {
    "linear".into()
}
fn tile_tag() -> String {
    "2D".into()
}
fn max_pos() -> usize {
    2048
}
fn rms_eps() -> f64 {
    1e-6
}
fn rope_theta() -> f64 {
    10000.0
}
fn sam_patch() -> usize {
    16
}
fn sam_window() -> usize {
    14
}
fn sam_out() -> usize {
    256
}
fn sam_mlp_ratio() -> f64 {
    4.0
}
fn ln_eps_sam() -> f64 {
    1e-6
}
fn ln_eps_clip() -> f64 {
    1e-5
}
fn clip_ffn() -> usize {
    4096
}
fn image_token() -> u32 {
    128815
}

impl DecoderConfig {
    /// Head dimension (`hidden_size / num_attention_heads`).
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Key/value heads (defaults to the attention heads).
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Whether layer `i` is a mixture-of-experts layer (as `DeepseekV2DecoderLayer` decides).
    pub fn is_moe_layer(&self, i: usize) -> bool {
        self.n_routed_experts.is_some()
            && i >= self.first_k_dense_replace
            && i % self.moe_layer_freq.max(1) == 0
    }

    /// Routed experts (0 without MoE).
    pub fn routed_experts(&self) -> usize {
        self.n_routed_experts.unwrap_or(0)
    }

    /// Experts per token (0 without MoE).
    pub fn experts_per_token(&self) -> usize {
        self.num_experts_per_tok.unwrap_or(0)
    }
}

impl Config {
    /// Parses a `config.json` string and validates it.
    pub fn from_json_str(json: &str) -> Result<Self, ModelError> {
        let cfg: Config = serde_json::from_str(json).map_err(|e| ModelError::Config {
            path: "<string>".into(),
            reason: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and validates `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Config {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let cfg: Config = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serialises the configuration in the layout of the real checkpoint's `config.json`:
    /// the decoder keys at the top level and again under `language_config` (which vLLM
    /// reads), and the `model_type`, `architectures` and `auto_map` entries by which
    /// transformers and other Python tools recognise DeepSeek-OCR.
    pub fn to_json_string(&self) -> String {
        let mut v = serde_json::to_value(self).expect("config serialises");
        add_hf_identity(&mut v);
        serde_json::to_string_pretty(&v).expect("config serialises")
    }

    /// Refuses values this port does not implement, naming the key.
    pub fn validate(&self) -> Result<(), ModelError> {
        let d = &self.decoder;
        let unsupported = |key: &'static str, value: String, supported: &'static str| {
            Err(ModelError::Unsupported {
                key,
                value,
                supported,
            })
        };
        if d.use_mla {
            return unsupported("use_mla", "true".into(), "false (multi-head attention)");
        }
        if d.topk_method != "greedy" {
            return unsupported("topk_method", d.topk_method.clone(), "greedy");
        }
        if d.scoring_func != "softmax" {
            return unsupported("scoring_func", d.scoring_func.clone(), "softmax");
        }
        if d.hidden_act != "silu" {
            return unsupported("hidden_act", d.hidden_act.clone(), "silu");
        }
        if d.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return unsupported(
                "rope_scaling",
                d.rope_scaling.clone().unwrap_or_default().to_string(),
                "null",
            );
        }
        if d.tie_word_embeddings {
            return unsupported("tie_word_embeddings", "true".into(), "false");
        }
        if self.projector_config.projector_type != "linear" {
            return unsupported(
                "projector_config.projector_type",
                self.projector_config.projector_type.clone(),
                "linear",
            );
        }
        if self.tile_tag != "2D" {
            return unsupported("tile_tag", self.tile_tag.clone(), "2D");
        }
        let sam = &self.vision_config.width.sam_vit_b;
        // Every size must be positive (they divide) and bounded (they size allocations: a
        // corrupted file must not ask for terabytes). The limits are far above the real model.
        let sizes: [(&'static str, usize, usize); 15] = [
            ("hidden_size", d.hidden_size, 1 << 16),
            ("intermediate_size", d.intermediate_size, 1 << 18),
            ("num_attention_heads", d.num_attention_heads, 1 << 10),
            ("num_hidden_layers", d.num_hidden_layers, 1 << 10),
            ("vocab_size", d.vocab_size, 1 << 24),
            (
                "max_position_embeddings",
                d.max_position_embeddings,
                1 << 20,
            ),
            ("moe_layer_freq", d.moe_layer_freq, 1 << 10),
            (
                "vision_config.image_size",
                self.vision_config.image_size,
                1 << 14,
            ),
            ("vision_config.width.sam_vit_b.width", sam.width, 1 << 14),
            ("vision_config.width.sam_vit_b.layers", sam.layers, 1 << 10),
            ("vision_config.width.sam_vit_b.heads", sam.heads, 1 << 10),
            (
                "vision_config.width.sam_vit_b.patch_size",
                sam.patch_size,
                1 << 10,
            ),
            (
                "vision_config.width.sam_vit_b.window_size",
                sam.window_size,
                1 << 10,
            ),
            (
                "vision_config.width.sam_vit_b.out_chans",
                sam.out_chans,
                1 << 14,
            ),
            (
                "projector_config.input_dim",
                self.projector_config.input_dim,
                1 << 16,
            ),
        ];
        for (key, v, max) in sizes {
            if v == 0 || v > max {
                return unsupported(
                    key,
                    v.to_string(),
                    "a positive size (within the port's limits)",
                );
            }
        }
        let optional = [
            ("moe_intermediate_size", d.moe_intermediate_size),
            ("num_key_value_heads", d.num_key_value_heads.unwrap_or(1)),
            ("n_shared_experts", d.n_shared_experts.unwrap_or(0)),
            ("n_routed_experts", d.n_routed_experts.unwrap_or(0)),
            ("num_experts_per_tok", d.num_experts_per_tok.unwrap_or(0)),
            ("first_k_dense_replace", d.first_k_dense_replace),
        ];
        for (key, v) in optional {
            if v > 1 << 18 {
                return unsupported(key, v.to_string(), "a size within the port's limits");
            }
        }
        if d.num_key_value_heads == Some(0) {
            return unsupported("num_key_value_heads", "0".into(), "a positive value");
        }
        if sam.mlp_ratio.is_nan() || sam.mlp_ratio <= 0.0 || sam.mlp_ratio > 64.0 {
            return unsupported(
                "vision_config.width.sam_vit_b.mlp_ratio",
                sam.mlp_ratio.to_string(),
                "a ratio in (0, 64]",
            );
        }
        for (key, eps) in [
            ("rms_norm_eps", d.rms_norm_eps),
            ("rope_theta", d.rope_theta),
            (
                "vision_config.width.sam_vit_b.layer_norm_eps",
                sam.layer_norm_eps,
            ),
        ] {
            if !(eps.is_finite() && eps > 0.0) {
                return unsupported(key, eps.to_string(), "a positive finite number");
            }
        }
        if sam.global_attn_indexes.iter().any(|&i| i >= sam.layers) {
            return unsupported(
                "vision_config.width.sam_vit_b.global_attn_indexes",
                format!("{:?}", sam.global_attn_indexes),
                "block indices below sam_vit_b.layers",
            );
        }
        if sam
            .downsample_channels
            .iter()
            .any(|&c| c == 0 || c > 1 << 14)
        {
            return unsupported(
                "vision_config.width.sam_vit_b.downsample_channels",
                format!("{:?}", sam.downsample_channels),
                "positive channel counts",
            );
        }
        if d.hidden_size % d.num_attention_heads != 0 || d.head_dim() % 2 != 0 {
            return unsupported(
                "num_attention_heads",
                d.num_attention_heads.to_string(),
                "a divisor of hidden_size giving an even head dimension",
            );
        }
        if d.num_attention_heads % d.kv_heads() != 0 {
            return unsupported(
                "num_key_value_heads",
                d.kv_heads().to_string(),
                "a divisor of num_attention_heads",
            );
        }
        if d.n_routed_experts.is_some() && d.experts_per_token() == 0
            || d.experts_per_token() > d.routed_experts()
        {
            return unsupported(
                "num_experts_per_tok",
                d.experts_per_token().to_string(),
                "between 1 and n_routed_experts",
            );
        }
        if sam.downsample_channels.len() != 2 {
            return unsupported(
                "vision_config.width.sam_vit_b.downsample_channels",
                format!("{:?}", sam.downsample_channels),
                "two channel counts (net_2, net_3)",
            );
        }
        if sam.width % sam.heads != 0 {
            return unsupported(
                "vision_config.width.sam_vit_b.heads",
                sam.heads.to_string(),
                "a divisor of sam_vit_b.width",
            );
        }
        self.vision_config
            .validate_encoder(&self.projector_config)?;
        if self.projector_config.n_embed != d.hidden_size {
            return unsupported(
                "projector_config.n_embed",
                self.projector_config.n_embed.to_string(),
                "hidden_size",
            );
        }
        if self.vision_config.image_size % sam.patch_size != 0 {
            return unsupported(
                "vision_config.image_size",
                self.vision_config.image_size.to_string(),
                "a multiple of the SAM patch size",
            );
        }
        Ok(())
    }
}

/// Adds what the real `deepseek-ai/DeepSeek-OCR/config.json` has besides the hyper-parameters,
/// where missing: `model_type` (`deepseek_vl_v2`), `architectures`
/// (`DeepseekOCRForCausalLM`, or `DeepseekOCR2ForCausalLM` for a DeepSeek-OCR 2 config, which
/// gets no `auto_map`), `auto_map` (the remote code's classes), `language_config` (the
/// decoder keys, with `DeepseekV2ForCausalLM`), and the sub-configs' `model_type`s. Values
/// already present are kept.
pub fn add_hf_identity(config: &mut serde_json::Value) {
    use serde_json::{json, Value};
    let Some(obj) = config.as_object_mut() else {
        return;
    };
    let decoder_keys: serde_json::Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "vision_config"
                    | "projector_config"
                    | "image_token_id"
                    | "tile_tag"
                    | "language_config"
                    | "quantization_config"
                    | "model_type"
                    | "architectures"
                    | "auto_map"
                    | "_name_or_path"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // DeepSeek-OCR 2 (a `qwen2-0-5b` encoder): its architecture name, and no OCR 1 `auto_map`.
    let ocr2 = obj
        .get("vision_config")
        .and_then(|v| v.pointer("/width/qwen2-0-5b"))
        .is_some();
    let mut defaults = vec![("model_type", json!("deepseek_vl_v2"))];
    if ocr2 {
        defaults.push(("architectures", json!(["DeepseekOCR2ForCausalLM"])));
    } else {
        defaults.push(("architectures", json!(["DeepseekOCRForCausalLM"])));
        defaults.push((
            "auto_map",
            json!({
                "AutoConfig": "modeling_deepseekocr.DeepseekOCRConfig",
                "AutoModel": "modeling_deepseekocr.DeepseekOCRForCausalLM"
            }),
        ));
    }
    for (k, v) in defaults {
        obj.entry(k).or_insert(v);
    }
    obj.entry("language_config").or_insert_with(|| {
        let mut lc = decoder_keys;
        lc.insert("architectures".into(), json!(["DeepseekV2ForCausalLM"]));
        lc.insert(
            "auto_map".into(),
            json!({
                "AutoConfig": "configuration_deepseekv2.DeepseekV2Config",
                "AutoModel": "modeling_deepseek.DeepseekV2Model",
                "AutoModelForCausalLM": "modeling_deepseek.DeepseekV2ForCausalLM"
            }),
        );
        Value::Object(lc)
    });
    for (sub, ty) in [
        ("projector_config", "mlp_projector"),
        ("vision_config", "vision"),
    ] {
        if let Some(o) = obj.get_mut(sub).and_then(Value::as_object_mut) {
            o.entry("model_type").or_insert(json!(ty));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_validate() {
        let c = Config::deepseek_ocr();
        assert_eq!(c.decoder.head_dim(), 128);
        assert!(!c.decoder.is_moe_layer(0));
        assert!(c.decoder.is_moe_layer(11));
        assert_eq!(
            c.vision_config
                .width
                .clip_l
                .as_ref()
                .unwrap()
                .ffn_hidden_size,
            4096
        );
        assert_eq!(c.vision_config.width.sam_vit_b.window_size, 14);
        assert_eq!(c.image_token_id, 128815);
        assert_eq!(Config::tiny().decoder.head_dim(), 24);
    }

    #[test]
    fn unsupported_values_name_the_key() {
        let mut c = Config::tiny();
        c.decoder.use_mla = true;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("use_mla"), "{err}");
        let mut c = Config::tiny();
        c.decoder.topk_method = "noaux_tc".into();
        assert!(c.validate().unwrap_err().to_string().contains("noaux_tc"));
    }

    #[test]
    fn round_trips_through_json() {
        let c = Config::deepseek_ocr();
        let back = Config::from_json_str(&c.to_json_string()).unwrap();
        assert_eq!(c, back);
    }

    /// Written folders carry what the real checkpoint's config.json has for Python tooling
    /// (checked against the shared fixture's copy of the real layout).
    #[test]
    fn written_configs_identify_the_model_like_the_real_checkpoint() {
        let real: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/deepseek-ocr-tiny/config.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let ours: serde_json::Value =
            serde_json::from_str(&Config::tiny().to_json_string()).unwrap();
        for key in ["model_type", "architectures", "auto_map"] {
            assert_eq!(ours[key], real[key], "{key}");
        }
        for key in [
            "architectures",
            "auto_map",
            "hidden_size",
            "num_hidden_layers",
        ] {
            assert_eq!(
                ours["language_config"][key], real["language_config"][key],
                "language_config.{key}"
            );
        }
        assert_eq!(ours["projector_config"]["model_type"], "mlp_projector");
        // Values already there are kept.
        let mut v = serde_json::json!({"model_type": "custom", "hidden_size": 8});
        add_hf_identity(&mut v);
        assert_eq!(v["model_type"], "custom");
        assert_eq!(v["language_config"]["hidden_size"], 8);
    }

    /// Sizes that would divide by zero or ask for absurd allocations are refused by name.
    #[test]
    fn zero_and_huge_sizes_are_refused_by_name() {
        let base: serde_json::Value =
            serde_json::from_str(&Config::tiny().to_json_string()).unwrap();
        for (path, value) in [
            ("/vision_config/width/sam_vit_b/heads", 0u64),
            ("/vision_config/width/clip-l-14-224/heads", 0),
            ("/vision_config/width/sam_vit_b/patch_size", 0),
            ("/moe_layer_freq", 0),
            ("/max_position_embeddings", 1 << 40),
            ("/vocab_size", 1 << 40),
        ] {
            let mut v = base.clone();
            *v.pointer_mut(path).unwrap() = value.into();
            let e = Config::from_json_str(&v.to_string())
                .unwrap_err()
                .to_string();
            let key = path.rsplit('/').next().unwrap();
            assert!(e.contains(key), "{path}: {e}");
        }
    }
}
