//! `Runs::summaries` / `Runs::table` / `deepsynth runs` over a folder of tiny runs: a finished
//! run, one stopped early and one cut off after step 4, each row checked against the run's own
//! outcome (best values computed here from its evaluations).

#[path = "common/tiny.rs"]
mod tiny;

use std::path::Path;

use deepsynth::lora::LoraConfig;
use deepsynth::track::Runs;
use deepsynth::train::{EarlyStopping, RunConfig, RunOutcome};
use tiny::{encoder, examples, model};

fn run_into(cfg: &RunConfig, out: &Path) -> RunOutcome {
    let (train, held) = examples();
    let (o, _) = tiny::try_run(
        &mut model(),
        &encoder(),
        &train,
        &held,
        cfg,
        &LoraConfig::new(4, 8.0),
        out,
        None,
    );
    o.unwrap()
}

#[test]
fn one_row_per_run_with_status_best_values_and_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut cfg = tiny::run_config(6, 3);
    cfg.keep_last = 5;
    let done = run_into(&cfg, &root.join("a-done"));
    let mut stop = cfg.clone();
    stop.early_stopping = Some(EarlyStopping {
        metric: "loss".into(),
        patience: 1,
        higher_is_better: true,
    });
    let stopped = run_into(&stop, &root.join("b-stopped"));
    assert!(stopped.stopped_early);
    // A run cut off after its step-4 checkpoint: its metrics and checkpoints up to step 4.
    let cut = root.join("c-cut");
    run_into(&cfg, &cut);
    std::fs::remove_dir_all(cut.join("checkpoint-000006")).unwrap();
    let text = std::fs::read_to_string(cut.join("metrics.jsonl")).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64() <= Some(4)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(cut.join("metrics.jsonl"), kept).unwrap();

    let rows = Runs::summaries(root).unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r.run.as_str(), r.status.as_str(), r.steps))
            .collect::<Vec<_>>(),
        [
            ("a-done", "finished", 6),
            ("b-stopped", "stopped early", 4),
            ("c-cut", "incomplete", 4)
        ]
    );
    let a = &rows[0];
    let best = |o: &RunOutcome, k: &str, higher: bool| {
        let v = o.evals.iter().map(|e| e.metrics[k]);
        if higher {
            v.fold(f64::MIN, f64::max)
        } else {
            v.fold(f64::MAX, f64::min)
        }
    };
    assert_eq!(a.best_eval["loss"], best(&done, "loss", false));
    assert_eq!(a.best_eval["rougeL"], best(&done, "rougeL", true));
    assert_eq!(a.best_eval["cer"], best(&done, "cer", false));
    assert_eq!(a.best, done.best);
    assert_eq!(a.watched.as_deref(), Some("loss"));
    assert_eq!(rows[1].watched.as_deref(), Some("loss"));
    assert_eq!(rows[1].best, stopped.best);
    assert_eq!(
        (
            a.learning_rate,
            a.lora_r,
            a.lora_alpha,
            a.batch_size,
            a.grad_accum,
            a.epochs
        ),
        (Some(5e-3), Some(4), Some(8.0), Some(2), Some(1), Some(3))
    );
    assert_eq!(a.last_train_loss, done.train_losses.last().map(|p| p.1));
    assert!(a.wall_time_s >= 0.0);

    let (cols, cells) = Runs::summary_rows(&rows);
    assert_eq!(cells.len(), 3);
    assert!(cols.contains(&"best rougeL".to_string()), "{cols:?}");
    #[cfg(feature = "frames")]
    {
        let df = Runs::table(root).unwrap();
        assert_eq!(df.height(), 3);
        assert_eq!(df.width(), cols.len());
        let loss = df.column("best loss").unwrap().f64().unwrap().get(0);
        assert_eq!(loss, Some(a.best_eval["loss"]));
    }

    // The command line prints the same rows.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_deepsynth"))
        .args(["runs", "--format", "csv"])
        .arg(root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], cols.join(","));
    assert_eq!(lines[2], cells[1].join(","));
}
