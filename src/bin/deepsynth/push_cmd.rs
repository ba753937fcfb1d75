//! `deepsynth push DIR owner/name`: publish a run's best adapter with a model card (a run
//! folder: gathered in `DIR/hub/` first), or any folder as it is, to the Hugging Face Hub.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use deepsynth::track::hub::{push_folder, stage_run, HubClient, PushSpec, RepoId};
use deepsynth::track::TrackError;

use crate::common::usage;

/// Arguments of `deepsynth push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// A run folder (with metrics.jsonl: its best adapter and a model card are gathered in
    /// DIR/hub/, which is pushed) or any other folder (pushed as it is).
    dir: PathBuf,
    /// The model repository, owner/name; created when missing.
    repo_id: String,
    /// Create the repository private (an existing one keeps its visibility).
    #[arg(long)]
    private: bool,
    /// The branch to commit to.
    #[arg(long, default_value = "main")]
    revision: String,
    /// The commit message [default: "DeepSynth: push <folder>"].
    #[arg(long)]
    commit_message: Option<String>,
    /// A dataset the model card names (a Hub id goes in its metadata); repeatable. Run
    /// folders only.
    #[arg(long)]
    dataset: Vec<String>,
}

pub fn run(args: PushArgs) -> deepsynth::Result<ExitCode> {
    let repo = match RepoId::parse(&args.repo_id) {
        Ok(r) => r,
        Err(e) => return Ok(usage(e)),
    };
    if args.revision.trim().is_empty() {
        return Ok(usage("--revision must not be empty"));
    }
    let client = HubClient::from_env().map_err(TrackError::from)?;
    let folder = if args.dir.join("metrics.jsonl").is_file() {
        let staged = stage_run(&args.dir, &repo, &args.dataset, false).map_err(TrackError::from)?;
        eprintln!(
            "hub: {} holds the run's best adapter and its model card (README.md)",
            staged.display()
        );
        staged
    } else {
        args.dir.clone()
    };
    let name = folder
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| folder.display().to_string());
    let message = args
        .commit_message
        .clone()
        .unwrap_or_else(|| format!("DeepSynth: push {name}"));
    let spec = PushSpec::new(repo, message)
        .private(args.private)
        .revision(args.revision.clone());
    let report = push_folder(&client, &folder, &spec).map_err(TrackError::from)?;
    for (path, size, lfs) in &report.files {
        eprintln!("  {path} ({size} bytes{})", if *lfs { ", LFS" } else { "" });
    }
    eprintln!("{}", report.line());
    println!("{}", report.commit.url);
    Ok(ExitCode::SUCCESS)
}
