//! Hugging Face's `logging_steps`, `save_steps` and `metric_for_best_model` in whole runs on the
//! tiny fixture: the logged training loss is the mean of the per-step losses since the last
//! log (hand-computed from the outcome's per-step losses), checkpoints follow `save_every`
//! independently of evaluations, a resumed run logs what the uninterrupted one logged, and
//! `best/` follows the chosen metric and direction without early stopping.

#[path = "common/tiny.rs"]
mod tiny;

use std::path::Path;

use deepsynth::lora::LoraConfig;
use deepsynth::track::Runs;
use deepsynth::train::{EarlyStopping, RunConfig, RunOutcome};
use tiny::{encoder, examples, model};

fn run_into(cfg: &RunConfig, out: &Path, resume: Option<&Path>) -> RunOutcome {
    let (train, held) = examples();
    let (o, lines) = tiny::try_run(
        &mut model(),
        &encoder(),
        &train,
        &held,
        cfg,
        &LoraConfig::new(4, 8.0),
        out,
        resume,
    );
    o.unwrap_or_else(|e| panic!("{e}\n{}", lines.join("\n")))
}

/// `(step, value)` of `tag` in the run folder's metrics.jsonl.
fn logged(out: &Path, tag: &str) -> Vec<(u64, f64)> {
    Runs::records(out)
        .unwrap()
        .into_iter()
        .filter(|(run, r)| run == "." && r.tag == tag)
        .map(|(_, r)| (r.step, r.value))
        .collect()
}

fn dirs(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn logging_and_save_steps_are_independent_of_evaluation_and_survive_resume() {
    let tmp = tempfile::tempdir().unwrap();
    // 4 epochs x 2 micro-batches = 8 steps; evaluation every 2, checkpoints every 3 (and the
    // last step), the loss logged every 4.
    let mut cfg = tiny::run_config(8, 4);
    cfg.logging_steps = 4;
    cfg.save_every = Some(3);
    cfg.keep_last = 10;
    let out = tmp.path().join("run");
    let o = run_into(&cfg, &out, None);
    assert_eq!(o.steps, 8);
    assert_eq!(
        o.evals.iter().map(|e| e.step).collect::<Vec<_>>(),
        [2, 4, 6, 8]
    );
    assert_eq!(
        dirs(&out),
        [
            "best",
            "checkpoint-000003",
            "checkpoint-000006",
            "checkpoint-000008"
        ]
    );
    let losses: Vec<f64> = o.train_losses.iter().map(|p| p.1).collect();
    assert_eq!(losses.len(), 8);
    let mean = |r: std::ops::Range<usize>| losses[r.clone()].iter().sum::<f64>() / r.len() as f64;
    let want = [(4, mean(0..4)), (8, mean(4..8))];
    let got = logged(&out, "train/loss");
    assert_eq!(got.len(), 2, "{got:?}");
    for ((gs, gv), (ws, wv)) in got.iter().zip(want) {
        assert_eq!(*gs, ws);
        assert!((gv - wv).abs() < 1e-12, "step {ws}: {gv} vs {wv}");
    }
    assert_eq!(
        logged(&out, "train/lr")
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        [4, 8]
    );

    // Resumed from step 6 (steps 5-6 logged nowhere yet): step 8 logs the same mean of 5-8.
    let out2 = tmp.path().join("resumed");
    let o2 = run_into(&cfg, &out2, Some(&out.join("checkpoint-000006")));
    assert_eq!(o2.train_losses, o.train_losses);
    let got2 = logged(&out2, "train/loss");
    assert_eq!(got2.len(), 1, "{got2:?}");
    assert_eq!(got2[0].0, 8);
    assert!((got2[0].1 - want[1].1).abs() < 1e-12, "{got2:?}");
}

#[test]
fn best_model_follows_the_chosen_metric_without_early_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = tiny::run_config(6, 3);
    // Without a best metric, best/ is the lowest held-out loss; training lowers it, so that is
    // a late evaluation. Watching the loss as if higher were better picks the first one, and
    // the run still takes all its steps (no early stopping).
    let plain = run_into(&cfg, &tmp.path().join("plain"), None);
    let losses: Vec<f64> = plain.evals.iter().map(|e| e.metrics["loss"]).collect();
    let lowest = plain.evals[losses
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0]
        .step;
    assert_eq!(plain.best.map(|b| b.0), Some(lowest));
    assert_ne!(lowest, 2, "{losses:?}");

    let mut watched = EarlyStopping::on("loss", 1).unwrap();
    watched.higher_is_better = true;
    cfg.best_metric = Some(watched);
    let out = tmp.path().join("inverted");
    let o = run_into(&cfg, &out, None);
    assert!(!o.stopped_early);
    assert_eq!(o.steps, 6);
    assert_eq!(o.best.map(|b| b.0), Some(2));
    assert_eq!(o.best.map(|b| b.1), Some(o.evals[0].metrics["loss"]));
    assert!(out.join("best").join("adapter_model.safetensors").is_file());

    // A resumed run may not change which metric picks best/.
    let mut other = cfg.clone();
    other.best_metric = None;
    let (train, held) = examples();
    let (r, _) = tiny::try_run(
        &mut model(),
        &encoder(),
        &train,
        &held,
        &other,
        &LoraConfig::new(4, 8.0),
        &tmp.path().join("refused"),
        Some(&out.join("checkpoint-000004")),
    );
    let e = r.unwrap_err().to_string();
    assert!(e.contains("metric for best model"), "{e}");
}
