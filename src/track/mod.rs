//! Experiment tracking: a run folder with TensorBoard event files ([`tensorboard`]) and a
//! `metrics.jsonl` log, [`Runs::load`] to compare runs as a polars DataFrame, and reporting to
//! an MLflow tracking server ([`mlflow`]) alongside the run folder ([`Fanout`]), and publishing
//! adapters to the Hugging Face Hub ([`hub`]).

pub mod fanout;
pub mod hub;
pub mod mlflow;
pub mod runs;
pub mod tensorboard;
pub mod wandb;

pub use fanout::Fanout;
pub use runs::RunSummary;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::IoError;
use tensorboard::{EventWriter, SummaryValue};

/// Errors of tracking.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// A file could not be written or read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A metrics log line is not valid.
    #[error("{path}:{line}: bad metrics record: {reason}")]
    Record {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// Building the DataFrame failed.
    #[error("building the runs table failed: {0}")]
    Frame(String),
    /// A request to an MLflow tracking server failed (the URL, what and why).
    #[error(transparent)]
    Mlflow(#[from] mlflow::MlflowError),
    /// Sending the run to W&B failed (the folder and why).
    #[error(transparent)]
    Wandb(#[from] wandb::WandbError),
    /// Pushing to the Hugging Face Hub failed (the step, endpoint and status).
    #[error(transparent)]
    Hub(#[from] hub::HubError),
    /// The user interrupted the run (Ctrl-C); returned by a tracker so that the training loop
    /// stops at its next logged value.
    #[error("interrupted")]
    Interrupted,
}

/// Where training metrics go.
pub trait Tracker {
    /// Logs a scalar under `tag` (e.g. `train/loss`, `eval/rougeL`) at `step`.
    fn scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<(), TrackError>;
    /// Logs a PNG image (e.g. a rendered page) under `tag` at `step`; trackers that keep no
    /// images ignore it (the default).
    fn image(
        &mut self,
        tag: &str,
        step: u64,
        png: &[u8],
        width: u32,
        height: u32,
        channels: u32,
    ) -> Result<(), TrackError> {
        let _ = (tag, step, png, width, height, channels);
        Ok(())
    }
    /// Called once when a run ends (a [`RunTracker`] writes `metrics.parquet` when built
    /// with the `frames` feature).
    fn finish(&mut self) -> Result<(), TrackError> {
        Ok(())
    }
    /// Called after training wrote `best/` or a checkpoint (the Hub pusher publishes it).
    fn saved(&mut self, _what: Saved<'_>) -> Result<(), TrackError> {
        Ok(())
    }
}

/// What a training run has just written, for [`Tracker::saved`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Saved<'a> {
    /// `best/` was rewritten: the watched metric improved at `step`.
    Best {
        /// The `best/` folder.
        dir: &'a Path,
        /// The step.
        step: u64,
    },
    /// A `checkpoint-*` folder was written at `step`.
    Checkpoint {
        /// The checkpoint's folder.
        dir: &'a Path,
        /// The step.
        step: u64,
    },
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    /// Optimiser step.
    pub step: u64,
    /// Metric name.
    pub tag: String,
    /// Value.
    pub value: f64,
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
}

/// A run folder: TensorBoard events (unless left out) and `metrics.jsonl`, appended to as
/// training goes.
pub struct RunTracker {
    dir: PathBuf,
    events: Option<EventWriter>,
    metrics: File,
    metrics_path: PathBuf,
}

impl RunTracker {
    /// Opens (creating) `dir`; a resumed run appends to its `metrics.jsonl`.
    pub fn open(dir: &Path) -> Result<Self, TrackError> {
        Self::open_with(dir, true)
    }

    /// [`RunTracker::open`], with TensorBoard event files only when `tensorboard` (the
    /// `metrics.jsonl` log is always written: it is the run's record).
    pub fn open_with(dir: &Path, tensorboard: bool) -> Result<Self, TrackError> {
        crate::fsutil::create_dir_all(dir)?;
        let metrics_path = dir.join("metrics.jsonl");
        let metrics = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(|e| IoError::new("open", &metrics_path, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            events: if tensorboard {
                Some(EventWriter::create(dir)?)
            } else {
                None
            },
            metrics,
            metrics_path,
        })
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes this run's metrics so far as `metrics.parquet` (columns as [`Runs::load`]),
    /// atomically; returns its path.
    #[cfg(feature = "frames")]
    pub fn write_parquet(&self) -> Result<PathBuf, TrackError> {
        let mut df = Runs::load(&self.dir)?;
        let mut bytes = Vec::new();
        polars::prelude::ParquetWriter::new(&mut bytes)
            .finish(&mut df)
            .map_err(|e| TrackError::Frame(e.to_string()))?;
        let path = self.dir.join("metrics.parquet");
        crate::fsutil::atomic_write(&path, &bytes)?;
        Ok(path)
    }
}

impl Tracker for RunTracker {
    fn scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<(), TrackError> {
        if let Some(events) = &mut self.events {
            events.scalar(tag, step as i64, value as f32)?;
        }
        let rec = MetricRecord {
            step,
            tag: tag.to_string(),
            value,
            wall_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        };
        let line = serde_json::to_string(&rec).expect("record serialises") + "\n";
        self.metrics
            .write_all(line.as_bytes())
            .and_then(|()| self.metrics.flush())
            .map_err(|e| IoError::new("write", &self.metrics_path, e).into())
    }

    fn image(
        &mut self,
        tag: &str,
        step: u64,
        png: &[u8],
        width: u32,
        height: u32,
        channels: u32,
    ) -> Result<(), TrackError> {
        let Some(events) = &mut self.events else {
            return Ok(());
        };
        Ok(events.add(
            tag,
            step as i64,
            SummaryValue::Png {
                png,
                width,
                height,
                channels,
            },
        )?)
    }

    #[cfg(feature = "frames")]
    fn finish(&mut self) -> Result<(), TrackError> {
        self.write_parquet().map(|_| ())
    }
}

/// All runs under a folder.
pub struct Runs;

impl Runs {
    /// Every `metrics.jsonl` under `root` (one run per sub-folder, `root` itself included) as
    /// `(run, record)` pairs, runs sorted by name (`root` itself is run `.`), each in file order.
    pub fn records(root: &Path) -> Result<Vec<(String, MetricRecord)>, TrackError> {
        let mut dirs = vec![root.to_path_buf()];
        if let Ok(entries) = std::fs::read_dir(root) {
            let mut subs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            subs.sort();
            dirs.extend(subs);
        }
        let mut out = Vec::new();
        for d in dirs {
            let path = d.join("metrics.jsonl");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let name = if d == root {
                ".".to_string()
            } else {
                d.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let r: MetricRecord =
                    serde_json::from_str(line).map_err(|e| TrackError::Record {
                        path: path.clone(),
                        line: i + 1,
                        reason: e.to_string(),
                    })?;
                out.push((name.clone(), r));
            }
        }
        Ok(out)
    }

    /// [`Runs::records`] as a DataFrame with columns `run, step, tag, value, wall_time`.
    #[cfg(feature = "frames")]
    pub fn load(root: &Path) -> Result<polars::prelude::DataFrame, TrackError> {
        use polars::prelude::{Column, DataFrame};
        let records = Self::records(root)?;
        DataFrame::new(
            records.len(),
            vec![
                Column::new(
                    "run".into(),
                    records.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                ),
                Column::new(
                    "step".into(),
                    records.iter().map(|(_, r)| r.step).collect::<Vec<_>>(),
                ),
                Column::new(
                    "tag".into(),
                    records
                        .iter()
                        .map(|(_, r)| r.tag.as_str())
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "value".into(),
                    records.iter().map(|(_, r)| r.value).collect::<Vec<_>>(),
                ),
                Column::new(
                    "wall_time".into(),
                    records.iter().map(|(_, r)| r.wall_time).collect::<Vec<_>>(),
                ),
            ],
        )
        .map_err(|e| TrackError::Frame(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_records_are_in_run_order_and_bad_lines_are_placed() {
        let tmp = tempfile::tempdir().unwrap();
        for (name, v) in [("b", 2.0), ("a", 1.0)] {
            RunTracker::open(&tmp.path().join(name))
                .unwrap()
                .scalar("train/loss", 7, v)
                .unwrap();
        }
        let got: Vec<(String, u64, f64)> = Runs::records(tmp.path())
            .unwrap()
            .into_iter()
            .map(|(n, r)| (n, r.step, r.value))
            .collect();
        assert_eq!(got, [("a".into(), 7, 1.0), ("b".into(), 7, 2.0)]);
        std::fs::write(tmp.path().join("b/metrics.jsonl"), "\n{\"step\": 1}\n").unwrap();
        let err = Runs::records(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:2"), "{err}");
    }

    #[cfg(feature = "frames")]
    #[test]
    fn runs_are_collected_into_one_frame() {
        use polars::prelude::ChunkCompareEq;
        let tmp = tempfile::tempdir().unwrap();
        for (name, base) in [("r8", 2.0), ("r16", 1.0)] {
            let mut t = RunTracker::open(&tmp.path().join(name)).unwrap();
            for s in 1..=3u64 {
                t.scalar("train/loss", s, base / s as f64).unwrap();
            }
            t.scalar("eval/rougeL", 3, 0.25).unwrap();
        }
        let df = Runs::load(tmp.path()).unwrap();
        assert_eq!(df.height(), 8);
        let runs = df.column("run").unwrap().str().unwrap();
        assert_eq!(runs.get(0), Some("r16"));
        // One tag of one run, as a notebook filters it.
        let tag = df.column("tag").unwrap().str().unwrap().equal("train/loss");
        let loss = df.filter(&tag).unwrap();
        let r8 = loss.column("run").unwrap().str().unwrap().equal("r8");
        let one = loss.filter(&r8).unwrap();
        let v: Vec<f64> = one
            .column("value")
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(v, [2.0, 1.0, 2.0 / 3.0]);
        // A corrupt line is reported with its place.
        std::fs::write(tmp.path().join("r8/metrics.jsonl"), "{\"step\": 1}\n").unwrap();
        let err = Runs::load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:1"), "{err}");
    }
}
