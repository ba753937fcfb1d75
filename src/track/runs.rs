//! One row per run of a folder ([`Runs::summaries`], `deepsynth runs DIR`, and
//! [`Runs::table`] as a DataFrame in a notebook): status, steps, wall time, the watched metric's
//! best value, the best value of every evaluation metric, and the settings that tell runs apart
//! (learning rate, LoRA rank and alpha, batch, accumulation, epochs, bits). Read from what a run
//! folder holds: `metrics.jsonl` (the record), `outcome.json` / `quickstart.json` (written when a
//! run ends) and the newest checkpoint's `trainer_state.json` and `adapter_config.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::{MetricRecord, Runs, TrackError};
use crate::eval::Metric;

/// One run of a folder.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RunSummary {
    /// The run's folder name (`.` for the folder itself).
    pub run: String,
    /// `finished`, `stopped early` (early stopping ended it) or `incomplete` (running,
    /// interrupted or failed: no `outcome.json` / `quickstart.json`, and the newest checkpoint
    /// is not the run's last).
    pub status: String,
    /// Optimiser steps taken.
    pub steps: u64,
    /// Seconds from the first to the last value of `metrics.jsonl`.
    pub wall_time_s: f64,
    /// The metric that picked `best/` (`loss` when none was set).
    pub watched: Option<String>,
    /// Its best value and the step of it.
    pub best: Option<(u64, f64)>,
    /// The best value of every evaluation metric (`eval/<name>` in `metrics.jsonl`; smallest
    /// loss, CER, WER; largest of the others).
    pub best_eval: BTreeMap<String, f64>,
    /// The last training loss logged.
    pub last_train_loss: Option<f64>,
    /// Peak learning rate.
    pub learning_rate: Option<f64>,
    /// LoRA rank.
    pub lora_r: Option<u64>,
    /// LoRA alpha.
    pub lora_alpha: Option<f64>,
    /// Examples per micro-batch.
    pub batch_size: Option<u64>,
    /// Micro-batches per optimiser step.
    pub grad_accum: Option<u64>,
    /// Epochs.
    pub epochs: Option<u64>,
    /// The base model the adapter was trained on.
    pub base_model: Option<String>,
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The `checkpoint-*` folders of a run folder, oldest first (their names carry the
/// zero-padded step).
pub(crate) fn checkpoint_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("checkpoint-"))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The newest `checkpoint-*` folder of `dir`, else `best/`.
pub(crate) fn newest_checkpoint(dir: &Path) -> Option<PathBuf> {
    checkpoint_dirs(dir)
        .ok()?
        .pop()
        .or_else(|| Some(dir.join("best")).filter(|b| b.is_dir()))
}

impl RunSummary {
    /// The summary of the run in `dir` named `run`, from its `records`.
    fn read(run: String, dir: &Path, records: &[&MetricRecord]) -> Self {
        let mut s = RunSummary {
            run,
            ..Default::default()
        };
        let (first, last) = records.iter().fold((f64::MAX, f64::MIN), |(a, b), r| {
            (a.min(r.wall_time), b.max(r.wall_time))
        });
        s.wall_time_s = if records.is_empty() {
            0.0
        } else {
            last - first
        };
        s.steps = records.iter().map(|r| r.step).max().unwrap_or(0);
        s.last_train_loss = records
            .iter()
            .filter(|r| r.tag == "train/loss")
            .max_by_key(|r| r.step)
            .map(|r| r.value);
        for r in records {
            let Some(name) = r.tag.strip_prefix("eval/") else {
                continue;
            };
            let higher = match Metric::from_name(name) {
                Some(m) => m.higher_is_better(),
                None if name == "loss" => false,
                None => continue,
            };
            if !r.value.is_finite() {
                continue;
            }
            let e = s.best_eval.entry(name.to_string()).or_insert(r.value);
            if (higher && r.value > *e) || (!higher && r.value < *e) {
                *e = r.value;
            }
        }
        let ended = read_json(&dir.join("outcome.json"))
            .or_else(|| read_json(&dir.join("quickstart.json")));
        s.status = "incomplete".into();
        if let Some(o) = &ended {
            s.status = if o["stopped_early"] == true {
                "stopped early"
            } else {
                "finished"
            }
            .into();
            s.steps = o["steps"].as_u64().unwrap_or(s.steps);
            s.best = best_of(&o["best"]);
        }
        if let Some(ck) = newest_checkpoint(dir) {
            if let Some(state) = read_json(&ck.join("trainer_state.json")) {
                let extra = &state["extra"];
                let run = &extra["run"];
                // A run of the library (no outcome.json): its last checkpoint says how it ended.
                if ended.is_none() {
                    let done = extra["cursor"]["epoch"].as_u64() >= run["epochs"].as_u64();
                    s.status = if extra["outcome"]["stopped_early"] == true {
                        "stopped early"
                    } else if done && run["epochs"].is_u64() {
                        "finished"
                    } else {
                        "incomplete"
                    }
                    .into();
                    s.best = best_of(&extra["best"]);
                }
                s.learning_rate = run["train"]["lr"].as_f64();
                s.batch_size = run["batch_size"].as_u64();
                s.grad_accum = run["train"]["grad_accum"].as_u64();
                s.epochs = run["epochs"].as_u64();
                let watched = [&run["early_stopping"], &run["best_metric"]]
                    .into_iter()
                    .find_map(|w| w["metric"].as_str().map(str::to_string));
                s.watched = Some(watched.unwrap_or_else(|| "loss".into()));
            }
            if let Some(a) = read_json(&ck.join(crate::lora::ADAPTER_CONFIG)) {
                s.lora_r = a["r"].as_u64();
                s.lora_alpha = a["lora_alpha"].as_f64();
                s.base_model = a["base_model_name_or_path"].as_str().map(str::to_string);
            }
        }
        s
    }
}

fn best_of(v: &Value) -> Option<(u64, f64)> {
    Some((v[0].as_u64()?, v[1].as_f64()?))
}

impl Runs {
    /// One [`RunSummary`] per run under `root` (`root` itself and each sub-folder with a
    /// `metrics.jsonl`), in [`Runs::records`]' order.
    pub fn summaries(root: &Path) -> Result<Vec<RunSummary>, TrackError> {
        let records = Self::records(root)?;
        let mut by_run: Vec<(String, Vec<&MetricRecord>)> = Vec::new();
        for (run, r) in &records {
            match by_run.last_mut() {
                Some((name, v)) if name == run => v.push(r),
                _ => by_run.push((run.clone(), vec![r])),
            }
        }
        Ok(by_run
            .into_iter()
            .map(|(run, recs)| {
                let dir = if run == "." {
                    root.to_path_buf()
                } else {
                    root.join(&run)
                };
                RunSummary::read(run, &dir, &recs)
            })
            .collect())
    }

    /// The column names and rows of [`Runs::summaries`] as text cells (`-` for missing), one
    /// `best <metric>` column per evaluation metric any run has.
    pub fn summary_rows(runs: &[RunSummary]) -> (Vec<String>, Vec<Vec<String>>) {
        let metrics: std::collections::BTreeSet<&String> =
            runs.iter().flat_map(|r| r.best_eval.keys()).collect();
        let mut cols: Vec<String> = [
            "run",
            "status",
            "steps",
            "wall_time_s",
            "watched",
            "best",
            "best_step",
            "lr",
            "r",
            "alpha",
            "batch",
            "accum",
            "epochs",
            "train_loss",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cols.extend(metrics.iter().map(|m| format!("best {m}")));
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let rows = runs
            .iter()
            .map(|r| {
                let mut row = vec![
                    r.run.clone(),
                    r.status.clone(),
                    r.steps.to_string(),
                    format!("{:.1}", r.wall_time_s),
                    opt(r.watched.clone()),
                    opt(r.best.map(|b| format!("{:.4}", b.1))),
                    opt(r.best.map(|b| b.0.to_string())),
                    opt(r.learning_rate.map(|v| format!("{v:e}"))),
                    opt(r.lora_r.map(|v| v.to_string())),
                    opt(r.lora_alpha.map(|v| v.to_string())),
                    opt(r.batch_size.map(|v| v.to_string())),
                    opt(r.grad_accum.map(|v| v.to_string())),
                    opt(r.epochs.map(|v| v.to_string())),
                    opt(r.last_train_loss.map(|v| format!("{v:.4}"))),
                ];
                row.extend(
                    metrics
                        .iter()
                        .map(|m| opt(r.best_eval.get(*m).map(|v| format!("{v:.4}")))),
                );
                row
            })
            .collect();
        (cols, rows)
    }

    /// [`Runs::summaries`] as a DataFrame: one row per run, the columns of
    /// [`Runs::summary_rows`] with numbers as numbers (null when missing).
    #[cfg(feature = "frames")]
    pub fn table(root: &Path) -> Result<polars::prelude::DataFrame, TrackError> {
        use polars::prelude::{Column, DataFrame};
        let runs = Self::summaries(root)?;
        let metrics: std::collections::BTreeSet<String> = runs
            .iter()
            .flat_map(|r| r.best_eval.keys().cloned())
            .collect();
        let s = |name: &str, f: &dyn Fn(&RunSummary) -> Option<String>| {
            Column::new(name.into(), runs.iter().map(f).collect::<Vec<_>>())
        };
        let u = |name: &str, f: &dyn Fn(&RunSummary) -> Option<u64>| {
            Column::new(name.into(), runs.iter().map(f).collect::<Vec<_>>())
        };
        let x = |name: &str, f: &dyn Fn(&RunSummary) -> Option<f64>| {
            Column::new(name.into(), runs.iter().map(f).collect::<Vec<_>>())
        };
        let mut cols = vec![
            s("run", &|r| Some(r.run.clone())),
            s("status", &|r| Some(r.status.clone())),
            u("steps", &|r| Some(r.steps)),
            x("wall_time_s", &|r| Some(r.wall_time_s)),
            s("watched", &|r| r.watched.clone()),
            x("best", &|r| r.best.map(|b| b.1)),
            u("best_step", &|r| r.best.map(|b| b.0)),
            x("lr", &|r| r.learning_rate),
            u("r", &|r| r.lora_r),
            x("alpha", &|r| r.lora_alpha),
            u("batch", &|r| r.batch_size),
            u("accum", &|r| r.grad_accum),
            u("epochs", &|r| r.epochs),
            x("train_loss", &|r| r.last_train_loss),
        ];
        for m in &metrics {
            cols.push(x(&format!("best {m}"), &|r| r.best_eval.get(m).copied()));
        }
        DataFrame::new(runs.len(), cols).map_err(|e| TrackError::Frame(e.to_string()))
    }
}
