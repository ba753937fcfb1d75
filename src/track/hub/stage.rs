//! What a run folder publishes, gathered in `<run>/hub/` (written atomically, replacing the
//! last one): the best adapter (`best/`, else the newest checkpoint's), the model card, and
//! with `with_checkpoint` the newest `checkpoint-*` under `last-checkpoint/` (everything
//! `--resume-from-checkpoint` needs), as `transformers.Trainer`'s `hub_strategy="checkpoint"`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{model_card, CardInputs, HubError, RepoId};
use crate::lora::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use crate::track::runs::newest_checkpoint;
use crate::track::{RunSummary, Runs};

/// The folder of a run that holds what is pushed.
pub const STAGE_DIR: &str = "hub";

/// The folder whose adapter is published: `best/`, else the newest checkpoint.
fn adapter_dir(run: &Path) -> Option<PathBuf> {
    let has = |d: &Path| d.join(ADAPTER_CONFIG).is_file() && d.join(ADAPTER_WEIGHTS).is_file();
    Some(run.join("best"))
        .filter(|d| has(d))
        .or_else(|| newest_checkpoint(run).filter(|d| has(d)))
}

/// The run's summary and every evaluation (step, training loss at or before it, metrics).
#[allow(clippy::type_complexity)]
fn history(
    run: &Path,
) -> Result<(RunSummary, Vec<(u64, Option<f64>, BTreeMap<String, f64>)>), HubError> {
    let folder = |e: crate::track::TrackError| HubError::Folder {
        path: run.into(),
        reason: e.to_string(),
    };
    let summary = Runs::summaries(run)
        .map_err(folder)?
        .into_iter()
        .find(|s| s.run == ".")
        .unwrap_or_default();
    let records = Runs::records(run).map_err(folder)?;
    let mut evals: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
    let mut losses: BTreeMap<u64, f64> = BTreeMap::new();
    for (_, rec) in records.iter().filter(|(r, _)| r == ".") {
        if let Some(name) = rec.tag.strip_prefix("eval/") {
            evals
                .entry(rec.step)
                .or_default()
                .insert(name.to_string(), rec.value);
        } else if rec.tag == "train/loss" {
            losses.insert(rec.step, rec.value);
        }
    }
    let rows = evals
        .into_iter()
        .map(|(step, m)| {
            let loss = losses.range(..=step).next_back().map(|(_, v)| *v);
            (step, loss, m)
        })
        .collect();
    Ok((summary, rows))
}

fn copy_files(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for (src, rel) in crate::fsutil::files_under(from) {
        let dst = to.join(&rel);
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::copy(&src, &dst)?;
    }
    Ok(())
}

/// Writes `<run>/hub/` for `repo`: the adapter, `README.md` (the model card, naming
/// `datasets`), and with `with_checkpoint` the newest checkpoint under `last-checkpoint/`.
/// Returns the folder.
pub fn stage_run(
    run: &Path,
    repo: &RepoId,
    datasets: &[String],
    with_checkpoint: bool,
) -> Result<PathBuf, HubError> {
    let adapter = adapter_dir(run).ok_or_else(|| HubError::Folder {
        path: run.into(),
        reason: format!(
            "no adapter to publish: neither best/ nor a checkpoint-*/ folder holds \
             {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}"
        ),
    })?;
    let config: Option<serde_json::Value> = std::fs::read_to_string(adapter.join(ADAPTER_CONFIG))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok());
    let (summary, evals) = history(run)?;
    let card = model_card(&CardInputs {
        repo: repo.to_string(),
        base_model: config
            .as_ref()
            .and_then(|c| c["base_model_name_or_path"].as_str())
            .map(str::to_string),
        datasets: datasets.to_vec(),
        summary,
        evals,
        adapter: config,
    });
    let checkpoint = with_checkpoint.then(|| newest_checkpoint(run)).flatten();
    let dir = run.join(STAGE_DIR);
    crate::fsutil::atomic_dir(
        &dir,
        |tmp| {
            for f in [ADAPTER_CONFIG, ADAPTER_WEIGHTS] {
                std::fs::copy(adapter.join(f), tmp.join(f))?;
            }
            std::fs::write(tmp.join("README.md"), &card)?;
            if let Some(ck) = &checkpoint {
                copy_files(ck, &tmp.join("last-checkpoint"))?;
            }
            Ok(())
        },
        |tmp| {
            let n = std::fs::read(tmp.join("README.md"))?.len();
            if n != card.len() {
                return Err(std::io::Error::other("README.md was written short"));
            }
            Ok(())
        },
    )?;
    Ok(dir)
}
