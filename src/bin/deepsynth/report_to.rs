//! `--report-to tensorboard,mlflow,none` (Hugging Face `TrainingArguments.report_to` names and
//! meaning), `--run-name` and `--mlflow-experiment`: which trackers a training run writes to,
//! and the MLflow run's start and end.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use deepsynth::track::mlflow::{
    flatten_params, KeyValue, MlflowClient, MlflowReport, MlflowRunSpec, MlflowTracker, RunStatus,
};
use deepsynth::track::{Fanout, RunTracker, TrackError, Tracker};
use deepsynth::train::TrainError;

use crate::interrupt;

/// Options choosing where a run reports.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Where to report, a comma list: tensorboard (event files in the run folder), mlflow (the
    /// tracking server at MLFLOW_TRACKING_URI), none. metrics.jsonl is always written.
    #[arg(long, value_delimiter = ',', default_value = "tensorboard")]
    pub report_to: Vec<String>,
    /// Run name (MLflow's mlflow.runName) [default: the output folder's name].
    #[arg(long)]
    pub run_name: Option<String>,
    /// MLflow experiment, created when missing [default: MLFLOW_EXPERIMENT_NAME, else
    /// deepsynth].
    #[arg(long)]
    pub mlflow_experiment: Option<String>,
}

/// What `--report-to` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reporting {
    /// TensorBoard event files.
    pub tensorboard: bool,
    /// An MLflow run.
    pub mlflow: bool,
}

impl ReportArgs {
    /// Parses `--report-to`; refuses unknown names, `none` with others, and integrations not
    /// built yet; checks `MLFLOW_TRACKING_URI` when MLflow is asked for.
    pub fn reporting(&self) -> Result<Reporting, String> {
        let mut r = Reporting::default();
        let names: Vec<String> = self
            .report_to
            .iter()
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        for name in &names {
            match name.as_str() {
                "tensorboard" => r.tensorboard = true,
                "mlflow" => r.mlflow = true,
                "none" if names.len() == 1 => {}
                "none" => return Err("--report-to none cannot be combined with other names".into()),
                "wandb" => {
                    return Err(
                        "--report-to wandb is not implemented yet (W&B syncs TensorBoard \
                                event files: `wandb sync --sync-tensorboard RUN_DIR` on a \
                                --report-to tensorboard run does it by hand)"
                            .into(),
                    )
                }
                other => {
                    return Err(format!(
                        "unknown --report-to `{other}` (valid: tensorboard, mlflow, none)"
                    ))
                }
            }
        }
        if r.mlflow {
            MlflowClient::from_env().map_err(|e| format!("--report-to mlflow: {}", e.reason))?;
        }
        Ok(r)
    }

    /// Opens the run folder's tracker and, when asked, starts the MLflow run with `params` (the
    /// run's settings as JSON, flattened) and `tags`.
    pub fn open(
        &self,
        dir: &Path,
        params: &serde_json::Value,
        tags: Vec<KeyValue>,
    ) -> deepsynth::Result<Trackers> {
        let reporting = self.reporting().map_err(|reason| {
            TrackError::Mlflow(deepsynth::track::mlflow::MlflowError {
                url: String::new(),
                what: "--report-to".into(),
                reason,
                status: Some(0),
            })
        })?;
        let local = RunTracker::open_with(dir, reporting.tensorboard)?;
        let mlflow = if reporting.mlflow {
            let client = MlflowClient::from_env().map_err(TrackError::from)?;
            let experiment = self.mlflow_experiment.clone().unwrap_or_else(|| {
                std::env::var("MLFLOW_EXPERIMENT_NAME")
                    .ok()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "deepsynth".into())
            });
            let run_name = self
                .run_name
                .clone()
                .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()));
            let (params, clipped) = flatten_params("", params);
            for k in clipped {
                eprintln!("mlflow: param `{k}` cut to MLflow's length limit");
            }
            let spec = MlflowRunSpec::new(experiment, run_name)
                .with_params(params)
                .with_tags(tags);
            let t = MlflowTracker::start(client, spec, Box::new(|l| eprintln!("mlflow: {l}")));
            if let Some(run) = t.run() {
                eprintln!(
                    "mlflow: run {} in experiment {} on {}",
                    run.run_id,
                    run.experiment_id,
                    std::env::var("MLFLOW_TRACKING_URI").unwrap_or_default()
                );
            }
            interrupt::install();
            Some(t)
        } else {
            None
        };
        Ok(Trackers { local, mlflow })
    }
}

/// The trackers of one run.
pub struct Trackers {
    /// The run folder.
    pub local: RunTracker,
    /// The MLflow run, when reporting to one.
    pub mlflow: Option<MlflowTracker>,
}

impl Trackers {
    /// Runs `f` with one tracker writing to all (an interrupt stops the run at its next logged
    /// value when MLflow is on).
    pub fn with<T>(&mut self, f: impl FnOnce(&mut dyn Tracker) -> T) -> T {
        match &mut self.mlflow {
            Some(m) => {
                let mut stop = interrupt::Stop;
                let all: Vec<&mut dyn Tracker> = vec![
                    &mut stop as &mut dyn Tracker,
                    &mut self.local as &mut dyn Tracker,
                    m as &mut dyn Tracker,
                ];
                f(&mut Fanout::new(all))
            }
            None => f(&mut self.local),
        }
    }

    /// Ends the MLflow run (if any) with the status `result` implies, after uploading the
    /// files in `dir` named in `files` and the PEFT adapter of `dir/best` (on success only);
    /// prints and writes (`mlflow.json`) what reached the server. The exit code for an
    /// interrupt is 130.
    pub fn end<T>(
        self,
        dir: &Path,
        files: &[&str],
        result: &Result<T, deepsynth::Error>,
    ) -> Option<ExitCode> {
        let mut m = self.mlflow?;
        let status = match result {
            Ok(_) => RunStatus::Finished,
            Err(e) if is_interrupt(e) => RunStatus::Killed,
            Err(_) => RunStatus::Failed,
        };
        if result.is_ok() {
            for f in files {
                if dir.join(f).is_file() {
                    m.add_artifact(dir.join(f), *f);
                }
            }
            for f in [
                deepsynth::lora::ADAPTER_CONFIG,
                deepsynth::lora::ADAPTER_WEIGHTS,
            ] {
                let p = dir.join("best").join(f);
                if p.is_file() {
                    m.add_artifact(p, format!("best/{f}"));
                }
            }
        }
        let report = m.end(status);
        print_report(dir, &report);
        (status == RunStatus::Killed).then_some(ExitCode::from(130))
    }
}

fn is_interrupt(e: &deepsynth::Error) -> bool {
    match e {
        deepsynth::Error::Track(t) => matches!(**t, TrackError::Interrupted),
        deepsynth::Error::Train(t) => matches!(&**t, TrainError::Track(TrackError::Interrupted)),
        _ => false,
    }
}

fn print_report(dir: &Path, report: &MlflowReport) {
    for l in report.lines() {
        eprintln!("{l}");
    }
    let path = dir.join("mlflow.json");
    let text = serde_json::to_string_pretty(report).expect("report serialises");
    if let Err(e) = deepsynth::fsutil::atomic_write(&path, text.as_bytes()) {
        eprintln!("warning: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &str) -> ReportArgs {
        ReportArgs {
            report_to: list.split(',').map(str::to_string).collect(),
            run_name: None,
            mlflow_experiment: None,
        }
    }

    #[test]
    fn report_to_names() {
        assert_eq!(
            args("tensorboard").reporting().unwrap(),
            Reporting {
                tensorboard: true,
                mlflow: false
            }
        );
        assert_eq!(args("none").reporting().unwrap(), Reporting::default());
        assert!(args("none,tensorboard").reporting().is_err());
        let e = args("wandb").reporting().unwrap_err();
        assert!(e.contains("not implemented yet"), "{e}");
        let e = args("comet").reporting().unwrap_err();
        assert!(e.contains("valid: tensorboard, mlflow, none"), "{e}");
    }
}
