//! A run's settings: optimisation ([`TrainConfig`]), the whole run ([`RunConfig`]) and early
//! stopping ([`EarlyStopping`]), saved with every checkpoint. [`RunConfig::validate`] refuses
//! zero sizes and unknown metrics with the valid values listed, and
//! [`RunConfig::resume_conflicts`] names every setting a resumed run may not change.

use serde::{Deserialize, Serialize};

use super::optim::AdamWConfig;
use super::schedule::{Decay, Schedule};
use super::TrainError;
use crate::eval::Metric;
use crate::infer::GenerationConfig;
use crate::lora::LoraConfig;

/// Optimisation settings (saved beside every checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up steps.
    pub warmup_steps: u64,
    /// Optimiser steps of the whole run (for the schedule).
    pub total_steps: u64,
    /// Decay after warm-up.
    pub decay: Decay,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Gradient clipping norm (0 = off).
    pub max_grad_norm: f64,
    /// AdamW settings.
    pub adamw: AdamWConfig,
    /// Seed of LoRA dropout (and of data order in the loops that use it).
    pub seed: u64,
    /// Gradient checkpointing of the decoder layers (the same gradients, less activation
    /// memory, one more forward pass per layer).
    #[serde(default)]
    pub gradient_checkpointing: bool,
}

impl TrainConfig {
    /// `lr` with 10% linear warm-up and cosine decay over `total_steps`, clipping at 1.0.
    pub fn new(lr: f64, total_steps: u64) -> Self {
        Self {
            lr,
            warmup_steps: total_steps / 10,
            total_steps,
            decay: Decay::Cosine,
            grad_accum: 1,
            max_grad_norm: 1.0,
            adamw: AdamWConfig::default(),
            seed: 0,
            gradient_checkpointing: false,
        }
    }

    pub(crate) fn schedule(&self) -> Schedule {
        Schedule {
            lr: self.lr,
            warmup: self.warmup_steps,
            total: self.total_steps,
            decay: self.decay,
        }
    }
}

/// When to stop before the last epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// The metric watched: `loss` (held-out cross-entropy) or an evaluator metric (`rouge1`,
    /// `rouge2`, `rougeL`, `rougeLsum`, `bleu`, `chrf`, `cer`, `wer`).
    pub metric: String,
    /// Evaluations without improvement before stopping.
    pub patience: usize,
    /// Whether larger is better (true for ROUGE, BLEU, chrF; false for loss, CER, WER).
    pub higher_is_better: bool,
}

/// The metrics an evaluation reports and early stopping can watch, in the order errors list
/// them.
pub fn watchable_metrics() -> Vec<&'static str> {
    let mut v = vec!["loss"];
    v.extend(Metric::ALL.iter().map(|m| m.name()));
    v
}

impl EarlyStopping {
    /// Watches `metric` (any name [`watchable_metrics`] lists, case-insensitive; `rouge-l`
    /// and `rougel` mean `rougeL`) for `patience` evaluations; the direction follows the
    /// metric.
    pub fn on(metric: &str, patience: usize) -> Result<Self, TrainError> {
        if patience == 0 {
            return Err(TrainError::Config(
                "early stopping patience must be at least 1".into(),
            ));
        }
        let (name, higher) = if metric.eq_ignore_ascii_case("loss") {
            ("loss", false)
        } else {
            let m = Metric::from_name(metric).ok_or_else(|| {
                TrainError::Config(format!(
                    "unknown early stopping metric `{metric}` (valid: {})",
                    watchable_metrics().join(", ")
                ))
            })?;
            (m.name(), m.higher_is_better())
        };
        Ok(Self {
            metric: name.into(),
            patience,
            higher_is_better: higher,
        })
    }
}

/// How many bad examples a run tolerates before it fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadExampleLimit {
    /// The larger of 10 and 1% of the training and held-out examples: a few broken rows in a
    /// big dataset are expected, a dataset that is mostly broken is a mistake worth stopping
    /// for.
    #[default]
    Auto,
    /// At most this many (0: the first bad example fails the run).
    Count(usize),
}

impl BadExampleLimit {
    /// Parses `auto` or a count.
    pub fn from_name(s: &str) -> Result<Self, TrainError> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        s.parse().map(Self::Count).map_err(|_| {
            TrainError::Config(format!(
                "bad --max-bad-examples `{s}` (valid: auto or a count)"
            ))
        })
    }

    /// The limit for a run over `examples` examples.
    pub fn limit(self, examples: usize) -> usize {
        match self {
            Self::Auto => 10.max(examples.div_ceil(100)),
            Self::Count(n) => n,
        }
    }
}

/// A run's settings (saved with its checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunConfig {
    /// Optimisation.
    pub train: TrainConfig,
    /// Examples per micro-batch (of each rank, in a data-parallel run).
    pub batch_size: usize,
    /// Ranks of a data-parallel run (1: one process). A step takes `batch_size x grad_accum x
    /// world_size` examples; a run resumes with another world size when `grad_accum x
    /// world_size` stays the same.
    #[serde(default = "default_world_size")]
    pub world_size: usize,
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
    /// MiB of pages and frozen vision-tower features kept across epochs and evaluations, least
    /// recently used dropped first ([`crate::model::TensorCache`]; the same numbers, fewer
    /// renders and encoder passes); 0 = off.
    #[serde(default = "default_cache_mib", alias = "feature_cache_mib")]
    pub cache_mib: usize,
    /// Bad examples (that cannot be rendered, tokenised, encoded or generated for) tolerated
    /// before the run fails; each is skipped and listed in `skipped.jsonl`.
    #[serde(default)]
    pub max_bad_examples: BadExampleLimit,
    /// Longest training sequence (prompt, image positions and summary), as TRL's and
    /// Unsloth's `max_seq_length`: longer examples are skipped (attention memory grows with its
    /// square). Also bounded by the model's `max_position_embeddings`.
    #[serde(default = "default_max_seq_length")]
    pub max_seq_length: usize,
    /// Track and print the training loss every this many optimiser steps, as Hugging Face's
    /// `logging_steps`: the loss logged is the mean over the steps since the last log, the
    /// learning rate and gradient norm those of the logged step; the last step is always
    /// logged. 1 = every step.
    #[serde(default = "default_logging_steps")]
    pub logging_steps: u64,
    /// Write a checkpoint every this many optimiser steps, as Hugging Face's `save_steps`;
    /// `None` = with every evaluation (`eval_every`). `best/` is written by evaluations either
    /// way, and the run's last step is always checkpointed.
    #[serde(default)]
    pub save_every: Option<u64>,
    /// The metric that picks `best/` when early stopping is off (as Hugging Face's
    /// `metric_for_best_model` / `greater_is_better`; `patience` is unused); with early
    /// stopping on, its metric picks `best/`; with neither, the held-out loss does.
    #[serde(default)]
    pub best_metric: Option<EarlyStopping>,
}

fn default_world_size() -> usize {
    1
}

fn default_logging_steps() -> u64 {
    1
}

fn default_max_seq_length() -> usize {
    2048
}

fn default_cache_mib() -> usize {
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
            world_size: 1,
            epochs: 1,
            eval_every: 0,
            keep_last: 2,
            early_stopping: None,
            generation,
            max_eval_examples: 32,
            cache_mib: default_cache_mib(),
            max_bad_examples: BadExampleLimit::Auto,
            max_seq_length: default_max_seq_length(),
            logging_steps: default_logging_steps(),
            save_every: None,
            best_metric: None,
        }
    }

    /// The metric `best/` (and early stopping) watch: early stopping's, else
    /// [`Self::best_metric`], else the held-out loss (lower is better).
    pub fn watched(&self) -> EarlyStopping {
        self.early_stopping
            .clone()
            .or_else(|| self.best_metric.clone())
            .unwrap_or(EarlyStopping {
                metric: "loss".into(),
                patience: usize::MAX,
                higher_is_better: false,
            })
    }

    /// Whether a checkpoint is written after optimiser step `step` (besides the last one).
    pub fn saves_at(&self, step: u64) -> bool {
        let every = self.save_every.unwrap_or(self.eval_every);
        every > 0 && step % every == 0
    }

    /// Optimiser steps for `n` training examples (over every rank).
    pub fn steps_for(&self, n: usize) -> u64 {
        let per_step = self.batch_size * self.train.grad_accum * self.world_size;
        (n.div_ceil(per_step.max(1)) * self.epochs) as u64
    }

    /// Refuses zero sizes, an unknown early-stopping metric and invalid generation settings,
    /// naming the setting.
    pub fn validate(&self) -> Result<(), TrainError> {
        let positive = [
            ("batch_size", self.batch_size),
            ("world_size", self.world_size),
            ("epochs", self.epochs),
            (
                "grad_accum (gradient accumulation steps)",
                self.train.grad_accum,
            ),
            ("keep_last (save total limit)", self.keep_last),
            ("max_eval_examples", self.max_eval_examples),
            ("max_seq_length", self.max_seq_length),
            ("logging_steps", self.logging_steps as usize),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(TrainError::Config(format!(
                    "{name} must be at least 1, got 0"
                )));
            }
        }
        if self.train.total_steps == 0 {
            return Err(TrainError::Config("total_steps must be at least 1".into()));
        }
        if !(self.train.lr > 0.0 && self.train.lr.is_finite()) {
            return Err(TrainError::Config(format!(
                "the learning rate must be > 0, got {}",
                self.train.lr
            )));
        }
        if self.save_every == Some(0) {
            return Err(TrainError::Config(
                "save_every must be at least 1 (None saves with every evaluation)".into(),
            ));
        }
        for es in [&self.early_stopping, &self.best_metric]
            .into_iter()
            .flatten()
        {
            // The name must be one an evaluation reports, as it reports it; the direction is
            // the caller's (`EarlyStopping::on` picks the metric's natural one).
            let canonical = EarlyStopping::on(&es.metric, es.patience)?;
            if canonical.metric != es.metric {
                return Err(TrainError::Config(format!(
                    "early stopping metric `{}` is reported as `{}`",
                    es.metric, canonical.metric
                )));
            }
        }
        self.generation
            .validate()
            .map_err(|e| TrainError::Config(format!("evaluation generation: {e}")))
    }

    /// The settings a resumed run takes from its checkpoint (`saved`) that differ in `self`,
    /// each as `name: <self> (given) vs <saved> (checkpoint)`. Optimisation, batch size,
    /// epochs and early stopping decide the schedule, the data order and the best model, so
    /// they cannot change; evaluation, checkpoint rotation, the cache and gradient
    /// checkpointing (which gives the same gradients) can.
    pub fn resume_conflicts(&self, saved: &RunConfig) -> Vec<String> {
        let mut c = Conflicts::default();
        let (a, b) = (&self.train, &saved.train);
        c.check("batch_size", self.batch_size, saved.batch_size);
        c.check("epochs", self.epochs, saved.epochs);
        c.check("max_seq_length", self.max_seq_length, saved.max_seq_length);
        // Another world size keeps the data order when the micro-batches per step stay.
        if self.world_size == saved.world_size {
            c.check("grad_accum", a.grad_accum, b.grad_accum);
        } else {
            c.check(
                "grad_accum x world_size (micro-batches per step)",
                a.grad_accum * self.world_size,
                b.grad_accum * saved.world_size,
            );
        }
        c.check("seed", a.seed, b.seed);
        c.check("lr", a.lr, b.lr);
        c.check("warmup_steps", a.warmup_steps, b.warmup_steps);
        c.check("total_steps", a.total_steps, b.total_steps);
        c.check("decay", format!("{:?}", a.decay), format!("{:?}", b.decay));
        c.check("max_grad_norm", a.max_grad_norm, b.max_grad_norm);
        c.check("adamw", format!("{:?}", a.adamw), format!("{:?}", b.adamw));
        let es = |e: &Option<EarlyStopping>| {
            e.as_ref().map_or("off".to_string(), |e| {
                format!("{} patience {}", e.metric, e.patience)
            })
        };
        c.check(
            "early_stopping",
            es(&self.early_stopping),
            es(&saved.early_stopping),
        );
        let dir = |e: EarlyStopping| {
            let way = if e.higher_is_better {
                "higher"
            } else {
                "lower"
            };
            format!("{} ({way} is better)", e.metric)
        };
        c.check(
            "metric for best model",
            dir(self.watched()),
            dir(saved.watched()),
        );
        c.0
    }
}

/// The fields of an adapter configuration that a resumed run must share with its checkpoint,
/// each difference as `name: <given> (given) vs <saved> (checkpoint)`.
pub fn lora_resume_conflicts(given: &LoraConfig, saved: &LoraConfig) -> Vec<String> {
    let mut c = Conflicts::default();
    let dbg = |v: &dyn std::fmt::Debug| format!("{v:?}");
    c.check("lora rank", given.r, saved.r);
    c.check("lora alpha", given.lora_alpha, saved.lora_alpha);
    c.check("lora dropout", given.lora_dropout, saved.lora_dropout);
    c.check(
        "lora targets",
        dbg(&given.target_modules),
        dbg(&saved.target_modules),
    );
    c.check("use_rslora", given.use_rslora, saved.use_rslora);
    c.check(
        "rank_pattern",
        dbg(&given.rank_pattern),
        dbg(&saved.rank_pattern),
    );
    c.check(
        "alpha_pattern",
        dbg(&given.alpha_pattern),
        dbg(&saved.alpha_pattern),
    );
    c.0
}

/// Differences between given and checkpointed settings.
#[derive(Default)]
struct Conflicts(Vec<String>);

impl Conflicts {
    fn check(&mut self, name: &str, given: impl ToString, saved: impl ToString) {
        let (a, b) = (given.to_string(), saved.to_string());
        if a != b {
            self.0
                .push(format!("{name}: {a} (given) vs {b} (checkpoint)"));
        }
    }
}
