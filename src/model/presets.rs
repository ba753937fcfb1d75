//! Named configurations: the real DeepSeek-OCR and DeepSeek-OCR 2 checkpoints' and the
//! shared test fixture's.

use super::config::Config;

impl Config {
    /// The real `deepseek-ai/DeepSeek-OCR` configuration (3.34B parameters).
    pub fn deepseek_ocr() -> Self {
        Self::from_json_str(DEEPSEEK_OCR_JSON).expect("bundled DeepSeek-OCR config parses")
    }

    /// The real `deepseek-ai/DeepSeek-OCR-2` configuration (3.39B parameters).
    pub fn deepseek_ocr2() -> Self {
        Self::from_json_str(DEEPSEEK_OCR2_JSON).expect("bundled DeepSeek-OCR 2 config parses")
    }

    /// A tiny configuration with the architecture of the shared test fixture
    /// (`tests/fixtures/deepseek-ocr-tiny`): SAM 64 wide, 4 blocks; CLIP 128 wide, 1 layer;
    /// decoder 96 wide, 3 layers (1 dense, 2 MoE with 8 experts, top-2); vocabulary 512.
    pub fn tiny() -> Self {
        Self::from_json_str(TINY_JSON).expect("bundled tiny config parses")
    }
}

/// `deepseek-ai/DeepSeek-OCR/config.json` (the keys the model reads).
const DEEPSEEK_OCR_JSON: &str = r#"{
  "vocab_size": 129280, "hidden_size": 1280, "intermediate_size": 6848,
  "moe_intermediate_size": 896, "num_hidden_layers": 12, "num_attention_heads": 10,
  "num_key_value_heads": 10, "n_shared_experts": 2, "n_routed_experts": 64,
  "num_experts_per_tok": 6, "first_k_dense_replace": 1, "topk_method": "greedy",
  "max_position_embeddings": 8192, "bos_token_id": 0, "eos_token_id": 1, "use_mla": false,
  "vision_config": {"image_size": 1024, "width": {
    "clip-l-14-224": {"heads": 16, "image_size": 224, "layers": 24, "patch_size": 14, "width": 1024},
    "sam_vit_b": {"downsample_channels": [512, 1024], "global_attn_indexes": [2, 5, 8, 11],
                  "heads": 12, "layers": 12, "width": 768}}},
  "projector_config": {"input_dim": 2048, "n_embed": 1280, "projector_type": "linear"},
  "tile_tag": "2D"
}"#;

/// The shared fixture's architecture (`tests/fixtures/deepseek-ocr-tiny/config.json`).
const TINY_JSON: &str = r#"{
  "vocab_size": 512, "hidden_size": 96, "intermediate_size": 192, "moe_intermediate_size": 32,
  "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4,
  "n_shared_experts": 1, "n_routed_experts": 8, "num_experts_per_tok": 2,
  "first_k_dense_replace": 1, "topk_method": "greedy", "max_position_embeddings": 8192,
  "bos_token_id": 0, "eos_token_id": 1, "use_mla": false,
  "vision_config": {"image_size": 256, "width": {
    "clip-l-14-224": {"heads": 4, "image_size": 16, "layers": 1, "patch_size": 4, "width": 128,
                      "ffn_hidden_size": 256},
    "sam_vit_b": {"downsample_channels": [64, 128], "global_attn_indexes": [1, 3], "heads": 4,
                  "layers": 4, "width": 64, "window_size": 4, "out_chans": 32}}},
  "projector_config": {"input_dim": 256, "n_embed": 96, "projector_type": "linear"},
  "image_token_id": 500, "tile_tag": "2D"
}"#;

/// `deepseek-ai/DeepSeek-OCR-2/config.json` (the keys the model reads; its SAM
/// `downsample_channels` say 1024 while `net_3` has 896 channels, the encoder's width, which
/// is what the port uses).
const DEEPSEEK_OCR2_JSON: &str = r#"{
  "vocab_size": 129280, "hidden_size": 1280, "intermediate_size": 6848,
  "moe_intermediate_size": 896, "num_hidden_layers": 12, "num_attention_heads": 10,
  "num_key_value_heads": 10, "n_shared_experts": 2, "n_routed_experts": 64,
  "num_experts_per_tok": 6, "first_k_dense_replace": 1, "topk_method": "greedy",
  "max_position_embeddings": 8192, "bos_token_id": 0, "eos_token_id": 1, "use_mla": false,
  "architectures": ["DeepseekOCR2ForCausalLM"],
  "vision_config": {"image_size": 1024, "mlp_ratio": 3.7362, "model_name": "deepencoderv2",
    "width": {"qwen2-0-5b": {"dim": 896},
    "sam_vit_b": {"downsample_channels": [512, 1024], "global_attn_indexes": [2, 5, 8, 11],
                  "heads": 12, "layers": 12, "width": 768}}},
  "projector_config": {"input_dim": 896, "n_embed": 1280, "projector_type": "linear"},
  "tile_tag": "2D"
}"#;
