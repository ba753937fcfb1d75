//! Weights & Biases reporting, read back with wandb's own protobuf records: `deepsynth train
//! --report-to tensorboard,wandb --wandb-live` with `WANDB_MODE=offline` writes offline W&B runs
//! (one per sync, one run id) that hold exactly `metrics.jsonl` (every step, tag and value, none
//! twice) and the run's settings as config; without wandb the run still finishes and prints the
//! command that sends it later, and that command (`deepsynth wandb-sync`) sends all of it.
//!
//! Needs a Python with wandb (DEEPSYNTH_WANDB=/path/to/python, as environment/setup-wandb.sh
//! prints); skipped with a printed reason without it.

#[path = "common/tiny_cli.rs"]
mod tiny_cli;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tiny_cli::{dataset, TINY_TRAIN};

fn wandb_python() -> Option<PathBuf> {
    let p = std::env::var_os("DEEPSYNTH_WANDB").map(PathBuf::from);
    if p.is_none() {
        eprintln!(
            "skipped: set DEEPSYNTH_WANDB to a Python with wandb (environment/setup-wandb.sh)"
        );
    }
    p
}

fn deepsynth(python: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepsynth"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("WANDB_MODE", "offline")
        .env("DEEPSYNTH_WANDB_PYTHON", python)
        .env_remove("WANDB_PROJECT")
        .env_remove("WANDB_ENTITY");
    c
}

/// `(step, tag, value)` of every line of `metrics.jsonl`, sorted.
fn jsonl(out: &Path) -> Vec<(u64, String, f64)> {
    let mut v: Vec<(u64, String, f64)> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let r: Value = serde_json::from_str(l).unwrap();
            (
                r["step"].as_u64().unwrap(),
                r["tag"].as_str().unwrap().to_string(),
                r["value"].as_f64().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    v
}

/// The offline W&B runs of `out` as tests/python/wandb_readback.py reads them, and their
/// history as sorted `(step, tag, value)`.
fn read_back(python: &Path, out: &Path) -> (Value, Vec<(u64, String, f64)>) {
    let o = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/wandb_readback.py"
        ))
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut h: Vec<(u64, String, f64)> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_u64().unwrap(),
                p[1].as_str().unwrap().to_string(),
                p[2].as_f64().unwrap(),
            )
        })
        .collect();
    h.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    (v, h)
}

#[test]
fn a_run_reaches_wandb_exactly_and_live() {
    let Some(python) = wandb_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("run");
    let o = deepsynth(&python)
        .args(TINY_TRAIN)
        .args([
            "--epochs",
            "3",
            "--eval-steps",
            "2",
            "--lora-rank",
            "4",
            "--eval-fraction",
            "0.2",
            "--report-to",
            "tensorboard,wandb",
            "--wandb-live",
            "--wandb_project",
            "ds-test",
            "--run-name",
            "tiny-run",
        ])
        .arg("--dataset")
        .arg(&data)
        .arg("--output-dir")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("offline run in"), "{stderr}");
    let (runs, history) = read_back(&python, &out);
    let want = jsonl(&out);
    // 6 steps x 3 training scalars and 3 evaluations x 9 metrics.
    assert_eq!(want.len(), 6 * 3 + 3 * 9);
    assert_eq!(history, want, "W&B history vs metrics.jsonl");
    let runs = runs["runs"].as_array().unwrap();
    // At least one live sync before the final one; every sync resumes the same run.
    assert!(runs.len() >= 2, "{runs:?}");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("wandb.json")).unwrap()).unwrap();
    for r in runs {
        assert_eq!(r["id"], state["id"]);
        assert_eq!(r["project"], "ds-test");
        assert_eq!(r["name"], "tiny-run");
        assert_eq!(r["config"]["lora"]["r"], 4, "{}", r["config"]);
        assert_eq!(r["config"]["run"]["epochs"], 3);
        assert_eq!(r["config"]["dataset"], data.display().to_string());
    }
    assert_eq!(state["synced_step"], 6);
}

#[test]
fn without_wandb_the_run_finishes_and_says_how_to_send_it_later() {
    let Some(python) = wandb_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("later");
    let o = deepsynth(Path::new("/nonexistent/python3"))
        .args(TINY_TRAIN)
        .args(["--epochs", "1", "--lora-rank", "4", "--use_wandb"])
        .arg("--dataset")
        .arg(&data)
        .arg("--output-dir")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("cannot import wandb"), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("wandb: not sent:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let cmd = line.split("send it later with: ").nth(1).unwrap();
    assert_eq!(
        cmd,
        format!(
            "deepsynth wandb-sync {} --wandb-project deepsynth",
            out.display()
        )
    );
    assert!(!out.join("wandb").exists());

    // The printed command, with wandb this time.
    let args: Vec<&str> = cmd.split(' ').skip(1).collect();
    let o = deepsynth(&python).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let (runs, history) = read_back(&python, &out);
    assert_eq!(history, jsonl(&out));
    let run = &runs["runs"][0];
    assert_eq!(run["name"], "later");
    assert_eq!(run["config"]["lora"]["r"], 4, "{run}");
    // Nothing new: a second sync sends no step.
    let o = deepsynth(&python).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("0 steps (0 values) sent"), "{stderr}");
}
