//! `DeepseekOcr`: vision encoder + projector + decoder, with images merged into the token
//! embeddings at the `<image>` positions (the reference's `masked_scatter_`).

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::config::Config;
use super::decoder::{Decoder, DecoderOutput, ForwardOptions, KvCache};
use super::loss::{causal_lm_loss, cross_entropy, scored_positions};
use super::vision::{ImageInput, VisionEncoder};
use super::ModelError;
use crate::weights::Weights;

/// One training or inference batch, already tokenised and preprocessed.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Token ids `[B, L]` (u32).
    pub input_ids: Tensor,
    /// 1 at image positions, `[B, L]` (u8).
    pub image_mask: Tensor,
    /// The images of each row, in prompt order.
    pub images: Vec<Vec<ImageInput>>,
    /// 1 for real tokens, 0 for padding, `[B, L]` (u8); `None` when nothing is padded.
    pub attention_mask: Option<Tensor>,
    /// Labels per row (`-100` = not scored), aligned with `input_ids` (shifted by the loss).
    pub labels: Option<Vec<Vec<i64>>>,
}

/// The output of [`DeepseekOcr::forward`].
#[derive(Debug)]
pub struct ModelOutput {
    /// The decoder's output (logits, traces, balancing losses).
    pub decoder: DecoderOutput,
    /// Mean next-token cross-entropy, when the batch has labels.
    pub loss: Option<Tensor>,
    /// Positions counted in the loss.
    pub loss_tokens: usize,
}

impl ModelOutput {
    /// The loss to backpropagate: cross-entropy plus the MoE balancing losses (which, like the
    /// reference's `AddAuxiliaryLoss`, change gradients but not the reported loss).
    pub fn training_objective(&self) -> Option<candle_core::Result<Tensor>> {
        let loss = self.loss.as_ref()?;
        Some(
            self.decoder
                .aux_losses
                .iter()
                .try_fold(loss.clone(), |acc, a| acc + a.to_dtype(DType::F32)?),
        )
    }
}

/// DeepSeek-OCR.
pub struct DeepseekOcr {
    config: Config,
    /// SAM + CLIP or the Qwen2 encoder + projector (frozen; only DeepSeek-OCR 2's Qwen2
    /// encoder layers can carry adapters, see [`Self::set_adapt_encoder`]).
    pub vision: VisionEncoder,
    /// Whether the Qwen2 encoder's layers are adaptable (listed by `lora_layers`).
    adapt_encoder: bool,
    /// The language model.
    pub decoder: Decoder,
    /// Page features kept while the vision tower is frozen ([`Self::set_feature_cache`]).
    feature_cache: std::sync::RwLock<Option<std::sync::Arc<super::TensorCache>>>,
}

impl DeepseekOcr {
    /// Builds the model from checkpoint weights (HF tensor names).
    pub fn new(config: &Config, w: &Weights) -> Result<Self, ModelError> {
        config.validate()?;
        Ok(Self {
            vision: VisionEncoder::new(config, &w.pp("model"))?,
            decoder: Decoder::new(&config.decoder, &w.pp("model"), w)?,
            config: config.clone(),
            feature_cache: Default::default(),
            adapt_encoder: false,
        })
    }

    /// Makes DeepSeek-OCR 2's Qwen2 encoder layers adaptable (Unsloth's
    /// `finetune_vision_layers`): LoRA targets then match them as well as the decoder's, and a
    /// training forward pass backpropagates through them (SAM stays frozen). Off drops their
    /// adapters. DeepSeek-OCR's SAM + CLIP tower has no trainable path: on is refused there.
    pub fn set_adapt_encoder(&mut self, on: bool) -> Result<(), ModelError> {
        let Some(enc) = self.vision.qwen2_mut() else {
            if !on {
                return Ok(());
            }
            return Err(ModelError::Unsupported {
                key: "finetune_vision_layers",
                value: "true for DeepSeek-OCR (SAM + CLIP)".into(),
                supported: "DeepSeek-OCR 2's Qwen2 encoder layers only",
            });
        };
        if !on {
            for (_, l) in enc.lora_layers_mut() {
                l.adapter = None;
            }
        }
        self.adapt_encoder = on;
        Ok(())
    }

    /// Whether the encoder's layers are adaptable ([`Self::set_adapt_encoder`]).
    pub fn adapts_encoder(&self) -> bool {
        self.adapt_encoder
    }

    /// Whether any encoder layer carries an adapter (its features then depend on it: no
    /// feature cache). Only adaptable encoders can (`set_adapt_encoder(false)` drops them), so
    /// the usual case skips listing the layers, which formats every layer's path.
    fn encoder_adapted(&self) -> bool {
        self.adapt_encoder
            && self
                .vision
                .qwen2()
                .is_some_and(|e| e.lora_layers().iter().any(|(_, l)| l.adapter.is_some()))
    }

    /// Serves [`encode_images`](Self::encode_images) from `cache` (`None` turns caching off).
    /// Only valid while the vision weights stay as they are: cached features are detached, so
    /// nothing trains through them.
    pub fn set_feature_cache(&self, cache: Option<std::sync::Arc<super::TensorCache>>) {
        *self
            .feature_cache
            .write()
            .unwrap_or_else(|p| p.into_inner()) = cache;
    }

    /// The cache [`encode_images`](Self::encode_images) uses, if any.
    pub fn feature_cache(&self) -> Option<std::sync::Arc<super::TensorCache>> {
        self.feature_cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads `config.json` and every `*.safetensors` of a model folder.
    pub fn from_dir(
        dir: impl AsRef<Path>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let dir = dir.as_ref();
        let config = Config::from_file(dir.join("config.json"))?;
        let w = Weights::from_dir(dir, dtype, device)?;
        Self::new(&config, &w)
    }

    /// Loads a resolved model ([`super::hub::resolve`]): config, weight shards memory-mapped
    /// in `dtype`, decoder linears quantised to NF4 as they load when `quantize` is given (or
    /// taken as stored when the checkpoint is pre-quantised).
    pub fn from_files(
        files: &super::hub::ModelFiles,
        dtype: DType,
        device: &Device,
        quantize: Option<crate::weights::QuantizeSpec>,
    ) -> Result<Self, ModelError> {
        let config = Config::from_file(&files.config)?;
        let w = Weights::from_safetensors(&files.weights, dtype, device)?.with_quantize(quantize);
        Self::new(&config, &w)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        self.decoder.device()
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.decoder.dtype()
    }

    /// The decoder rows of every image of every row, concatenated per row (differentiable only
    /// through the projector and layout embeddings, when those are variables).
    pub fn encode_images(
        &self,
        images: &[Vec<ImageInput>],
    ) -> Result<Vec<Option<Tensor>>, ModelError> {
        self.encode_images_t(images, false)
    }

    /// [`Self::encode_images`]; `train` records the backward pass through adapted encoder
    /// layers. Adapted encoders bypass the feature cache.
    pub fn encode_images_t(
        &self,
        images: &[Vec<ImageInput>],
        train: bool,
    ) -> Result<Vec<Option<Tensor>>, ModelError> {
        let cache = self.feature_cache().filter(|_| !self.encoder_adapted());
        let encode = |img: &ImageInput| -> candle_core::Result<Tensor> {
            let slot = match &cache {
                Some(c) => {
                    let key = super::TensorCache::pixel_key(img)?;
                    if let Some(hit) = c.features(&key) {
                        return Ok(hit);
                    }
                    Some((c, key))
                }
                None => None,
            };
            let img = ImageInput {
                global: img.global.to_dtype(self.dtype())?,
                tiles: match &img.tiles {
                    Some((t, g)) => Some((t.to_dtype(self.dtype())?, *g)),
                    None => None,
                },
            };
            let out = self.vision.encode_image_t(&img, train)?;
            if let Some((c, key)) = slot {
                c.insert_features(key, &out);
            }
            Ok(out)
        };
        let all: Vec<&ImageInput> = images.iter().flatten().collect();
        // On the CPU the images are encoded concurrently (each image's ops are the same as
        // when encoded alone, so the result is too): one image's many small ops leave cores
        // idle that another image's can use.
        let mut feats = if self.device().is_cpu() && all.len() > 1 {
            use rayon::prelude::*;
            all.par_iter().map(|img| encode(img)).collect::<Vec<_>>()
        } else {
            all.iter().map(|img| encode(img)).collect::<Vec<_>>()
        }
        .into_iter();
        images
            .iter()
            .map(|row| {
                if row.is_empty() {
                    return Ok(None);
                }
                let row: Vec<Tensor> = feats
                    .by_ref()
                    .take(row.len())
                    .collect::<candle_core::Result<_>>()?;
                Ok(Some(Tensor::cat(&row, 0)?))
            })
            .collect()
    }

    /// Token embeddings with the image rows written at the image positions.
    ///
    /// # Shapes
    /// `input_ids`, `image_mask` `[B, L]` -> `[B, L, hidden]`.
    pub fn merge_embeddings(
        &self,
        input_ids: &Tensor,
        image_mask: &Tensor,
        features: &[Option<Tensor>],
    ) -> Result<Tensor, ModelError> {
        let text = self.decoder.embed(input_ids)?;
        let (b, l) = input_ids.dims2()?;
        let mask: Vec<Vec<u8>> = image_mask.to_dtype(DType::U8)?.to_vec2()?;
        if features.len() != b {
            return Err(ModelError::Input {
                what: "images".into(),
                reason: format!("{} image lists for a batch of {b}", features.len()),
            });
        }
        let mut rows = Vec::with_capacity(b);
        for (r, feats) in features.iter().enumerate() {
            let slots = mask[r].iter().filter(|&&m| m != 0).count();
            let have = feats.as_ref().map(|f| f.dims()[0]).unwrap_or(0);
            if slots != have {
                return Err(ModelError::Input {
                    what: format!("batch row {r}"),
                    reason: format!(
                        "{slots} image positions in the prompt but the images give {have} rows"
                    ),
                });
            }
            let row = text.get(r)?;
            let Some(f) = feats else {
                rows.push(row);
                continue;
            };
            let mut k = 0u32;
            let idx: Vec<u32> = mask[r]
                .iter()
                .map(|&m| {
                    if m != 0 {
                        k += 1;
                        k - 1
                    } else {
                        0
                    }
                })
                .collect();
            let idx = Tensor::from_vec(idx, l, self.device())?;
            let scattered = f.to_dtype(row.dtype())?.index_select(&idx, 0)?;
            let m = Tensor::from_vec(mask[r].clone(), (l, 1), self.device())?
                .broadcast_as(row.shape())?;
            rows.push(m.where_cond(&scattered, &row)?);
        }
        Ok(Tensor::stack(&rows, 0)?)
    }

    /// Embeds a batch (text + images) for the decoder.
    pub fn embed_batch(&self, batch: &Batch) -> Result<Tensor, ModelError> {
        let features = self.encode_images(&batch.images)?;
        self.merge_embeddings(&batch.input_ids, &batch.image_mask, &features)
    }

    /// Full forward pass: images, decoder, and the loss when the batch has labels.
    pub fn forward(&self, batch: &Batch, opts: ForwardOptions) -> Result<ModelOutput, ModelError> {
        let features = self.encode_images_t(&batch.images, opts.train)?;
        let embeds = self.merge_embeddings(&batch.input_ids, &batch.image_mask, &features)?;
        self.forward_embeds(
            &embeds,
            batch.attention_mask.as_ref(),
            batch.labels.as_deref(),
            opts,
        )
    }

    /// Decoder pass (and loss) from merged embeddings; positions `0..L` for every row.
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        attention_mask: Option<&Tensor>,
        labels: Option<&[Vec<i64>]>,
        opts: ForwardOptions,
    ) -> Result<ModelOutput, ModelError> {
        let (b, l, _) = embeds.dims3()?;
        let positions = self.decoder.positions(b, 0, l)?;
        if let (true, Some(lab)) = (opts.scored_only, labels) {
            let (rows, targets) = scored_positions(lab, b, l)?;
            if !rows.is_empty() {
                let out = self.decoder.forward_rows(
                    embeds,
                    &positions,
                    attention_mask,
                    None,
                    opts,
                    Some(&rows),
                )?;
                let logits = out.logits.squeeze(0)?;
                let (loss, n) = cross_entropy(&logits, &targets)?;
                return Ok(ModelOutput {
                    decoder: out,
                    loss: Some(loss),
                    loss_tokens: n,
                });
            }
        }
        let out = self
            .decoder
            .forward(embeds, &positions, attention_mask, None, opts)?;
        let (loss, loss_tokens) = match labels {
            Some(lab) => {
                let (loss, n) = causal_lm_loss(&out.logits, lab)?;
                (Some(loss), n)
            }
            None => (None, 0),
        };
        Ok(ModelOutput {
            decoder: out,
            loss,
            loss_tokens,
        })
    }

    /// One incremental decoder step (prefill when the cache is empty).
    ///
    /// # Shapes
    /// `embeds` `[B, L, hidden]`, `positions` `[B, L]`, `key_mask` `[B, past + L]` -> logits
    /// `[B, 1, vocab]` of the last position.
    pub fn step(
        &self,
        embeds: &Tensor,
        positions: &Tensor,
        key_mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> Result<Tensor, ModelError> {
        let opts = ForwardOptions {
            last_only: true,
            ..Default::default()
        };
        Ok(self
            .decoder
            .forward(embeds, positions, key_mask, Some(cache), opts)?
            .logits)
    }

    /// A fresh cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.decoder.num_hidden_layers)
    }
}

impl crate::lora::LoraModel for DeepseekOcr {
    fn lora_layers(&self) -> Vec<(String, &crate::lora::LoraLinear)> {
        let mut out = self.decoder.lora_layers();
        if let Some(enc) = self.vision.qwen2().filter(|_| self.adapt_encoder) {
            out.extend(enc.lora_layers());
        }
        out
    }

    fn lora_layers_mut(&mut self) -> Vec<(String, &mut crate::lora::LoraLinear)> {
        let mut out = self.decoder.lora_layers_mut();
        if self.adapt_encoder {
            if let Some(enc) = self.vision.qwen2_mut() {
                out.extend(enc.lora_layers_mut());
            }
        }
        out
    }

    /// The vision side under the real checkpoints' names (`sam_model`, CLIP's `vision_model`,
    /// the Qwen2 encoder's `qwen2_model`) and transformers' native `vision_tower`; with
    /// adapted encoder layers, SAM and CLIP only.
    fn frozen_modules(&self) -> Vec<&'static str> {
        if self.adapt_encoder {
            vec!["sam_model", "vision_model"]
        } else {
            vec!["sam_model", "vision_model", "qwen2_model", "vision_tower"]
        }
    }

    /// An adapter with encoder layers makes them adaptable (DeepSeek-OCR 2).
    fn enable_layers_for(&mut self, paths: &[String]) -> Result<(), crate::lora::LoraError> {
        let encoder = super::vision::QWEN2_LAYERS;
        if paths.iter().any(|p| p.starts_with(encoder)) && self.vision.qwen2().is_some() {
            self.adapt_encoder = true;
        }
        Ok(())
    }
}
