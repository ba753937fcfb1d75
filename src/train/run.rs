//! A whole fine-tuning run: epochs of shuffled batches, evaluation every `eval_every` steps by
//! generating summaries for held-out examples and scoring them (ROUGE-1/2/L, CER, WER) plus the
//! held-out loss, early stopping on a metric, checkpoints every evaluation (the last `keep_last`
//! kept, the best one copied to `best/`), TensorBoard / JSONL tracking, and exact resumption.
//!
//! The data order of epoch `e` is a shuffle seeded by `seed + e`, so a resumed run only needs
//! the epoch and position, which every checkpoint records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::examples::{Example, ExampleEncoder};
use super::trainer::{StepReport, TrainConfig, Trainer};
use super::TrainError;
use crate::data::Pair;
use crate::eval::{Bootstrap, EvalConfig, Evaluator, Metric};
use crate::infer::{generate, GenerationConfig, PromptInput};
use crate::lora::LoraConfig;
use crate::model::{DeepseekOcr, FeatureCache};
use crate::rng::Rng;
use crate::track::Tracker;

/// When to stop before the last epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// The metric watched: `loss`, `rouge1`, `rouge2`, `rougeL`, `cer` or `wer`.
    pub metric: String,
    /// Evaluations without improvement before stopping.
    pub patience: usize,
    /// Whether larger is better (true for ROUGE, false for loss, CER, WER).
    pub higher_is_better: bool,
}

/// A run's settings (saved with its checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunConfig {
    /// Optimisation.
    pub train: TrainConfig,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Passes over the training examples.
    pub epochs: usize,
    /// Evaluate (and checkpoint) every this many optimiser steps; 0 = at the end only.
    pub eval_every: u64,
    /// Checkpoints kept besides `best/`.
    pub keep_last: usize,
    /// Early stopping, if any.
    pub early_stopping: Option<EarlyStopping>,
    /// Decoding of the evaluation summaries.
    pub generation: GenerationConfig,
    /// At most this many held-out examples per evaluation.
    pub max_eval_examples: usize,
    /// MiB of frozen vision-tower features kept per page across epochs and evaluations
    /// ([`crate::model::FeatureCache`]; the same numbers, fewer encoder passes); 0 = off.
    #[serde(default = "default_feature_cache_mib")]
    pub feature_cache_mib: usize,
}

fn default_feature_cache_mib() -> usize {
    1024
}

impl RunConfig {
    /// `train` with batch size 1, 1 epoch, evaluation at the end, 2 checkpoints kept, greedy
    /// evaluation summaries of up to 64 tokens.
    pub fn new(train: TrainConfig) -> Self {
        let mut generation = GenerationConfig::greedy();
        generation.max_new_tokens = 64;
        Self {
            train,
            batch_size: 1,
            epochs: 1,
            eval_every: 0,
            keep_last: 2,
            early_stopping: None,
            generation,
            max_eval_examples: 32,
            feature_cache_mib: default_feature_cache_mib(),
        }
    }

    /// Optimiser steps for `n` training examples.
    pub fn steps_for(&self, n: usize) -> u64 {
        let per_step = self.batch_size * self.train.grad_accum;
        (n.div_ceil(per_step.max(1)) * self.epochs) as u64
    }
}

/// One evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Optimiser step.
    pub step: u64,
    /// `loss` (held-out cross-entropy) and the metrics, by name.
    pub metrics: BTreeMap<String, f64>,
    /// `(reference, generated)` of every held-out example.
    pub samples: Vec<(String, String)>,
}

/// What a run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunOutcome {
    /// Optimiser steps taken.
    pub steps: u64,
    /// Every evaluation.
    pub evals: Vec<EvalReport>,
    /// Training loss per step.
    pub train_losses: Vec<(u64, f64)>,
    /// `(step, value)` of the best watched metric.
    pub best: Option<(u64, f64)>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Micro-batches skipped for non-finite losses.
    pub skipped: u64,
}

/// Generates summaries for `examples` and scores them; also the held-out loss.
pub fn evaluate(
    model: &DeepseekOcr,
    enc: &ExampleEncoder,
    examples: &[Example],
    generation: &GenerationConfig,
) -> Result<EvalReport, TrainError> {
    let ids = enc.special_ids();
    let mut pairs = Vec::with_capacity(examples.len());
    let mut samples = Vec::with_capacity(examples.len());
    for ex in examples {
        let (prompt, page) = enc.inference(ex)?;
        let dev = model.device();
        let it = Tensor::from_slice(&prompt.input_ids, (1, prompt.len()), dev)?;
        let mt = Tensor::from_slice(&prompt.image_mask, (1, prompt.len()), dev)?;
        let feats = model.encode_images(&[vec![page.clone()]])?;
        let embeds = model.merge_embeddings(&it, &mt, &feats)?;
        let input = PromptInput {
            embeds: embeds.squeeze(0)?,
            ids: prompt.input_ids.clone(),
        };
        let mut g = generation.clone();
        g.eos_token_ids = vec![ids.eos];
        let out = generate(model, &[input], &g, None)
            .map_err(|e| TrainError::Example {
                id: ex.id.clone(),
                reason: e.to_string(),
            })?
            .pop()
            .expect("one prompt, one result");
        let text = enc
            .codec()
            .decode(&out.tokens, true)
            .map_err(|e| TrainError::Example {
                id: ex.id.clone(),
                reason: e.to_string(),
            })?
            .trim()
            .to_string();
        pairs.push(Pair::new(ex.id.clone(), ex.summary.clone(), text.clone()));
        samples.push((ex.summary.clone(), text));
    }
    let metrics = [
        Metric::Rouge1,
        Metric::Rouge2,
        Metric::RougeL,
        Metric::Cer,
        Metric::Wer,
    ];
    let ev = Evaluator::new(EvalConfig::default().with_metrics(&metrics).with_bootstrap(
        Bootstrap {
            samples: 0,
            ..Default::default()
        },
    ))
    .evaluate(&pairs);
    let mut out = BTreeMap::new();
    for m in metrics {
        let stat = if matches!(m, Metric::Cer | Metric::Wer) {
            "micro"
        } else {
            "fmeasure"
        };
        if let Some(r) = ev.get(m, stat) {
            out.insert(m.name().to_string(), r.value);
        }
    }
    // One example at a time, so the loss has no padding in it.
    out.insert(
        "loss".into(),
        super::pretrain::held_out_loss(model, enc, examples, 1)?,
    );
    Ok(EvalReport {
        step: 0,
        metrics: out,
        samples,
    })
}

/// Position of a run in its data, saved in checkpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    epoch: usize,
    /// Micro-batches consumed in this epoch.
    batch: usize,
}

/// The example order of `epoch`: a shuffle seeded by `seed` and the epoch.
pub(crate) fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    Rng::new(
        seed.wrapping_add(epoch as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
    .shuffle(&mut idx);
    idx
}

fn checkpoint_dir(out: &Path, step: u64) -> PathBuf {
    out.join(format!("checkpoint-{step:06}"))
}

/// Deletes all but the newest `keep` `checkpoint-*` folders of `out`.
fn rotate(out: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("checkpoint-"))
        })
        .collect();
    dirs.sort();
    let drop = dirs.len().saturating_sub(keep);
    for d in &dirs[..drop] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Runs (or, with `resume`, continues) a fine-tuning run writing into `out`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    model: &mut DeepseekOcr,
    lora_cfg: &LoraConfig,
    enc: &ExampleEncoder,
    train: &[Example],
    held_out: &[Example],
    cfg: &RunConfig,
    out: &Path,
    tracker: &mut dyn Tracker,
    resume: Option<&Path>,
    log: &mut dyn FnMut(&str),
) -> Result<RunOutcome, TrainError> {
    // LoRA adapters live in the decoder only, so the vision tower's output per page is fixed
    // for the whole run: serve it from a cache, then put back what the model had.
    let before = model.feature_cache();
    if cfg.feature_cache_mib > 0 {
        model.set_feature_cache(Some(Arc::new(FeatureCache::new(
            cfg.feature_cache_mib << 20,
        ))));
    }
    let result = run_cached(
        model, lora_cfg, enc, train, held_out, cfg, out, tracker, resume, log,
    );
    model.set_feature_cache(before);
    result
}

#[allow(clippy::too_many_arguments)]
fn run_cached(
    model: &mut DeepseekOcr,
    lora_cfg: &LoraConfig,
    enc: &ExampleEncoder,
    train: &[Example],
    held_out: &[Example],
    cfg: &RunConfig,
    out: &Path,
    tracker: &mut dyn Tracker,
    resume: Option<&Path>,
    log: &mut dyn FnMut(&str),
) -> Result<RunOutcome, TrainError> {
    if train.is_empty() {
        return Err(TrainError::Config("no training examples".into()));
    }
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(TrainError::Config(
            "batch_size and epochs must be at least 1".into(),
        ));
    }
    crate::fsutil::create_dir_all(out).map_err(|e| TrainError::Checkpoint {
        path: out.into(),
        reason: e.to_string(),
    })?;
    let (mut trainer, mut cursor, mut best, mut since_best, mut outcome) =
        match resume {
            Some(dir) => {
                let (t, _, extra) = Trainer::resume(model, dir)?;
                let cursor: Cursor =
                    serde_json::from_value(extra["cursor"].clone()).unwrap_or_default();
                let best: Option<(u64, f64)> =
                    serde_json::from_value(extra["best"].clone()).unwrap_or(None);
                let since: usize = extra["since_best"].as_u64().unwrap_or(0) as usize;
                let outcome: RunOutcome = serde_json::from_value(extra["outcome"].clone())
                    .map_err(|e| TrainError::Checkpoint {
                        path: dir.into(),
                        reason: format!("run state: {e}"),
                    })?;
                log(&format!(
                    "resumed from {} at step {}",
                    dir.display(),
                    t.step_count()
                ));
                (t, cursor, best, since, outcome)
            }
            None => (
                Trainer::new(model, cfg.train.clone())?,
                Cursor::default(),
                None,
                0,
                RunOutcome {
                    steps: 0,
                    evals: vec![],
                    train_losses: vec![],
                    best: None,
                    stopped_early: false,
                    skipped: 0,
                },
            ),
        };
    let eval_set = &held_out[..held_out.len().min(cfg.max_eval_examples)];
    if resume.is_none() {
        // What the model reads, in TensorBoard's Images tab.
        for (i, ex) in eval_set.iter().take(2).enumerate() {
            let (png, w, h, c) = enc.page_png(ex)?;
            tracker
                .image(&format!("pages/held_out_{i}"), 0, &png, w, h, c)
                .map_err(|e| TrainError::Config(e.to_string()))?;
        }
    }
    let per_epoch = train.len().div_ceil(cfg.batch_size);
    let do_eval = |trainer: &Trainer,
                   model: &DeepseekOcr,
                   cursor: Cursor,
                   best: &mut Option<(u64, f64)>,
                   since_best: &mut usize,
                   outcome: &mut RunOutcome,
                   tracker: &mut dyn Tracker,
                   log: &mut dyn FnMut(&str)|
     -> Result<bool, TrainError> {
        let step = trainer.step_count();
        let mut stop = false;
        if !eval_set.is_empty() {
            let mut rep = evaluate(model, enc, eval_set, &cfg.generation)?;
            rep.step = step;
            for (k, v) in &rep.metrics {
                tracker
                    .scalar(&format!("eval/{k}"), step, *v)
                    .map_err(|e| TrainError::Config(e.to_string()))?;
            }
            log(&format!(
                "eval step {step}: {}",
                rep.metrics
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let watch = cfg.early_stopping.clone().unwrap_or(EarlyStopping {
                metric: "loss".into(),
                patience: usize::MAX,
                higher_is_better: false,
            });
            if let Some(&v) = rep.metrics.get(&watch.metric) {
                let better = match best {
                    None => true,
                    Some((_, b)) => {
                        if watch.higher_is_better {
                            v > *b
                        } else {
                            v < *b
                        }
                    }
                };
                if better {
                    *best = Some((step, v));
                    *since_best = 0;
                    outcome.best = *best;
                } else {
                    *since_best += 1;
                    stop = cfg.early_stopping.is_some() && *since_best >= watch.patience;
                }
            }
            outcome.evals.push(rep);
        }
        outcome.steps = step;
        outcome.skipped = trainer.skipped();
        let extra = serde_json::json!({
            "cursor": cursor, "best": best, "since_best": since_best, "outcome": outcome,
            "run": cfg,
        });
        let dir = checkpoint_dir(out, step);
        trainer.save(model, lora_cfg, &dir, extra.clone())?;
        if outcome.best.map(|(s, _)| s) == Some(step) {
            trainer.save(model, lora_cfg, &out.join("best"), extra)?;
        }
        rotate(out, cfg.keep_last.max(1));
        Ok(stop)
    };
    'epochs: while cursor.epoch < cfg.epochs {
        let order = epoch_order(train.len(), cfg.train.seed, cursor.epoch);
        while cursor.batch < per_epoch {
            let mut micro = Vec::with_capacity(cfg.train.grad_accum);
            for _ in 0..cfg.train.grad_accum {
                if cursor.batch >= per_epoch {
                    break;
                }
                let start = cursor.batch * cfg.batch_size;
                let chosen = &order[start..(start + cfg.batch_size).min(train.len())];
                micro.push(enc.training_batch(chosen.iter().map(|&i| &train[i]))?);
                cursor.batch += 1;
            }
            let r: StepReport = trainer.step(model, &micro)?;
            tracker
                .scalar("train/loss", r.step, r.loss)
                .map_err(|e| TrainError::Config(e.to_string()))?;
            tracker
                .scalar("train/lr", r.step, r.lr)
                .map_err(|e| TrainError::Config(e.to_string()))?;
            tracker
                .scalar("train/grad_norm", r.step, r.grad_norm)
                .map_err(|e| TrainError::Config(e.to_string()))?;
            outcome.train_losses.push((r.step, r.loss));
            log(&format!(
                "step {} epoch {} loss {:.4} lr {:.3e} grad_norm {:.3}{}",
                r.step,
                cursor.epoch,
                r.loss,
                r.lr,
                r.grad_norm,
                if r.skipped > 0 {
                    format!(" ({} skipped)", r.skipped)
                } else {
                    String::new()
                }
            ));
            if cfg.eval_every > 0 && r.step % cfg.eval_every == 0 {
                let cur = if cursor.batch >= per_epoch {
                    Cursor {
                        epoch: cursor.epoch + 1,
                        batch: 0,
                    }
                } else {
                    cursor
                };
                if do_eval(
                    &trainer,
                    model,
                    cur,
                    &mut best,
                    &mut since_best,
                    &mut outcome,
                    tracker,
                    log,
                )? {
                    outcome.stopped_early = true;
                    log(&format!("early stopping at step {}", r.step));
                    break 'epochs;
                }
            }
        }
        cursor = Cursor {
            epoch: cursor.epoch + 1,
            batch: 0,
        };
    }
    let last_evaluated = outcome.evals.last().map(|e| e.step) == Some(trainer.step_count());
    if !outcome.stopped_early && !last_evaluated {
        do_eval(
            &trainer,
            model,
            cursor,
            &mut best,
            &mut since_best,
            &mut outcome,
            tracker,
            log,
        )?;
    }
    outcome.steps = trainer.step_count();
    outcome.skipped = trainer.skipped();
    if let Some(c) = model.feature_cache().filter(|_| cfg.feature_cache_mib > 0) {
        let st = c.stats();
        log(&format!(
            "page features: {} encoded, {} reused ({} pages, {:.1} MiB cached)",
            st.misses,
            st.hits,
            st.entries,
            st.bytes as f64 / 1048576.0
        ));
    }
    tracker
        .finish()
        .map_err(|e| TrainError::Config(e.to_string()))?;
    Ok(outcome)
}
