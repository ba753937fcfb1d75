//! `deepsynth train --resume-from-checkpoint`: the checkpoint's settings, the options given
//! explicitly checked against them, and the gradient accumulation rescaled for another number
//! of ranks.

use deepsynth::lora::LoraConfig;
use deepsynth::train::{checkpoint_run_config, RunConfig};

use super::{apply_unpinned, lora_config, warmup_steps, TrainArgs, Usage};
use crate::common::Given;

/// On resume: the checkpoint's settings and adapter configuration, after checking that every
/// option given explicitly agrees with them. With another number of ranks than the
/// checkpoint's, the gradient accumulation keeps the micro-batches per step (and so the data
/// order): `grad_accum x world_size` stays.
pub(super) fn resumed_settings(
    args: &TrainArgs,
    given: Given,
    fresh: &RunConfig,
    dir: &std::path::Path,
) -> Result<(RunConfig, LoraConfig), Usage> {
    let (mut saved, lora) = checkpoint_run_config(dir)?;
    if saved.world_size != fresh.world_size {
        let micro = saved.train.grad_accum * saved.world_size;
        if micro % fresh.world_size != 0 {
            return Err(Usage(format!(
                "--resume-from-checkpoint {}: it takes {micro} micro-batches per step \
                 (gradient accumulation {} x {} ranks), which {} ranks cannot share evenly",
                dir.display(),
                saved.train.grad_accum,
                saved.world_size,
                fresh.world_size
            )));
        }
        saved.train.grad_accum = micro / fresh.world_size;
        saved.world_size = fresh.world_size;
    }
    let requested = lora_config(args);
    let t = (&fresh.train, &saved.train);
    let es = |c: &RunConfig| {
        let w = c.watched();
        let patience = c.early_stopping.as_ref().map_or(0, |e| e.patience);
        (w.metric, w.higher_is_better, patience)
    };
    let checks: Vec<(&str, &[&str], String, String)> = vec![
        (
            "--batch-size",
            &["batch_size", "memory_preset"],
            fresh.batch_size.to_string(),
            saved.batch_size.to_string(),
        ),
        (
            "--epochs",
            &["epochs"],
            fresh.epochs.to_string(),
            saved.epochs.to_string(),
        ),
        (
            "--gradient-accumulation-steps",
            &["gradient_accumulation_steps", "memory_preset"],
            t.0.grad_accum.to_string(),
            t.1.grad_accum.to_string(),
        ),
        (
            "--max-seq-length",
            &["max_seq_length", "context_multiplier"],
            fresh.max_seq_length.to_string(),
            saved.max_seq_length.to_string(),
        ),
        (
            "--seed",
            &["seed"],
            t.0.seed.to_string(),
            t.1.seed.to_string(),
        ),
        (
            "--learning-rate",
            &["learning_rate"],
            t.0.lr.to_string(),
            t.1.lr.to_string(),
        ),
        (
            "--lr-scheduler",
            &["lr_scheduler"],
            format!("{:?}", t.0.decay),
            format!("{:?}", t.1.decay),
        ),
        (
            "--warmup-ratio/--warmup-steps",
            &["warmup_ratio", "warmup_steps"],
            format!("{} warm-up steps", warmup_steps(args, t.1.total_steps)),
            format!("{} warm-up steps", t.1.warmup_steps),
        ),
        (
            "--max-grad-norm",
            &["max_grad_norm"],
            t.0.max_grad_norm.to_string(),
            t.1.max_grad_norm.to_string(),
        ),
        (
            "--weight-decay",
            &["weight_decay"],
            t.0.adamw.weight_decay.to_string(),
            t.1.adamw.weight_decay.to_string(),
        ),
        (
            "--early-stopping-metric/--early-stopping-patience/--greater-is-better",
            &[
                "early_stopping_metric",
                "early_stopping_patience",
                "greater_is_better",
            ],
            format!("{:?}", es(fresh)),
            format!("{:?}", es(&saved)),
        ),
        (
            "--lora-rank",
            &["lora_rank"],
            requested.r.to_string(),
            lora.r.to_string(),
        ),
        (
            "--lora-alpha",
            &["lora_alpha"],
            requested.lora_alpha.to_string(),
            lora.lora_alpha.to_string(),
        ),
        (
            "--lora-dropout",
            &["lora_dropout"],
            requested.lora_dropout.to_string(),
            lora.lora_dropout.to_string(),
        ),
        (
            "--lora-targets",
            &["lora_targets"],
            format!("{:?}", requested.target_modules),
            format!("{:?}", lora.target_modules),
        ),
    ];
    let mut conflicts = Vec::new();
    for (flag, ids, given_value, saved_value) in checks {
        if ids.iter().any(|id| given.has(id)) && given_value != saved_value {
            conflicts.push(format!(
                "{flag} gives {given_value}, the checkpoint has {saved_value}"
            ));
        }
    }
    if !conflicts.is_empty() {
        return Err(Usage(format!(
            "--resume-from-checkpoint {}: {} (leave these options out to continue with the \
             checkpoint's settings)",
            dir.display(),
            conflicts.join("; ")
        )));
    }
    apply_unpinned(args, &mut saved)?;
    Ok((saved, lora))
}
