//! A whole fine-tuning run: epochs of shuffled batches, evaluation every `eval_every` steps by
//! generating summaries for held-out examples and scoring them (every evaluator metric and the
//! held-out loss), early stopping on a metric, checkpoints every evaluation or every
//! `save_every` steps (the last `keep_last` kept; `best/` written by the evaluation that
//! improved the watched metric), TensorBoard / JSONL tracking every `logging_steps`, and exact
//! resumption.
//!
//! The data order of epoch `e` is a shuffle seeded by `seed + e` ([`epoch_order`]), so a
//! resumed run only needs the epoch and position, which every checkpoint records together with
//! the run's settings, adapter configuration and a fingerprint of the training data: resuming
//! takes all of them from the checkpoint and refuses settings or data that contradict it.
//!
//! An example that cannot be used (it does not render, tokenise or fit, or generation fails on
//! it) is skipped, listed in the run folder's `skipped.jsonl` and counted in TensorBoard and
//! the outcome; the run fails only when more than [`RunConfig::max_bad_examples`] are.

use std::path::Path;

use serde::{Deserialize, Serialize};

mod ranks;

use super::config::{lora_resume_conflicts, RunConfig};
use super::distributed::{shard, test_hooks, Collective};
use super::evaluate::{evaluate, evaluate_sharded, EvalReport};
use super::example_log::{ExampleLog, Phase, SkippedExample, TruncatedExample};
use super::examples::{Example, ExampleEncoder};
use super::log_window::LossWindow;
use super::order::epoch_order;
use super::run_state::{checkpoint_dir, fingerprint, rotate, Cursor, SavedRun};
use super::trainer::Trainer;
use super::TrainError;
use crate::lora::LoraConfig;
use crate::model::{Batch, CacheKind, DeepseekOcr};
use crate::rng::Rng;
use crate::track::{Saved, Tracker};

/// The file listing a run's skipped examples.
pub const SKIPPED_FILE: &str = "skipped.jsonl";

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
    /// Examples skipped (also in `skipped.jsonl`) and examples shown in part.
    #[serde(default)]
    pub examples: ExampleLog,
}

/// A run in progress.
struct Session<'a> {
    model: &'a DeepseekOcr,
    enc: &'a ExampleEncoder,
    train: &'a [Example],
    eval_set: &'a [Example],
    cfg: &'a RunConfig,
    out: &'a Path,
    tracker: &'a mut dyn Tracker,
    log: &'a mut dyn FnMut(&str),
    trainer: Trainer,
    lora: LoraConfig,
    cursor: Cursor,
    best: Option<(u64, f64)>,
    since_best: usize,
    outcome: RunOutcome,
    data: String,
    bad_limit: usize,
    window: LossWindow,
    /// The data-parallel group (`None`: one process).
    group: Option<&'a dyn Collective>,
    /// `DEEPSYNTH_TEST_DIE_AT_STEP` (test-only).
    die: Option<(usize, u64)>,
}

/// Runs (or, with `resume`, continues) a fine-tuning run writing into `out`.
///
/// On resume, `cfg` and `lora_cfg` must agree with the checkpoint's (see
/// [`checkpoint_run_config`](super::checkpoint_run_config)) in everything but evaluation, rotation and cache settings, and
/// the training examples must be the ones it was trained on; a contradiction is an error
/// naming both values.
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
    run_with(
        model, lora_cfg, enc, train, held_out, cfg, out, tracker, resume, log, None,
    )
}

/// [`run`] as one rank of a data-parallel group (`cfg.world_size` must be the group's size):
/// each epoch's order is the same on every rank, each rank reads its [`shard`] of it, every
/// step is [`Trainer::step_distributed`], evaluation is [`evaluate_sharded`], and only rank 0
/// writes checkpoints, `best/` and `skipped.jsonl` (give the other ranks a tracker that writes
/// nothing). Each rank draws LoRA dropout masks from its own generator, and checkpoints keep
/// every rank's (see `ranks.rs` beside this file). A checkpoint resumes with any world size
/// that keeps `grad_accum x world_size`.
#[allow(clippy::too_many_arguments)]
pub fn run_distributed(
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
    group: &dyn Collective,
) -> Result<RunOutcome, TrainError> {
    if cfg.world_size != group.world_size() {
        return Err(TrainError::Config(format!(
            "the run is set up for world_size {} but the group has {} ranks",
            cfg.world_size,
            group.world_size()
        )));
    }
    run_with(
        model,
        lora_cfg,
        enc,
        train,
        held_out,
        cfg,
        out,
        tracker,
        resume,
        log,
        Some(group),
    )
}

#[allow(clippy::too_many_arguments)]
fn run_with(
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
    group: Option<&dyn Collective>,
) -> Result<RunOutcome, TrainError> {
    if group.is_none() && cfg.world_size != 1 {
        return Err(TrainError::Config(format!(
            "world_size {} needs a data-parallel group (run_distributed)",
            cfg.world_size
        )));
    }
    if train.is_empty() {
        return Err(TrainError::Config("no training examples".into()));
    }
    cfg.validate()?;
    crate::fsutil::create_dir_all(out).map_err(|e| TrainError::Checkpoint {
        path: out.into(),
        reason: e.to_string(),
    })?;
    // LoRA adapters live in the decoder only, so the vision tower's output per page is fixed
    // for the whole run: serve it from the encoder's cache (one budget for pages and
    // features), then put back what the model had.
    let before = model.feature_cache();
    let budget = enc.cache().budget();
    enc.cache().set_budget(cfg.cache_mib << 20);
    model.set_feature_cache((cfg.cache_mib > 0).then(|| enc.cache().clone()));
    let result = Session::start(
        model, lora_cfg, enc, train, held_out, cfg, out, tracker, resume, log, group,
    )
    .and_then(Session::train);
    model.set_feature_cache(before);
    enc.cache().set_budget(budget);
    result
}

impl<'a> Session<'a> {
    /// A fresh run, or one positioned where the checkpoint `resume` left it.
    #[allow(clippy::too_many_arguments)]
    fn start(
        model: &'a mut DeepseekOcr,
        lora_cfg: &LoraConfig,
        enc: &'a ExampleEncoder,
        train: &'a [Example],
        held_out: &'a [Example],
        cfg: &'a RunConfig,
        out: &'a Path,
        tracker: &'a mut dyn Tracker,
        resume: Option<&Path>,
        log: &'a mut dyn FnMut(&str),
        group: Option<&'a dyn Collective>,
    ) -> Result<Self, TrainError> {
        let data = fingerprint(train);
        let eval_set = &held_out[..held_out.len().min(cfg.max_eval_examples)];
        let bad_limit = cfg.max_bad_examples.limit(train.len() + eval_set.len());
        let (trainer, lora, saved) = match resume {
            Some(dir) => {
                let (t, lora, extra) = Trainer::resume(model, dir)?;
                let saved: SavedRun =
                    serde_json::from_value(extra).map_err(|e| TrainError::Checkpoint {
                        path: dir.into(),
                        reason: format!("run state: {e}"),
                    })?;
                let mut conflicts = cfg.resume_conflicts(&saved.run);
                conflicts.extend(lora_resume_conflicts(lora_cfg, &lora));
                if saved.data.as_ref().is_some_and(|d| *d != data) {
                    conflicts.push(format!(
                        "training data: {} examples with SHA-256 {} (given) vs SHA-256 {} \
                         (checkpoint)",
                        train.len(),
                        &data[..16],
                        &saved.data.as_deref().unwrap_or_default()[..16]
                    ));
                }
                if !conflicts.is_empty() {
                    return Err(TrainError::Checkpoint {
                        path: dir.into(),
                        reason: format!(
                            "cannot resume with settings that contradict the checkpoint: {}",
                            conflicts.join("; ")
                        ),
                    });
                }
                log(&format!(
                    "resumed from {} at step {}",
                    dir.display(),
                    t.step_count()
                ));
                (t, lora, Some(saved))
            }
            None => (
                Trainer::new(model, cfg.train.clone())?,
                lora_cfg.clone(),
                None,
            ),
        };
        let model: &'a DeepseekOcr = model;
        let mut s = Self {
            model,
            enc,
            train,
            eval_set,
            cfg,
            out,
            tracker,
            log,
            trainer,
            lora,
            cursor: Cursor::default(),
            best: None,
            since_best: 0,
            outcome: RunOutcome {
                steps: 0,
                evals: vec![],
                train_losses: vec![],
                best: None,
                stopped_early: false,
                skipped: 0,
                examples: ExampleLog::default(),
            },
            data,
            bad_limit,
            window: LossWindow::default(),
            group,
            die: test_hooks::die_at_step()?,
        };
        s.seed_dropout(saved.as_ref());
        match saved {
            Some(saved) => {
                s.cursor = saved
                    .cursor
                    .rescaled(cfg.batch_size, saved.run.world_size, cfg.world_size)
                    .ok_or_else(|| TrainError::Checkpoint {
                        path: resume.expect("resuming").into(),
                        reason: format!(
                            "its position ({} micro-batches of {} examples on each of {} \
                             ranks into epoch {}) is not a whole number of micro-batches \
                             for {} ranks",
                            saved.cursor.batch,
                            cfg.batch_size,
                            saved.run.world_size,
                            saved.cursor.epoch,
                            cfg.world_size
                        ),
                    })?;
                s.best = saved.best;
                s.since_best = saved.since_best;
                s.window = saved.window;
                s.outcome = saved.outcome;
                s.outcome.examples.reindex();
            }
            None => s.preview_pages()?,
        }
        Ok(s)
    }

    /// This rank (0 for one process).
    fn rank(&self) -> usize {
        self.group.map_or(0, |g| g.rank())
    }

    /// Whether this process writes the run's files (rank 0).
    fn leader(&self) -> bool {
        self.rank() == 0
    }

    /// What the model reads, in TensorBoard's Images tab (the first two held-out pages).
    fn preview_pages(&mut self) -> Result<(), TrainError> {
        for (i, ex) in self.eval_set.iter().take(2).enumerate() {
            match self.enc.page_png(ex) {
                Ok((png, w, h, c)) => {
                    self.tracker
                        .image(&format!("pages/held_out_{i}"), 0, &png, w, h, c)?
                }
                // The evaluation lists it as skipped.
                Err(e) if e.example_reason().is_some() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Lists a skipped example (once), and fails the run past the limit.
    fn skip(&mut self, s: SkippedExample) -> Result<(), TrainError> {
        let phase = s.phase;
        let line = format!(
            "skipped {} example `{}` (#{}): {}",
            match phase {
                Phase::Train => "training",
                Phase::Eval => "held-out",
            },
            s.id,
            s.index,
            s.reason
        );
        if !self.outcome.examples.skip(s) {
            return Ok(());
        }
        (self.log)(&line);
        let count = self.outcome.examples.skipped.len();
        let tag = match phase {
            Phase::Train => "train/skipped_examples",
            Phase::Eval => "eval/skipped_examples",
        };
        let step = self.trainer.step_count();
        self.tracker
            .scalar(tag, step, self.outcome.examples.skipped_in(phase) as f64)?;
        self.record_skipped(true, count)
    }

    /// Rewrites `skipped.jsonl` (rank 0, when `changed`) and fails once more than the allowed
    /// number of examples (`count` so far) were skipped.
    fn record_skipped(&self, changed: bool, count: usize) -> Result<(), TrainError> {
        if changed && self.leader() {
            self.outcome
                .examples
                .write_skipped(&self.out.join(SKIPPED_FILE))?;
        }
        if count > self.bad_limit {
            return Err(TrainError::TooManyBadExamples {
                count,
                limit: self.bad_limit,
                list: self.out.join(SKIPPED_FILE),
            });
        }
        Ok(())
    }

    /// The micro-batch of the examples at `chosen` (training indices); examples that cannot
    /// be prepared are skipped. `None` when none could.
    fn micro_batch(&mut self, chosen: &[usize]) -> Result<Option<Batch>, TrainError> {
        let max_positions = self.model.config().decoder.max_position_embeddings;
        let limit = self.cfg.max_seq_length.min(max_positions);
        let mut prepared = Vec::with_capacity(chosen.len());
        for &i in chosen {
            let ex = &self.train[i];
            let result = self.enc.training(ex).and_then(|(p, page)| {
                if p.len() > limit {
                    return Err(TrainError::Example {
                        id: ex.id.clone(),
                        reason: format!(
                            "the prompt and summary take {} positions, more than the limit of \
                             {limit} (max_seq_length {}, the model's max_position_embeddings \
                             {max_positions})",
                            p.len(),
                            self.cfg.max_seq_length
                        ),
                    });
                }
                Ok((p, page, self.enc.shown(ex)?))
            });
            match result {
                Ok((p, page, shown)) => {
                    if shown.truncated_chars > 0 {
                        self.outcome.examples.truncate(TruncatedExample {
                            phase: Phase::Train,
                            index: i,
                            id: ex.id.clone(),
                            shown,
                        });
                    }
                    prepared.push((p, page));
                }
                Err(e) => match e.example_reason() {
                    Some(reason) => self.skip(SkippedExample {
                        phase: Phase::Train,
                        index: i,
                        id: ex.id.clone(),
                        reason: reason.to_string(),
                        step: self.trainer.step_count(),
                    })?,
                    None => return Err(e),
                },
            }
        }
        if prepared.is_empty() {
            return Ok(None);
        }
        self.enc.collate(prepared).map(Some)
    }

    /// The epochs, the last evaluation and the run's summary.
    fn train(mut self) -> Result<RunOutcome, TrainError> {
        // The ranks step together over the longest shard's micro-batches; a shorter shard's
        // last micro-batch is empty (the rank adds zeros to the step's all-reduce).
        let per_rank = self.train.len().div_ceil(self.cfg.world_size);
        let per_epoch = per_rank.div_ceil(self.cfg.batch_size);
        'epochs: while self.cursor.epoch < self.cfg.epochs {
            let mut order = epoch_order(self.train.len(), self.cfg.train.seed, self.cursor.epoch);
            if let Some(g) = self.group {
                order = shard(&order, g.world_size(), g.rank());
            }
            while self.cursor.batch < per_epoch {
                let mut micro = Vec::with_capacity(self.cfg.train.grad_accum);
                for _ in 0..self.cfg.train.grad_accum {
                    if self.cursor.batch >= per_epoch {
                        break;
                    }
                    let start = (self.cursor.batch * self.cfg.batch_size).min(order.len());
                    let end = (start + self.cfg.batch_size).min(order.len());
                    self.cursor.batch += 1;
                    if let Some(b) = self.micro_batch(&order[start..end])? {
                        micro.push(b);
                    }
                }
                // A rank without a usable micro-batch still joins the step's all-reduce.
                if micro.is_empty() && self.group.is_none() {
                    continue;
                }
                let Some(step) = self.step(&micro)? else {
                    continue;
                };
                if self.cursor.batch >= per_epoch && self.cursor.epoch + 1 >= self.cfg.epochs {
                    // The run's last step: log it before it is evaluated and checkpointed.
                    self.log_pending()?;
                }
                let evaluates = self.cfg.eval_every > 0 && step % self.cfg.eval_every == 0;
                if evaluates || self.cfg.saves_at(step) {
                    let cursor = if self.cursor.batch >= per_epoch {
                        Cursor {
                            epoch: self.cursor.epoch + 1,
                            batch: 0,
                        }
                    } else {
                        self.cursor
                    };
                    let stop = evaluates && self.evaluate(cursor)?;
                    // Set before the checkpoint, which records how the run ended.
                    self.outcome.stopped_early = stop;
                    if stop || self.cfg.saves_at(step) {
                        self.save(cursor)?;
                    }
                    if stop {
                        (self.log)(&format!("early stopping at step {step}"));
                        break 'epochs;
                    }
                }
            }
            self.cursor = Cursor {
                epoch: self.cursor.epoch + 1,
                batch: 0,
            };
        }
        let steps = self.trainer.step_count();
        if !self.outcome.stopped_early {
            self.log_pending()?;
            let last_evaluated = self.outcome.evals.last().map(|e| e.step) == Some(steps);
            if !last_evaluated {
                self.evaluate(self.cursor)?;
            }
            if !last_evaluated || !self.cfg.saves_at(steps) {
                self.save(self.cursor)?;
            }
        }
        self.finish()
    }

    /// One optimiser step over `micro`, tracked and logged every `logging_steps`; returns
    /// the step number (`None` when no rank had a micro-batch).
    fn step(&mut self, micro: &[Batch]) -> Result<Option<u64>, TrainError> {
        let next = self.trainer.step_count() + 1;
        test_hooks::maybe_die(self.die, self.rank(), next);
        let r = match self.group {
            None => self.trainer.step(self.model, micro)?,
            Some(g) => match self.trainer.step_distributed(self.model, micro, g) {
                Err(TrainError::AllSkipped { batches: 0, .. }) => return Ok(None),
                r => r?,
            },
        };
        self.outcome.train_losses.push((r.step, r.loss));
        let logged = self
            .window
            .push(r.step, r.loss, r.lr, r.grad_norm, self.cfg.logging_steps);
        if let Some(p) = logged {
            self.log_point(p, r.skipped)?;
        }
        Ok(Some(r.step))
    }

    /// Tracks and prints the steps not logged yet (the run's last ones).
    fn log_pending(&mut self) -> Result<(), TrainError> {
        match self.window.flush() {
            Some(p) => self.log_point(p, 0),
            None => Ok(()),
        }
    }

    fn log_point(
        &mut self,
        p: super::log_window::LoggedStep,
        skipped: usize,
    ) -> Result<(), TrainError> {
        self.tracker.scalar("train/loss", p.step, p.loss)?;
        self.tracker.scalar("train/lr", p.step, p.lr)?;
        self.tracker
            .scalar("train/grad_norm", p.step, p.grad_norm)?;
        (self.log)(&format!(
            "step {} epoch {} loss {:.4}{} lr {:.3e} grad_norm {:.3}{}",
            p.step,
            self.cursor.epoch,
            p.loss,
            if p.steps > 1 {
                format!(" (mean of {} steps)", p.steps)
            } else {
                String::new()
            },
            p.lr,
            p.grad_norm,
            if skipped > 0 {
                format!(" ({skipped} skipped)")
            } else {
                String::new()
            }
        ));
        Ok(())
    }

    /// Evaluates on the held-out examples, tracks and logs the metrics, updates the best value
    /// and writes `best/` (positioned at `cursor`) when it improved. True when early stopping
    /// says stop.
    fn evaluate(&mut self, cursor: Cursor) -> Result<bool, TrainError> {
        let step = self.trainer.step_count();
        let mut stop = false;
        if !self.eval_set.is_empty() {
            let (model, enc, set, g) = (self.model, self.enc, self.eval_set, &self.cfg.generation);
            let mut rep = match self.group {
                Some(group) => evaluate_sharded(model, enc, set, g, group)?,
                None => evaluate(model, enc, set, g)?,
            };
            rep.step = step;
            for s in std::mem::take(&mut rep.skipped) {
                self.skip(SkippedExample { step, ..s.clone() })?;
                rep.skipped.push(SkippedExample { step, ..s });
            }
            for t in &rep.truncated {
                self.outcome.examples.truncate(t.clone());
            }
            for (k, v) in &rep.metrics {
                self.tracker.scalar(&format!("eval/{k}"), step, *v)?;
            }
            (self.log)(&format!(
                "eval step {step}: {}",
                rep.metrics
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let watch = self.cfg.watched();
            match rep.metrics.get(&watch.metric) {
                Some(&v) => {
                    let better = match self.best {
                        None => true,
                        Some((_, b)) if watch.higher_is_better => v > b,
                        Some((_, b)) => v < b,
                    };
                    if better {
                        self.best = Some((step, v));
                        self.since_best = 0;
                        self.outcome.best = self.best;
                    } else {
                        self.since_best += 1;
                        stop =
                            self.cfg.early_stopping.is_some() && self.since_best >= watch.patience;
                    }
                }
                None => (self.log)(&format!(
                    "eval step {step}: no `{}` to compare (every held-out example was \
                     skipped)",
                    watch.metric
                )),
            }
            self.outcome.evals.push(rep);
        }
        self.outcome.steps = step;
        self.outcome.skipped = self.trainer.skipped();
        if self.outcome.best.map(|(s, _)| s) == Some(step) {
            // Every rank is here (the metrics are the same on every rank).
            let rngs = self.dropout_generators()?;
            if !self.leader() {
                return Ok(stop);
            }
            let extra = self.state(cursor, rngs);
            let best = self.out.join("best");
            self.trainer.save(self.model, &self.lora, &best, extra)?;
            self.tracker.saved(Saved::Best { dir: &best, step })?;
        }
        Ok(stop)
    }

    /// The run's state for a checkpoint positioned at `cursor`, with every rank's dropout
    /// generator `rngs` ([`Self::dropout_generators`]).
    fn state(&self, cursor: Cursor, dropout_rngs: Vec<Rng>) -> serde_json::Value {
        let saved = SavedRun {
            cursor,
            best: self.best,
            since_best: self.since_best,
            outcome: self.outcome.clone(),
            run: self.cfg.clone(),
            data: Some(self.data.clone()),
            window: self.window,
            dropout_rngs,
        };
        serde_json::to_value(&saved).expect("run state serialises")
    }

    /// Writes `checkpoint-<step>` positioned at `cursor` and rotates old ones.
    fn save(&mut self, cursor: Cursor) -> Result<(), TrainError> {
        self.merge_example_logs()?;
        let step = self.trainer.step_count();
        self.outcome.steps = step;
        self.outcome.skipped = self.trainer.skipped();
        let rngs = self.dropout_generators()?;
        if !self.leader() {
            return Ok(());
        }
        let extra = self.state(cursor, rngs);
        let dir = checkpoint_dir(self.out, step);
        self.trainer.save(self.model, &self.lora, &dir, extra)?;
        rotate(self.out, self.cfg.keep_last);
        self.tracker.saved(Saved::Checkpoint { dir: &dir, step })?;
        Ok(())
    }

    /// The outcome, with the cache's counters logged and the tracker closed.
    fn finish(mut self) -> Result<RunOutcome, TrainError> {
        self.merge_example_logs()?;
        self.outcome.steps = self.trainer.step_count();
        self.outcome.skipped = self.trainer.skipped();
        if self.cfg.cache_mib > 0 {
            let c = self.enc.cache();
            let (p, f) = (c.stats(CacheKind::Page), c.stats(CacheKind::Features));
            (self.log)(&format!(
                "cache: {} pages rendered, {} reused; page features: {} encoded, {} reused; \
                 {} evicted, {:.1} MiB held",
                p.misses,
                p.hits,
                f.misses,
                f.hits,
                p.evictions + f.evictions,
                c.bytes() as f64 / 1048576.0
            ));
        }
        let ex = &self.outcome.examples;
        if !ex.skipped.is_empty() || !ex.truncated.is_empty() {
            (self.log)(&format!(
                "examples: {} skipped (listed in {}), {} shown in part on their page",
                ex.skipped.len(),
                self.out.join(SKIPPED_FILE).display(),
                ex.truncated.len()
            ));
        }
        self.tracker.finish()?;
        Ok(self.outcome)
    }
}
