//! `GenerationConfig`: the generation settings of the original plan, with Hugging Face's names
//! and defaults, named presets and validation.

use serde::{Deserialize, Serialize};

use super::InferError;

/// `early_stopping` of beam search: `true`, `false` or `"never"` (transformers' semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EarlyStopping {
    /// `true`: stop as soon as `num_beams` finished candidates exist; `false`: stop when no
    /// running beam can beat the worst finished one at the current length.
    Bool(bool),
    /// `"never"`: stop only when no beam can beat the worst finished one at any length.
    Never(NeverTag),
}

/// The string `"never"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NeverTag {
    /// `never`.
    #[serde(rename = "never")]
    Never,
}

/// How to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct GenerationConfig {
    /// Most new tokens.
    pub max_new_tokens: usize,
    /// EOS is forbidden before this many new tokens.
    pub min_new_tokens: usize,
    /// Sample instead of taking the most likely token.
    pub do_sample: bool,
    /// Softmax temperature (sampling).
    pub temperature: f64,
    /// Keep the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens with cumulative probability >= `top_p`.
    pub top_p: f64,
    /// Beams (1 = no beam search).
    pub num_beams: usize,
    /// Beam scores are `sum log p / length^length_penalty`.
    pub length_penalty: f64,
    /// When beam search stops.
    pub early_stopping: EarlyStopping,
    /// `> 1` discourages tokens already in the sequence (CTRL's penalty).
    pub repetition_penalty: f64,
    /// Forbid repeating any n-gram of this size (0 = off; DeepSeek-OCR uses 20).
    pub no_repeat_ngram_size: usize,
    /// End-of-sequence ids.
    pub eos_token_ids: Vec<u32>,
    /// Padding id for finished rows.
    pub pad_token_id: u32,
    /// Seed of the sampler.
    pub seed: u64,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            min_new_tokens: 0,
            do_sample: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            num_beams: 1,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Bool(false),
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
            eos_token_ids: vec![1],
            pad_token_id: 1,
            seed: 0,
        }
    }
}

impl GenerationConfig {
    /// Greedy decoding with DeepSeek-OCR's `no_repeat_ngram_size` 20.
    pub fn greedy() -> Self {
        Self {
            no_repeat_ngram_size: 20,
            ..Self::default()
        }
    }

    /// Beam search with 4 beams, early stopping, length penalty 1 (the original DeepSynth
    /// evaluation setting).
    pub fn beam4() -> Self {
        Self {
            num_beams: 4,
            early_stopping: EarlyStopping::Bool(true),
            no_repeat_ngram_size: 20,
            ..Self::default()
        }
    }

    /// Nucleus sampling: temperature 0.7, top-p 0.9, top-k 50, repetition penalty 1.1.
    pub fn sampling() -> Self {
        Self {
            do_sample: true,
            temperature: 0.7,
            top_p: 0.9,
            top_k: 50,
            repetition_penalty: 1.1,
            ..Self::default()
        }
    }

    /// A preset by name: `greedy`, `beam4`, `sampling`.
    pub fn preset(name: &str) -> Result<Self, InferError> {
        match name {
            "greedy" => Ok(Self::greedy()),
            "beam4" => Ok(Self::beam4()),
            "sampling" => Ok(Self::sampling()),
            other => Err(InferError::Config(format!(
                "unknown generation preset `{other}` (greedy, beam4, sampling)"
            ))),
        }
    }

    /// Refuses contradictory or out-of-range settings with the field named.
    pub fn validate(&self) -> Result<(), InferError> {
        let bad = |m: String| Err(InferError::Config(m));
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        if self.do_sample && !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature must be > 0 when sampling (got {}); use do_sample = false for greedy",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.num_beams == 0 {
            return bad("num_beams must be at least 1".into());
        }
        if self.num_beams > 1 && self.do_sample {
            return bad(
                "beam sampling is not supported: set do_sample = false with num_beams > 1".into(),
            );
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        if !self.length_penalty.is_finite() {
            return bad("length_penalty must be finite".into());
        }
        if self.eos_token_ids.is_empty() {
            return bad("eos_token_ids must not be empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_bad_values_are_named() {
        for p in ["greedy", "beam4", "sampling"] {
            GenerationConfig::preset(p).unwrap().validate().unwrap();
        }
        let mut c = GenerationConfig::sampling();
        c.temperature = 0.0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("temperature"));
        let mut c = GenerationConfig::beam4();
        c.do_sample = true;
        assert!(c.validate().unwrap_err().to_string().contains("num_beams"));
        assert!(GenerationConfig::preset("nope").is_err());
        let c: GenerationConfig =
            serde_json::from_str(r#"{"num_beams": 3, "early_stopping": "never"}"#).unwrap();
        assert_eq!(c.early_stopping, EarlyStopping::Never(NeverTag::Never));
        assert_eq!(c.max_new_tokens, 128);
    }
}
