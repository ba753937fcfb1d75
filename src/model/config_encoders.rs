//! The second vision encoder of the two DeepSeek-OCR generations, and which generation a
//! `config.json` describes.
//!
//! Both real checkpoints say `model_type: deepseek_vl_v2`, so the architecture is read from
//! `vision_config.width`: `clip-l-14-224` is DeepSeek-OCR 1 (SAM + CLIP-L), `qwen2-0-5b` is
//! DeepSeek-OCR 2 (SAM + a Qwen2 encoder with learned queries, "Visual Causal Flow",
//! <https://arxiv.org/abs/2601.20552>). The real OCR 2 `config.json` carries only
//! `qwen2-0-5b.dim`; the other sizes are constants of its `deepencoderv2.py` and default to them
//! here. Its `sam_vit_b.downsample_channels` says 1024 for `net_3`, but the code (and the
//! checkpoint) has `net_3` as wide as the encoder, so [`VisionConfig::sam_output_channels`] takes
//! the encoder width.

use serde::{Deserialize, Serialize};

use super::config::{ClipConfig, ProjectorConfig, VisionConfig};
use super::ModelError;
use crate::data::ImageMode;

/// Which DeepSeek-OCR generation a configuration describes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Architecture<'a> {
    /// DeepSeek-OCR: SAM + CLIP-L, `image_newline` after every grid row.
    Ocr1(&'a ClipConfig),
    /// DeepSeek-OCR 2: SAM + the Qwen2 encoder, no newlines.
    Ocr2(&'a Qwen2EncoderConfig),
}

/// The Qwen2 encoder of DeepSeek-OCR 2 (`vision_config.width.qwen2-0-5b`); defaults are the
/// real model's (`build_qwen2_decoder_as_encoder`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Qwen2EncoderConfig {
    /// Width (also `net_3`'s output channels and the projector's input).
    pub dim: usize,
    /// Transformer layers.
    #[serde(default = "layers")]
    pub layers: usize,
    /// Query heads.
    #[serde(default = "heads")]
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    #[serde(default = "kv_heads")]
    pub kv_heads: usize,
    /// Width of the SiLU-gated MLP.
    #[serde(default = "intermediate")]
    pub intermediate_size: usize,
    /// RMSNorm epsilon.
    #[serde(default = "eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "theta")]
    pub rope_theta: f64,
    /// Learned queries of a global view (`query_1024`: a 16x16 grid).
    #[serde(default = "queries_global")]
    pub queries_global: usize,
    /// Learned queries of a tile (`query_768`: a 12x12 grid).
    #[serde(default = "queries_tile")]
    pub queries_tile: usize,
}

fn layers() -> usize {
    24
}
fn heads() -> usize {
    14
}
fn kv_heads() -> usize {
    2
}
fn intermediate() -> usize {
    4864
}
fn eps() -> f64 {
    1e-6
}
fn theta() -> f64 {
    1_000_000.0
}
fn queries_global() -> usize {
    256
}
fn queries_tile() -> usize {
    144
}

impl Qwen2EncoderConfig {
    /// Head dimension.
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }
}

fn unsupported(key: &'static str, value: String, supported: &'static str) -> ModelError {
    ModelError::Unsupported {
        key,
        value,
        supported,
    }
}

impl VisionConfig {
    /// The generation, from which second encoder is configured.
    pub fn architecture(&self) -> Result<Architecture<'_>, ModelError> {
        match (&self.width.clip_l, &self.width.qwen2) {
            (Some(c), None) => Ok(Architecture::Ocr1(c)),
            (None, Some(q)) => Ok(Architecture::Ocr2(q)),
            (c, q) => Err(unsupported(
                "vision_config.width",
                format!(
                    "clip-l-14-224 {}, qwen2-0-5b {}",
                    if c.is_some() { "present" } else { "absent" },
                    if q.is_some() { "present" } else { "absent" }
                ),
                "exactly one of clip-l-14-224 (DeepSeek-OCR) and qwen2-0-5b (DeepSeek-OCR 2)",
            )),
        }
    }

    /// Whether every grid row of a view is followed by `image_newline` (DeepSeek-OCR) or the
    /// views are flat lists of query outputs (DeepSeek-OCR 2).
    pub fn image_newlines(&self) -> bool {
        self.width.clip_l.is_some()
    }

    /// The image mode and fallback mode to read pages in. `None` (auto) gives the
    /// architecture's defaults: Base with a Gundam fallback for DeepSeek-OCR, the OCR 2 crop
    /// mode (which tiles large pages itself) for DeepSeek-OCR 2. Requested modes must lay out
    /// positions as the architecture does (newlines or not).
    pub fn image_modes(
        &self,
        requested: Option<(ImageMode, Option<ImageMode>)>,
    ) -> Result<(ImageMode, Option<ImageMode>), ModelError> {
        let newlines = self.image_newlines();
        let patch = self.width.sam_vit_b.patch_size as u32;
        let Some((mode, long)) = requested else {
            return Ok(if newlines {
                (
                    ImageMode::BASE.with_patch_size(patch),
                    Some(ImageMode::GUNDAM.with_patch_size(patch)),
                )
            } else {
                (ImageMode::OCR2.with_patch_size(patch), None)
            });
        };
        let (mode, long) = (
            mode.with_patch_size(patch),
            long.map(|l| l.with_patch_size(patch)),
        );
        let step = patch * 4;
        for m in std::iter::once(&mode).chain(long.as_ref()) {
            if m.base_size % step != 0 || m.image_size % step != 0 {
                return Err(unsupported(
                    "image mode",
                    format!("{m:?}"),
                    "view sizes that are multiples of 4 SAM patches (64 px for 16-px patches)",
                ));
            }
            if m.row_newlines != newlines {
                return Err(unsupported(
                    "image mode",
                    format!("{m:?}"),
                    if newlines {
                        "a DeepSeek-OCR mode (tiny, small, base, large, gundam, a size)"
                    } else {
                        "the DeepSeek-OCR 2 mode (ocr2)"
                    },
                ));
            }
        }
        Ok((mode, long))
    }

    /// Output channels of SAM's `net_3`: the encoder's width in DeepSeek-OCR 2, the second
    /// `downsample_channels` entry in DeepSeek-OCR.
    pub fn sam_output_channels(&self) -> usize {
        match &self.width.qwen2 {
            Some(q) => q.dim,
            None => self.width.sam_vit_b.downsample_channels[1],
        }
    }

    /// Checks the second encoder and the projector's input width against SAM's output.
    pub(crate) fn validate_encoder(&self, projector: &ProjectorConfig) -> Result<(), ModelError> {
        let c3 = self.sam_output_channels();
        let (key, sizes, want_input): (_, Vec<(&'static str, usize, usize)>, _) = match self
            .architecture()?
        {
            Architecture::Ocr1(c) => {
                if c.width != c3 {
                    return Err(unsupported(
                        "vision_config.width.clip-l-14-224.width",
                        c.width.to_string(),
                        "the last SAM downsample channel count",
                    ));
                }
                for (key, eps) in [
                    (
                        "vision_config.width.clip-l-14-224.layernorm_epsilon",
                        c.layernorm_epsilon,
                    ),
                    (
                        "vision_config.width.clip-l-14-224.pre_layernorm_epsilon",
                        c.pre_layernorm_epsilon,
                    ),
                ] {
                    if !(eps.is_finite() && eps > 0.0) {
                        return Err(unsupported(
                            key,
                            eps.to_string(),
                            "a positive finite number",
                        ));
                    }
                }
                (
                    "vision_config.width.clip-l-14-224.heads",
                    vec![
                        ("vision_config.width.clip-l-14-224.width", c.width, 1 << 14),
                        (
                            "vision_config.width.clip-l-14-224.layers",
                            c.layers,
                            1 << 10,
                        ),
                        ("vision_config.width.clip-l-14-224.heads", c.heads, 1 << 10),
                        (
                            "vision_config.width.clip-l-14-224.image_size",
                            c.image_size,
                            1 << 14,
                        ),
                        (
                            "vision_config.width.clip-l-14-224.patch_size",
                            c.patch_size,
                            1 << 10,
                        ),
                        (
                            "vision_config.width.clip-l-14-224.ffn_hidden_size",
                            c.ffn_hidden_size,
                            1 << 18,
                        ),
                    ],
                    c.width + c3,
                )
            }
            Architecture::Ocr2(q) => {
                for (key, v) in [
                    (
                        "vision_config.width.qwen2-0-5b.rms_norm_eps",
                        q.rms_norm_eps,
                    ),
                    ("vision_config.width.qwen2-0-5b.rope_theta", q.rope_theta),
                ] {
                    if !(v.is_finite() && v > 0.0) {
                        return Err(unsupported(key, v.to_string(), "a positive finite number"));
                    }
                }
                (
                    "vision_config.width.qwen2-0-5b.heads",
                    vec![
                        ("vision_config.width.qwen2-0-5b.dim", q.dim, 1 << 14),
                        ("vision_config.width.qwen2-0-5b.layers", q.layers, 1 << 10),
                        ("vision_config.width.qwen2-0-5b.heads", q.heads, 1 << 10),
                        (
                            "vision_config.width.qwen2-0-5b.kv_heads",
                            q.kv_heads,
                            1 << 10,
                        ),
                        (
                            "vision_config.width.qwen2-0-5b.intermediate_size",
                            q.intermediate_size,
                            1 << 18,
                        ),
                        (
                            "vision_config.width.qwen2-0-5b.queries_global",
                            q.queries_global,
                            1 << 14,
                        ),
                        (
                            "vision_config.width.qwen2-0-5b.queries_tile",
                            q.queries_tile,
                            1 << 14,
                        ),
                    ],
                    q.dim,
                )
            }
        };
        for (k, v, max) in sizes {
            if v == 0 || v > max {
                return Err(unsupported(
                    k,
                    v.to_string(),
                    "a positive size (within the port's limits)",
                ));
            }
        }
        let divides = match self.architecture()? {
            Architecture::Ocr1(c) => c.width % c.heads == 0,
            Architecture::Ocr2(q) => {
                q.dim % q.heads == 0 && q.heads % q.kv_heads == 0 && q.head_dim() % 2 == 0
            }
        };
        if !divides {
            return Err(unsupported(
                key,
                format!("{:?}", self.architecture()?),
                "a divisor of the width (and a multiple of kv_heads, with an even head size)",
            ));
        }
        if projector.input_dim != want_input {
            return Err(unsupported(
                "projector_config.input_dim",
                projector.input_dim.to_string(),
                "the vision features' width (CLIP + SAM, or the Qwen2 encoder's)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::data::ImageMode;
    use crate::model::Config;

    /// Auto picks each architecture's layout; a mode with the other layout is refused.
    #[test]
    fn image_modes_follow_the_architecture() {
        let ocr1 = Config::tiny().vision_config;
        assert_eq!(
            ocr1.image_modes(None).unwrap(),
            (ImageMode::BASE, Some(ImageMode::GUNDAM))
        );
        let mut ocr2 = ocr1.clone();
        ocr2.width.clip_l = None;
        ocr2.width.qwen2 = Some(serde_json::from_str(r#"{"dim": 128}"#).unwrap());
        assert!(!ocr2.image_newlines());
        assert_eq!(ocr2.image_modes(None).unwrap(), (ImageMode::OCR2, None));
        // 96 px is not a multiple of four 16-px patches ...
        let explicit = Some((ImageMode::ocr2(128, 96), None));
        let err = ocr2.image_modes(explicit).unwrap_err().to_string();
        assert!(err.contains("multiples of 4 SAM patches"), "{err}");
        // ... but is of four 2-px patches, and the modes take the model's patch size.
        ocr2.width.sam_vit_b.patch_size = 2;
        assert_eq!(
            ocr2.image_modes(explicit).unwrap().0,
            ImageMode::ocr2(128, 96).with_patch_size(2)
        );
        assert_eq!(
            ocr2.image_modes(None).unwrap().0,
            ImageMode::OCR2.with_patch_size(2)
        );
        let err = ocr2
            .image_modes(Some((ImageMode::BASE, None)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ocr2"), "{err}");
        assert!(ocr1.image_modes(Some((ImageMode::OCR2, None))).is_err());
        assert!(ocr1
            .image_modes(Some((ImageMode::BASE, Some(ImageMode::OCR2))))
            .is_err());
    }
}
