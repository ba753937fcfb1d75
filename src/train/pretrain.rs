//! Training a model's own decoder weights from scratch (no adapter): how the bundled tiny
//! DeepSeek-OCR learns to continue the text of a rendered page before it is fine-tuned with
//! QLoRA. The projector, the layout embeddings and the decoder, named by [`PRETRAIN_PREFIXES`],
//! learn; SAM and CLIP ([`VISION_PREFIXES`]) learn too when they are made variables, through
//! their differentiable path (the fused frozen-weight kernels serve inference only).
//!
//! The model is built from [`Weights::with_trainable`], whose variables the [`Trainer`]
//! optimises; [`save_model`] writes every tensor (trained or not) as one checkpoint folder,
//! atomically and verified by reloading.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::evaluate::held_out_loss;
use super::examples::{Example, ExampleEncoder};
use super::order::epoch_order;
use super::trainer::Trainer;
use super::TrainError;
use crate::model::{Config, DeepseekOcr};
use crate::weights::Weights;

/// Checkpoint key prefixes trained from scratch: the projector and layout embeddings, then the
/// decoder's token embeddings, layers, final norm and LM head.
pub const PRETRAIN_PREFIXES: [&str; 7] = [
    "model.projector.",
    "model.image_newline",
    "model.view_seperator",
    "model.embed_tokens.",
    "model.layers.",
    "model.norm.",
    "lm_head.",
];

/// Checkpoint key prefixes of the vision tower (SAM and CLIP), trained too when a model learns
/// to read ([`PRETRAIN_PREFIXES`] plus these): with their weights as variables the encoder
/// takes its differentiable path (composed attention, normalisation and convolutions) instead
/// of the fused frozen-weight kernels.
pub const VISION_PREFIXES: [&str; 2] = ["model.sam_model.", "model.vision_model."];

/// Settings of a from-scratch run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    /// Optimisation (its `total_steps` should be [`Self::steps_for`] the examples).
    pub train: TrainConfig,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Passes over the examples.
    pub epochs: usize,
    /// Log a line every this many steps.
    pub log_every: u64,
}

impl PretrainConfig {
    /// Optimiser steps for `n` examples.
    pub fn steps_for(&self, n: usize) -> u64 {
        let per_step = self.batch_size.max(1) * self.train.grad_accum.max(1);
        (n.div_ceil(per_step) * self.epochs) as u64
    }
}

/// A reading example: the target is the first `max_chars` characters of the page text, cut at
/// a word boundary.
pub fn reading_example(ex: &Example, max_chars: usize) -> Example {
    let mut end = ex.text.len();
    if let Some((i, _)) = ex.text.char_indices().nth(max_chars) {
        end = ex.text[..i].rfind(char::is_whitespace).unwrap_or(i);
    }
    Example {
        id: ex.id.clone(),
        text: ex.text.clone(),
        summary: ex.text[..end].trim_end().to_string(),
    }
}

/// Synthetic reading lines: `n` examples whose text (and target) is words drawn at random
/// from `words`, about `chars` characters each. A language model cannot guess such a line, so
/// the only way to a low loss is to read the page: the first stage of a reading curriculum.
/// Deterministic in `seed`; ids are `line-<seed>-<i>`.
pub fn synthetic_lines(words: &[&str], n: usize, chars: usize, seed: u64) -> Vec<Example> {
    let mut rng = crate::rng::Rng::new(seed);
    (0..n)
        .map(|i| {
            let mut text = String::new();
            while !words.is_empty() && text.chars().count() < chars {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(words[rng.below(words.len() as u64) as usize]);
            }
            Example {
                id: format!("line-{seed}-{i}"),
                text: text.clone(),
                summary: text,
            }
        })
        .collect()
}

/// The distinct words of `texts` made of 2 to 12 ASCII letters or digits, sorted: the
/// vocabulary of [`synthetic_lines`].
pub fn line_words<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut words: Vec<&str> = texts
        .into_iter()
        .flat_map(str::split_whitespace)
        .filter(|w| (2..=12).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_alphanumeric()))
        .collect();
    words.sort_unstable();
    words.dedup();
    words
}

/// What a from-scratch run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PretrainOutcome {
    /// `(step, loss)` of every optimiser step.
    pub train_losses: Vec<(u64, f64)>,
    /// `(step, loss)` on the held-out examples after every epoch.
    pub held_out_losses: Vec<(u64, f64)>,
}

/// Trains `params` on `examples` for `cfg.epochs` shuffled epochs, scoring `held_out` after
/// each. A non-finite micro-batch is skipped as in fine-tuning.
pub fn pretrain(
    model: &DeepseekOcr,
    params: Vec<(String, Var)>,
    enc: &ExampleEncoder,
    examples: &[Example],
    held_out: &[Example],
    cfg: &PretrainConfig,
    log: &mut dyn FnMut(&str),
) -> Result<PretrainOutcome, TrainError> {
    if examples.is_empty() || cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(TrainError::Config(
            "pretraining needs examples, batch_size >= 1 and epochs >= 1".into(),
        ));
    }
    let mut trainer = Trainer::with_params(params, cfg.train.clone())?;
    let mut out = PretrainOutcome::default();
    for epoch in 0..cfg.epochs {
        let order = epoch_order(examples.len(), cfg.train.seed, epoch);
        let batches: Vec<&[usize]> = order.chunks(cfg.batch_size).collect();
        for group in batches.chunks(cfg.train.grad_accum.max(1)) {
            let micro = group
                .iter()
                .map(|chosen| enc.training_batch(chosen.iter().map(|&i| &examples[i])))
                .collect::<Result<Vec<_>, _>>()?;
            let r = trainer.step(model, &micro)?;
            out.train_losses.push((r.step, r.loss));
            if cfg.log_every > 0 && (r.step % cfg.log_every == 0 || r.step == 1) {
                log(&format!(
                    "step {} epoch {epoch} loss {:.4} lr {:.3e} grad_norm {:.3}",
                    r.step, r.loss, r.lr, r.grad_norm
                ));
            }
        }
        if !held_out.is_empty() {
            let l = held_out_loss(model, enc, held_out, cfg.batch_size)?;
            out.held_out_losses.push((trainer.step_count(), l));
            log(&format!("epoch {epoch} held-out loss {l:.4}"));
        }
    }
    Ok(out)
}

/// Writes the model as one checkpoint folder `dir`: `config.json`, `model.safetensors` with
/// every tensor of `base` (the current value of the trained ones in `params`), and `extra`
/// files. Written to a temporary folder, verified by reopening every tensor, then renamed.
pub fn save_model(
    base: &Weights,
    params: &[(String, Var)],
    config: &Config,
    extra: &[(&str, &[u8])],
    dir: &Path,
) -> Result<usize, TrainError> {
    let trained: HashMap<&str, &Var> = params.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let keys = base.keys();
    let mut tensors: Vec<(String, Tensor)> = Vec::with_capacity(keys.len());
    for k in &keys {
        let t = match trained.get(k.as_str()) {
            Some(v) => v.as_tensor().detach(),
            None => base.get_raw(k).map_err(crate::model::ModelError::from)?,
        };
        tensors.push((k.clone(), t));
    }
    let bytes =
        safetensors::serialize(tensors.iter().map(|(k, t)| (k.clone(), t)), None).map_err(|e| {
            TrainError::Checkpoint {
                path: dir.into(),
                reason: format!("serialising the weights: {e}"),
            }
        })?;
    let shapes: HashMap<String, Vec<usize>> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.dims().to_vec()))
        .collect();
    crate::fsutil::atomic_dir(
        dir,
        |tmp| {
            std::fs::write(tmp.join("model.safetensors"), &bytes)?;
            std::fs::write(tmp.join("config.json"), config.to_json_string())?;
            for (name, data) in extra {
                std::fs::write(tmp.join(name), data)?;
            }
            Ok(())
        },
        |tmp| {
            let w = Weights::from_dir(tmp, base.dtype(), base.device())
                .map_err(std::io::Error::other)?;
            for (k, s) in &shapes {
                if w.shape_of(k).as_ref() != Some(s) {
                    return Err(std::io::Error::other(format!(
                        "tensor `{k}` did not verify"
                    )));
                }
            }
            Config::from_file(tmp.join("config.json")).map_err(std::io::Error::other)?;
            Ok(())
        },
    )
    .map_err(|e| TrainError::Checkpoint {
        path: dir.into(),
        reason: e.to_string(),
    })?;
    Ok(tensors.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_words_keep_plain_words_once_in_order() {
        let words = line_words(["Fast, fast parse x1 a", "parse élan fast"]);
        assert_eq!(words, vec!["fast", "parse", "x1"]);
    }

    #[test]
    fn synthetic_lines_are_seeded_words_of_the_asked_length() {
        let words = ["alpha", "beta", "gamma", "delta"];
        let a = synthetic_lines(&words, 5, 20, 3);
        assert_eq!(a, synthetic_lines(&words, 5, 20, 3));
        assert_ne!(a, synthetic_lines(&words, 5, 20, 4));
        for (i, ex) in a.iter().enumerate() {
            assert_eq!(ex.id, format!("line-3-{i}"));
            assert_eq!(ex.summary, ex.text);
            // Words are added until the line reaches 20 characters: at most one word over.
            let n = ex.text.chars().count();
            assert!((20..20 + 6).contains(&n), "{n}: {}", ex.text);
            assert!(ex.text.split(' ').all(|w| words.contains(&w)));
        }
        assert!(synthetic_lines(&[], 2, 10, 1)
            .iter()
            .all(|e| e.text.is_empty()));
    }
}
