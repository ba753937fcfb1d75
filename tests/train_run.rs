//! Whole runs on the tiny fixture: evaluation every `eval_every` steps with generated summaries,
//! metrics in TensorBoard and `metrics.jsonl`, checkpoint rotation and `best/`, early stopping,
//! and a resumed run that continues the uninterrupted one exactly.

#[path = "common/tiny.rs"]
mod tiny;

use std::path::Path;

use deepsynth::lora::LoraConfig;
use deepsynth::model::DeepseekOcr;
use deepsynth::track::Runs;
use deepsynth::train::{EarlyStopping, Example, RunConfig, RunOutcome};
use tiny::{encoder, examples, model};

fn config(steps: u64) -> RunConfig {
    let mut c = tiny::run_config(steps, 3);
    c.keep_last = 2;
    c
}

fn checkpoints(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// One LoRA r=4 run of the tiny model into `out` (resumed from `resume` if given); returns the
/// outcome and the log lines.
fn run_tiny(
    m: &mut DeepseekOcr,
    (train, held): &(Vec<Example>, Vec<Example>),
    cfg: &RunConfig,
    out: &Path,
    resume: Option<&Path>,
) -> (RunOutcome, Vec<String>) {
    let (o, lines) = tiny::try_run(
        m,
        &encoder(),
        train,
        held,
        cfg,
        &LoraConfig::new(4, 8.0),
        out,
        resume,
    );
    (o.unwrap(), lines)
}

#[test]
fn run_evaluates_tracks_rotates_and_resumes_exactly() {
    let data = examples();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = config(6);
    let (o, lines) = run_tiny(&mut model(), &data, &cfg, &out, None);
    assert_eq!(o.steps, 6);
    assert_eq!(
        o.evals.iter().map(|e| e.step).collect::<Vec<_>>(),
        vec![2, 4, 6]
    );
    for e in &o.evals {
        for k in ["loss", "rouge1", "rouge2", "rougeL", "cer", "wer"] {
            assert!(e.metrics[k].is_finite(), "{k} at step {}", e.step);
        }
        assert_eq!(e.samples.len(), 1);
    }
    assert!(
        lines.iter().any(|l| l.starts_with("eval step 4:")),
        "{lines:?}"
    );
    // Two newest checkpoints plus best/.
    let dirs = checkpoints(&out);
    assert_eq!(dirs, vec!["best", "checkpoint-000004", "checkpoint-000006"]);
    // Metrics are in the run log (and TensorBoard files beside it).
    let recs = Runs::records(tmp.path()).unwrap();
    let count = |tag: &str| recs.iter().filter(|(_, r)| r.tag == tag).count();
    assert_eq!(count("train/loss"), 6);
    assert_eq!(count("eval/rougeL"), 3);
    // ... as a DataFrame, and, at the end of the run, in metrics.parquet with the same rows.
    #[cfg(feature = "frames")]
    {
        use polars::prelude::{ParquetReader, SerReader};
        let df = Runs::load(tmp.path()).unwrap();
        assert_eq!(df.height(), recs.len());
        let pq = ParquetReader::new(std::fs::File::open(out.join("metrics.parquet")).unwrap())
            .finish()
            .unwrap();
        assert_eq!(pq.height(), Runs::load(&out).unwrap().height());
        assert_eq!(pq.get_column_names(), df.get_column_names());
    }
    assert!(std::fs::read_dir(&out).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("events.out.tfevents")));

    // Resume from step 4 in a fresh model: steps 5-6 repeat the same losses.
    let out2 = tmp.path().join("resumed");
    let resume = out.join("checkpoint-000004");
    let (o2, _) = run_tiny(&mut model(), &data, &cfg, &out2, Some(&resume));
    assert_eq!(o2.steps, 6);
    assert_eq!(
        o2.train_losses, o.train_losses,
        "resumed losses (steps 1-4 from the checkpoint, 5-6 recomputed)"
    );
    assert_eq!(
        o2.evals.last().unwrap().metrics,
        o.evals.last().unwrap().metrics
    );
}

#[test]
fn early_stopping_ends_the_run() {
    let data = examples();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(6);
    // Watching the loss as if higher were better: training lowers it, so no evaluation after
    // the first improves and patience 1 stops the run at the second (step 4).
    cfg.early_stopping = Some(EarlyStopping {
        metric: "loss".into(),
        patience: 1,
        higher_is_better: true,
    });
    let (o, _) = run_tiny(&mut model(), &data, &cfg, tmp.path(), None);
    assert!(o.stopped_early);
    assert_eq!(o.steps, 4);
    assert_eq!(o.best.map(|b| b.0), Some(2));
    assert!(o.evals[1].metrics["loss"] < o.evals[0].metrics["loss"]);
}

#[test]
fn the_page_feature_cache_changes_no_number_and_skips_repeat_encodings() {
    let data = examples();
    let tmp = tempfile::tempdir().unwrap();
    let mut outcomes = Vec::new();
    let mut logs = Vec::new();
    for mib in [0, 64] {
        let mut cfg = config(6);
        cfg.cache_mib = mib;
        let out = tmp.path().join(format!("cache-{mib}"));
        let mut m = model();
        let (o, lines) = run_tiny(&mut m, &data, &cfg, &out, None);
        assert!(
            m.feature_cache().is_none(),
            "the run left its cache on the model"
        );
        outcomes.push(o);
        logs.push(lines);
    }
    assert_eq!(outcomes[0].train_losses, outcomes[1].train_losses);
    assert_eq!(outcomes[0].evals, outcomes[1].evals);
    assert!(!logs[0].iter().any(|l| l.starts_with("cache:")));
    let line = logs[1]
        .iter()
        .find(|l| l.starts_with("cache:"))
        .expect("cache summary line");
    // 3 epochs over the training pages and 4 evaluations of the held-out one: every page is
    // rendered and encoded once.
    let pages = data.0.len() + data.1.len();
    assert!(
        line.starts_with(&format!("cache: {pages} pages rendered,"))
            && line.contains(&format!("page features: {pages} encoded,")),
        "{line}"
    );
}
