//! The optimisation loop: gradient accumulation over micro-batches, non-finite losses skipped
//! and counted, gradient clipping, AdamW on the LoRA parameters only, the schedule, and
//! checkpoints that resume bit for bit.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::checkpoint;
use super::config::TrainConfig;
use super::distributed::{all_reduce_grads, Collective};
use super::optim::{clip_grad_norm, named_grads, AdamW};
use super::TrainError;
use crate::lora::{self, LoraConfig};
use crate::model::{Batch, DeepseekOcr, ForwardOptions};

/// What one optimiser step did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Optimiser steps done after this one.
    pub step: u64,
    /// Mean cross-entropy of the micro-batches that counted.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Scored tokens.
    pub tokens: usize,
    /// Micro-batches skipped for a non-finite loss in this step.
    pub skipped: usize,
}

/// The summed gradients of one step's micro-batches (on one rank, or over a group).
#[derive(Default)]
pub(crate) struct Accumulated {
    /// Each parameter's gradient summed over the counted micro-batches.
    pub sum: HashMap<String, Tensor>,
    /// Micro-batches with a finite loss.
    pub counted: usize,
    /// Their losses, summed in order.
    pub loss_sum: f64,
    /// Their scored tokens.
    pub tokens: usize,
    /// Micro-batches skipped for a non-finite loss.
    pub skipped: usize,
}

/// The trainer of one run.
pub struct Trainer {
    cfg: TrainConfig,
    opt: AdamW,
    skipped_total: u64,
}

impl Trainer {
    /// A trainer over the LoRA variables attached to `model`; seeds LoRA dropout.
    pub fn new(model: &DeepseekOcr, cfg: TrainConfig) -> Result<Self, TrainError> {
        let params = lora::trainable_vars(model);
        if params.is_empty() {
            return Err(TrainError::Config(
                "no LoRA adapter is attached: call lora::apply_lora first".into(),
            ));
        }
        Self::with_params(params, cfg)
    }

    /// A trainer over `params` (e.g. a model's own weights for training from scratch, from
    /// [`crate::weights::Weights::with_trainable`]); checkpoints ([`Self::save`]) are for
    /// adapters only.
    pub fn with_params(params: Vec<(String, Var)>, cfg: TrainConfig) -> Result<Self, TrainError> {
        if params.is_empty() {
            return Err(TrainError::Config("no trainable parameters".into()));
        }
        if cfg.grad_accum == 0 || cfg.total_steps == 0 || cfg.lr.is_nan() || cfg.lr <= 0.0 {
            return Err(TrainError::Config(format!(
                "grad_accum ({}) and total_steps ({}) must be >= 1 and lr ({}) > 0",
                cfg.grad_accum, cfg.total_steps, cfg.lr
            )));
        }
        lora::set_dropout_seed(cfg.seed);
        Ok(Self {
            opt: AdamW::new(params, cfg.adamw)?,
            cfg,
            skipped_total: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Optimiser steps taken.
    pub fn step_count(&self) -> u64 {
        self.opt.steps()
    }

    /// Micro-batches skipped so far for non-finite losses.
    pub fn skipped(&self) -> u64 {
        self.skipped_total
    }

    /// One optimiser step over `micro` (the accumulation group): the gradients of the
    /// micro-batches with a finite loss are averaged, clipped and applied. A micro-batch whose
    /// loss is NaN or infinite is skipped (counted, logged); if all are, nothing is updated and
    /// the step fails.
    pub fn step(&mut self, model: &DeepseekOcr, micro: &[Batch]) -> Result<StepReport, TrainError> {
        let acc = self.accumulate(model, micro)?;
        self.apply(acc, micro.len())
    }

    /// [`Self::step`] as one rank of a data-parallel group: this rank's micro-batches, then
    /// one all-reduce of the summed gradients, so that the update is the mean over every
    /// counted micro-batch of every rank (PyTorch DDP with gradient accumulation) and the same
    /// on every rank. The report's loss, tokens and skips are the group's. One rank with two
    /// micro-batches and two ranks with one each give the same update (bit for bit). A rank
    /// may bring no micro-batch; when no rank does, the error is [`TrainError::AllSkipped`]
    /// with `batches` 0 and nothing changes.
    pub fn step_distributed(
        &mut self,
        model: &DeepseekOcr,
        micro: &[Batch],
        group: &dyn Collective,
    ) -> Result<StepReport, TrainError> {
        let acc = self.accumulate(model, micro)?;
        let acc = all_reduce_grads(acc, self.opt.params(), group)?;
        let batches = acc.counted + acc.skipped;
        self.apply(acc, batches)
    }

    /// The summed gradients and losses of `micro` on this rank.
    fn accumulate(&self, model: &DeepseekOcr, micro: &[Batch]) -> Result<Accumulated, TrainError> {
        let opts = ForwardOptions {
            train: true,
            scored_only: true,
            checkpoint: self.cfg.gradient_checkpointing,
            ..Default::default()
        };
        let params = self.opt.params();
        let mut acc = Accumulated::default();
        for (i, b) in micro.iter().enumerate() {
            let out = model.forward(b, opts)?;
            let Some(loss) = &out.loss else {
                return Err(TrainError::Config("training batch without labels".into()));
            };
            let value: f32 = loss.to_scalar()?;
            if !value.is_finite() || out.loss_tokens == 0 {
                acc.skipped += 1;
                eprintln!(
                    "deepsynth: step {}: micro-batch {i} skipped ({} loss over {} tokens)",
                    self.opt.steps() + 1,
                    value,
                    out.loss_tokens
                );
                continue;
            }
            let objective = out.training_objective().expect("loss present")?;
            let mut grads = objective.backward()?;
            // Checkpointed layers hand their parameters' gradients over separately.
            grads.extend(crate::model::decoder::checkpoint::take_grads())?;
            for (name, g) in named_grads(&grads, params) {
                let e = acc.sum.remove(&name);
                acc.sum.insert(
                    name,
                    match e {
                        Some(sum) => (sum + g)?,
                        None => g,
                    },
                );
            }
            acc.counted += 1;
            acc.loss_sum += value as f64;
            acc.tokens += out.loss_tokens;
        }
        Ok(acc)
    }

    /// Averages `acc` over its counted micro-batches, clips and takes the AdamW step;
    /// `batches` is the number of micro-batches the step was given (for the error).
    fn apply(&mut self, mut acc: Accumulated, batches: usize) -> Result<StepReport, TrainError> {
        self.skipped_total += acc.skipped as u64;
        if acc.counted == 0 {
            return Err(TrainError::AllSkipped {
                step: self.opt.steps() + 1,
                batches,
            });
        }
        let n = acc.counted as f64;
        for g in acc.sum.values_mut() {
            *g = (&*g / n)?;
        }
        let grad_norm = if self.cfg.max_grad_norm > 0.0 {
            clip_grad_norm(&mut acc.sum, self.cfg.max_grad_norm)?
        } else {
            clip_grad_norm(&mut acc.sum, f64::INFINITY)?
        };
        if !grad_norm.is_finite() {
            return Err(TrainError::AllSkipped {
                step: self.opt.steps() + 1,
                batches,
            });
        }
        let lr = self.cfg.schedule().lr_at(self.opt.steps());
        self.opt.step(&acc.sum, lr)?;
        Ok(StepReport {
            step: self.opt.steps(),
            loss: acc.loss_sum / n,
            lr,
            grad_norm,
            tokens: acc.tokens,
            skipped: acc.skipped,
        })
    }

    /// Writes a checkpoint of the run into `dir` (atomic, verified): the PEFT adapter, the
    /// optimiser moments, the step, the dropout generator and the settings.
    pub fn save(
        &self,
        model: &DeepseekOcr,
        lora_cfg: &LoraConfig,
        dir: &Path,
        extra: serde_json::Value,
    ) -> Result<(), TrainError> {
        let (state, steps) = self.opt.state();
        let meta = checkpoint::State {
            step: steps,
            skipped: self.skipped_total,
            dropout_rng: lora::dropout_rng(),
            train: self.cfg.clone(),
            extra,
        };
        checkpoint::save(model, lora_cfg, &state, &meta, dir)
    }

    /// Loads a checkpoint onto `model` (its adapter replaces any attached one) and returns the
    /// trainer positioned after its last step, the LoRA config and the saved extra state.
    pub fn resume(
        model: &mut DeepseekOcr,
        dir: &Path,
    ) -> Result<(Self, LoraConfig, serde_json::Value), TrainError> {
        let (lora_cfg, tensors, meta) = checkpoint::load(model, dir)?;
        let mut t = Self::new(model, meta.train.clone())?;
        t.opt
            .load_state(&tensors, meta.step)
            .map_err(|reason| TrainError::Checkpoint {
                path: dir.to_path_buf(),
                reason,
            })?;
        t.skipped_total = meta.skipped;
        lora::set_dropout_rng(meta.dropout_rng);
        Ok((t, lora_cfg, meta.extra))
    }
}
