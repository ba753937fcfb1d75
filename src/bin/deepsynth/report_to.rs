//! `--report-to tensorboard,mlflow,wandb,none` (Hugging Face `TrainingArguments.report_to`
//! names and meaning), `--run-name`, `--mlflow-experiment` and the `--wandb-*` options: which
//! trackers a training run writes to, and the MLflow and W&B runs' start and end.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use deepsynth::track::hub::HubPusher;
use deepsynth::track::mlflow::{
    flatten_params, KeyValue, MlflowClient, MlflowReport, MlflowRunSpec, MlflowTracker, RunStatus,
};
use deepsynth::track::wandb::{self, WandbRun, WandbSettings, WandbState};
use deepsynth::track::{Fanout, RunTracker, TrackError, Tracker};
use deepsynth::train::TrainError;

use crate::interrupt;

/// Options choosing where a run reports.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Where to report, a comma list: tensorboard (event files in the run folder), mlflow (the
    /// tracking server at MLFLOW_TRACKING_URI), wandb (Weights & Biases, through its Python
    /// SDK), none. metrics.jsonl is always written.
    #[arg(long, value_delimiter = ',', default_value = "tensorboard")]
    pub report_to: Vec<String>,
    /// Also report to W&B (the original plan's use_wandb; same as adding wandb to
    /// --report-to).
    #[arg(long)]
    pub use_wandb: bool,
    /// W&B project [default: WANDB_PROJECT, else deepsynth].
    #[arg(long)]
    pub wandb_project: Option<String>,
    /// W&B entity (user or team) [default: WANDB_ENTITY, else the account's default].
    #[arg(long)]
    pub wandb_entity: Option<String>,
    /// W&B run name [default: --run-name, else the output folder's name].
    #[arg(long)]
    pub wandb_run_name: Option<String>,
    /// Send to W&B after every evaluation, in the background, not only at the end.
    #[arg(long)]
    pub wandb_live: bool,
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
    /// A W&B run.
    pub wandb: bool,
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
                "wandb" => r.wandb = true,
                other => {
                    return Err(format!(
                        "unknown --report-to `{other}` (valid: tensorboard, mlflow, wandb, none)"
                    ))
                }
            }
        }
        r.wandb |= self.use_wandb;
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
            Some(t)
        } else {
            None
        };
        let wandb = reporting
            .wandb
            .then(|| self.open_wandb(dir, params))
            .transpose()?;
        if mlflow.is_some() || wandb.is_some() {
            interrupt::install();
        }
        Ok(Trackers {
            local,
            mlflow,
            wandb,
            hub: None,
        })
    }

    /// The W&B side of the run in `dir`, with `params` as its config. A Python without `wandb`
    /// is reported with the command that syncs the run later; the run goes on either way.
    fn open_wandb(&self, dir: &Path, params: &serde_json::Value) -> deepsynth::Result<WandbRun> {
        let settings = WandbSettings::new(
            self.wandb_project.clone(),
            self.wandb_entity.clone(),
            self.wandb_run_name.clone().or(self.run_name.clone()),
        );
        let state = WandbState::load_or_new(dir, &settings, Some(params.clone()))?;
        let python = wandb::find_python();
        let probe = std::process::Command::new(&python)
            .args(["-c", "import wandb; print(wandb.__version__)"])
            .output();
        match probe {
            Ok(o) if o.status.success() => eprintln!(
                "wandb: run {} in project {} (wandb {} with {}; sent {})",
                state.id,
                state.project,
                String::from_utf8_lossy(&o.stdout).trim(),
                python.display(),
                if self.wandb_live {
                    "after every evaluation and at the end"
                } else {
                    "at the end"
                }
            ),
            _ => eprintln!(
                "wandb: {} cannot import wandb: the run is kept in {} and nothing is sent; \
                 after `pip install wandb` (or with DEEPSYNTH_WANDB_PYTHON set), send it with: {}",
                python.display(),
                dir.join("metrics.jsonl").display(),
                wandb::retry_command(dir, &state)
            ),
        }
        Ok(WandbRun::new(
            dir,
            state,
            python,
            self.wandb_live,
            WANDB_TIMEOUT,
        ))
    }
}

/// The longest a W&B sync may take.
const WANDB_TIMEOUT: Duration = Duration::from_secs(600);

/// The trackers of one run.
pub struct Trackers {
    /// The run folder.
    pub local: RunTracker,
    /// The MLflow run, when reporting to one.
    pub mlflow: Option<MlflowTracker>,
    /// The W&B run, when reporting to one.
    pub wandb: Option<WandbRun>,
    /// The Hub pusher, with --push-to-hub.
    pub hub: Option<HubPusher>,
}

impl Trackers {
    /// Runs `f` with one tracker writing to all, the run folder first (an interrupt stops the
    /// run at its next logged value when MLflow or W&B is on).
    pub fn with<T>(&mut self, f: impl FnOnce(&mut dyn Tracker) -> T) -> T {
        if self.mlflow.is_none() && self.wandb.is_none() && self.hub.is_none() {
            return f(&mut self.local);
        }
        let mut stop = interrupt::Stop;
        let mut all: Vec<&mut dyn Tracker> = vec![&mut stop, &mut self.local];
        if let Some(h) = &mut self.hub {
            all.push(h);
        }
        if let Some(m) = &mut self.mlflow {
            all.push(m);
        }
        if let Some(w) = &mut self.wandb {
            all.push(w);
        }
        f(&mut Fanout::new(all))
    }

    /// Pushes the run to the Hub (with --push-to-hub, on success only; a failure keeps the
    /// run, prints the command that pushes it later and makes the exit code 1), sends the run
    /// to W&B (if asked), then ends the MLflow run (if any) with the status `result` implies,
    /// after uploading the files in `dir` named in `files` and the PEFT adapter of `dir/best`
    /// (on success only); prints and writes (`mlflow.json`) what reached the server. The exit
    /// code for an interrupt is 130.
    pub fn end<T>(
        self,
        dir: &Path,
        files: &[&str],
        result: &Result<T, deepsynth::Error>,
    ) -> Option<ExitCode> {
        let hub_failed = match self.hub {
            Some(mut h) if result.is_ok() => end_hub(dir, &mut h),
            _ => None,
        };
        if let Some(w) = self.wandb {
            end_wandb(dir, w);
        }
        let interrupted = matches!(result, Err(e) if is_interrupt(e));
        let Some(mut m) = self.mlflow else {
            if interrupted {
                eprintln!("interrupted: {} keeps the last checkpoint", dir.display());
            }
            return interrupted.then_some(ExitCode::from(130)).or(hub_failed);
        };
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
        (status == RunStatus::Killed)
            .then_some(ExitCode::from(130))
            .or(hub_failed)
    }
}

/// The end push of a finished run; on failure prints why and the command that pushes the run
/// later, and returns exit code 1.
fn end_hub(dir: &Path, h: &mut HubPusher) -> Option<ExitCode> {
    match h.push_end() {
        Ok(_) => None,
        Err(e) => {
            eprintln!(
                "error: hub: the run was not pushed to {}: {e}\nhub: the run is kept in {}; \
                 push it with: {}",
                h.repo(),
                dir.display(),
                h.retry_command()
            );
            Some(ExitCode::FAILURE)
        }
    }
}

/// Sends what W&B does not have yet and says what it got (a failure never fails a training
/// run); true when the sync succeeded.
pub fn end_wandb(dir: &Path, w: WandbRun) -> bool {
    let state = w.state();
    let (r, live_errors) = w.end();
    match r {
        Ok(o) => {
            eprintln!(
                "wandb: {} steps ({} values) sent to run {} in project {}, up to step {}; {}",
                o.steps,
                o.values,
                o.id,
                state.project,
                o.last_step.map_or("-".into(), |s| s.to_string()),
                match (&o.url, o.mode.as_str()) {
                    (Some(url), "online") => url.clone(),
                    _ => format!(
                        "offline run in {} (upload it with `wandb sync {}`)",
                        o.run_dir.as_deref().unwrap_or("?"),
                        o.run_dir
                            .as_deref()
                            .and_then(|d| Path::new(d).parent())
                            .map_or("?".into(), |p| p.display().to_string())
                    ),
                }
            );
            if !live_errors.is_empty() {
                eprintln!(
                    "wandb: {} sync(s) during the run failed and were caught up: {}",
                    live_errors.len(),
                    live_errors.join("; ")
                );
            }
            true
        }
        Err(e) => {
            eprintln!(
                "wandb: not sent: {}; the run is kept in {}; send it later with: {}",
                e.reason,
                dir.display(),
                wandb::retry_command(dir, &state)
            );
            false
        }
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
            use_wandb: false,
            wandb_project: None,
            wandb_entity: None,
            wandb_run_name: None,
            wandb_live: false,
        }
    }

    #[test]
    fn report_to_names() {
        assert_eq!(
            args("tensorboard").reporting().unwrap(),
            Reporting {
                tensorboard: true,
                mlflow: false,
                wandb: false
            }
        );
        assert!(args("tensorboard,wandb").reporting().unwrap().wandb);
        let mut plan = args("tensorboard");
        plan.use_wandb = true;
        assert!(plan.reporting().unwrap().wandb);
        assert_eq!(args("none").reporting().unwrap(), Reporting::default());
        assert!(args("none,tensorboard").reporting().is_err());
        let e = args("comet").reporting().unwrap_err();
        assert!(e.contains("valid: tensorboard, mlflow, wandb, none"), "{e}");
    }
}
