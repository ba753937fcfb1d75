//! `deepsynth wandb-sync RUN_DIR`: sends a run folder's metrics to Weights & Biases (all of
//! them, or the steps after the last sync recorded in its `wandb.json`), for a run trained
//! without `--report-to wandb`, one whose sync failed, or one made where wandb was not
//! installed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use deepsynth::track::wandb::{self, WandbRun, WandbSettings, WandbState};

use crate::report_to::end_wandb;

/// Arguments of `deepsynth wandb-sync`.
#[derive(Args, Debug)]
pub struct WandbSyncArgs {
    /// The run folder (with metrics.jsonl).
    dir: PathBuf,
    /// W&B project [default: the one in the folder's wandb.json, else WANDB_PROJECT, else
    /// deepsynth].
    #[arg(long)]
    wandb_project: Option<String>,
    /// W&B entity (user or team).
    #[arg(long)]
    wandb_entity: Option<String>,
    /// W&B run name [default: the folder's name].
    #[arg(long)]
    wandb_run_name: Option<String>,
    /// Send every step again to a new W&B run (forgets the folder's wandb.json).
    #[arg(long)]
    new_run: bool,
}

/// The run's settings for the W&B config when the folder has no `wandb.json`: the run and
/// adapter configuration of its newest checkpoint (or `best/`).
fn config_from_checkpoints(dir: &std::path::Path) -> Option<serde_json::Value> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("checkpoint-"))
        })
        .collect();
    dirs.sort();
    dirs.push(dir.join("best"));
    dirs.iter().rev().find_map(|d| {
        let (run, lora) = deepsynth::train::checkpoint_run_config(d).ok()?;
        Some(serde_json::json!({ "run": run, "lora": lora }))
    })
}

pub fn run(args: WandbSyncArgs) -> deepsynth::Result<ExitCode> {
    if !args.dir.join("metrics.jsonl").is_file() {
        return Ok(crate::common::usage(format!(
            "{} has no metrics.jsonl (not a run folder)",
            args.dir.display()
        )));
    }
    if args.new_run {
        let state = args.dir.join(wandb::STATE_FILE);
        if state.exists() {
            std::fs::remove_file(&state)
                .map_err(|e| deepsynth::fsutil::IoError::new("remove", &state, e))?;
        }
    }
    let settings = WandbSettings::new(args.wandb_project, args.wandb_entity, args.wandb_run_name);
    let fresh = !args.dir.join(wandb::STATE_FILE).exists();
    let config = if fresh {
        Some(config_from_checkpoints(&args.dir).unwrap_or(serde_json::Value::Null))
    } else {
        None
    };
    let state = WandbState::load_or_new(&args.dir, &settings, config)?;
    let w = WandbRun::new(
        &args.dir,
        state,
        wandb::find_python(),
        false,
        std::time::Duration::from_secs(3600),
    );
    Ok(if end_wandb(&args.dir, w) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
