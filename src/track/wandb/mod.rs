//! Reporting a run to Weights & Biases (<https://docs.wandb.ai>). W&B has no logging API
//! outside its Python SDK, and its route for other programs, `wandb sync --sync-tensorboard`,
//! was deprecated in wandb 0.29 and removed in 0.30 ("The following options have been removed:
//! --sync-tensorboard"). So DeepSynth runs a small bridge script ([`BRIDGE`], embedded) with the
//! Python that has `wandb`: it reads the run folder's `metrics.jsonl` (every scalar DeepSynth
//! tracks, the record of the run) and logs it through the SDK, one `log` call per step at that
//! step, with the run's settings as the W&B config. Page images, checkpoints and adapters are not
//! sent (the run folder keeps them).
//!
//! The W&B run id is chosen once per run folder and kept in `wandb.json` with the last step sent,
//! so syncing again (after each evaluation with `--wandb-live`, at the end, or later with
//! `deepsynth wandb-sync`) resumes the same W&B run and sends only the new steps. `WANDB_MODE`,
//! `WANDB_API_KEY`, `WANDB_BASE_URL` and W&B's other variables reach the SDK unchanged; with
//! `WANDB_MODE=offline` the bridge writes an offline run under `<run>/wandb/` that `wandb sync`
//! uploads later.

mod live;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use live::WandbRun;

use super::TrackError;

/// The bridge script (Python, run with `python -c`).
pub const BRIDGE: &str = include_str!("bridge.py");

/// The file in a run folder that keeps the W&B run's id, names, config and last step sent.
pub const STATE_FILE: &str = "wandb.json";

/// A sync that failed: what was tried and why.
#[derive(Debug, thiserror::Error)]
#[error("W&B sync of {dir}: {reason}")]
pub struct WandbError {
    /// The run folder.
    pub dir: PathBuf,
    /// What went wrong (for a bridge failure, the end of its stderr).
    pub reason: String,
    /// Whether the Python interpreter has no `wandb` module (install it and sync again).
    pub not_installed: bool,
}

/// Where and how to report (the `--wandb-*` options).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WandbSettings {
    /// W&B project [default: `WANDB_PROJECT`, else `deepsynth`].
    pub project: Option<String>,
    /// W&B entity (user or team) [default: `WANDB_ENTITY`, else the account's default].
    pub entity: Option<String>,
    /// Run name [default: the run folder's name].
    pub name: Option<String>,
    /// The Python with `wandb` [default: [`find_python`]].
    pub python: Option<PathBuf>,
}

impl WandbSettings {
    /// The settings with these names.
    pub fn new(project: Option<String>, entity: Option<String>, name: Option<String>) -> Self {
        Self {
            project,
            entity,
            name,
            python: None,
        }
    }
}

/// What `wandb.json` keeps between syncs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WandbState {
    /// The W&B run id (8 characters of `[0-9a-z]`).
    pub id: String,
    /// Project.
    pub project: String,
    /// Entity, if one was given.
    pub entity: Option<String>,
    /// Run name.
    pub name: String,
    /// The run's settings, sent as the W&B config.
    pub config: serde_json::Value,
    /// The last step sent (`None`: nothing yet).
    pub synced_step: Option<u64>,
}

/// What one sync did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncOutcome {
    /// The W&B run id.
    pub id: String,
    /// Steps sent by this sync.
    pub steps: u64,
    /// Values sent by this sync.
    pub values: u64,
    /// The last step W&B has.
    pub last_step: Option<u64>,
    /// `online` or `offline` (`WANDB_MODE=offline`).
    pub mode: String,
    /// The run's page, when online.
    pub url: Option<String>,
    /// The SDK's local folder for the run (the offline run to `wandb sync`).
    pub run_dir: Option<String>,
    /// The wandb package's version.
    pub wandb_version: String,
}

/// The Python to run the bridge with: `DEEPSYNTH_WANDB_PYTHON`, else the interpreter of the
/// `wandb` command on `PATH` (its `#!` line: the environment wandb is installed in), else
/// `python3`.
pub fn find_python() -> PathBuf {
    if let Some(p) = std::env::var_os("DEEPSYNTH_WANDB_PYTHON").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let from_wandb = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("wandb"))
            .find(|p| p.is_file())
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| {
                let first = text.lines().next()?.strip_prefix("#!")?.trim().to_string();
                let exe = PathBuf::from(first.split_whitespace().next()?);
                exe.is_file().then_some(exe)
            })
    });
    from_wandb.unwrap_or_else(|| "python3".into())
}

impl WandbState {
    /// The state of `dir` (`wandb.json`), or a new run: a fresh id, `settings`' names (the
    /// project from `WANDB_PROJECT`, else `deepsynth`; the name from the folder) and `config`.
    /// Names and config given in `settings`/`config` replace the saved ones.
    pub fn load_or_new(
        dir: &Path,
        settings: &WandbSettings,
        config: Option<serde_json::Value>,
    ) -> Result<Self, TrackError> {
        let path = dir.join(STATE_FILE);
        let mut state = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| TrackError::Record {
                path: path.clone(),
                line: 1,
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self {
                id: new_run_id(dir),
                project: std::env::var("WANDB_PROJECT")
                    .ok()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "deepsynth".into()),
                entity: std::env::var("WANDB_ENTITY").ok().filter(|s| !s.is_empty()),
                name: dir
                    .canonicalize()
                    .ok()
                    .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| "deepsynth".into()),
                config: serde_json::Value::Null,
                synced_step: None,
            },
            Err(e) => return Err(crate::fsutil::IoError::new("read", &path, e).into()),
        };
        if let Some(p) = &settings.project {
            state.project = p.clone();
        }
        if let Some(e) = &settings.entity {
            state.entity = Some(e.clone());
        }
        if let Some(n) = &settings.name {
            state.name = n.clone();
        }
        if let Some(c) = config {
            state.config = c;
        }
        Ok(state)
    }

    /// Writes `wandb.json` (atomically).
    pub fn save(&self, dir: &Path) -> Result<(), TrackError> {
        let text = serde_json::to_string_pretty(self).expect("state serialises");
        Ok(crate::fsutil::atomic_write(
            &dir.join(STATE_FILE),
            text.as_bytes(),
        )?)
    }
}

/// A run id W&B accepts: 8 random characters of `[0-9a-z]`.
fn new_run_id(dir: &Path) -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS per process; the folder and time separate runs of one.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(dir.to_string_lossy().as_bytes());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let mut x = h.finish();
    (0..8)
        .map(|_| {
            let c = b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize];
            x /= 36;
            c as char
        })
        .collect()
}

/// Sends the steps of `dir/metrics.jsonl` after `state.synced_step` (and up to `upto`, when
/// given: a step whose values are all written) to W&B through the bridge (waiting at most
/// `timeout`), then records the last step sent in `dir/wandb.json`.
pub fn sync(
    dir: &Path,
    state: &mut WandbState,
    python: &Path,
    upto: Option<u64>,
    timeout: Duration,
) -> Result<SyncOutcome, WandbError> {
    let fail = |reason: String, not_installed: bool| WandbError {
        dir: dir.to_path_buf(),
        reason,
        not_installed,
    };
    let metrics = dir.join("metrics.jsonl");
    if !metrics.is_file() {
        return Err(fail(format!("no {}", metrics.display()), false));
    }
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let spec = serde_json::json!({
        "dir": abs,
        "metrics": abs.join("metrics.jsonl"),
        "id": state.id,
        "project": state.project,
        "entity": state.entity,
        "name": state.name,
        "config": state.config,
        "after": state.synced_step,
        "upto": upto,
    });
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(BRIDGE);
    if std::env::var_os("WANDB_SILENT").is_none() {
        cmd.env("WANDB_SILENT", "true");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start {}: {e}", python.display()), true))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let written = stdin.write_all(spec.to_string().as_bytes());
    drop(stdin);
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let read_out = std::thread::spawn(move || read_all(out.as_mut()));
    let read_err = std::thread::spawn(move || read_all(err.as_mut()));
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("no answer within {timeout:?}"), false));
            }
            Err(e) => return Err(fail(format!("waiting for the bridge: {e}"), false)),
        }
    };
    let stdout = read_out.join().unwrap_or_default();
    let stderr = read_err.join().unwrap_or_default();
    if !status.success() || written.is_err() {
        let missing = stderr.contains("No module named 'wandb'");
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(fail(
            if missing {
                format!(
                    "{} has no `wandb` module (pip install wandb)",
                    python.display()
                )
            } else {
                format!("the bridge failed ({status}): {}", tail.join(" | "))
            },
            missing,
        ));
    }
    let last = stdout.lines().rev().find(|l| l.starts_with('{'));
    let outcome: SyncOutcome = last
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| fail(format!("unexpected bridge output: {stdout:?}"), false))?;
    state.synced_step = outcome.last_step;
    state.save(dir).map_err(|e| fail(e.to_string(), false))?;
    Ok(outcome)
}

fn read_all(r: Option<&mut impl Read>) -> String {
    let mut s = String::new();
    if let Some(r) = r {
        let _ = r.read_to_string(&mut s);
    }
    s
}

/// The command that syncs `dir` later (printed when a sync could not run).
pub fn retry_command(dir: &Path, state: &WandbState) -> String {
    let mut c = format!(
        "deepsynth wandb-sync {} --wandb-project {}",
        shell_quote(&dir.display().to_string()),
        shell_quote(&state.project)
    );
    if let Some(e) = &state.entity {
        c.push_str(&format!(" --wandb-entity {}", shell_quote(e)));
    }
    c
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@+=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_eight_base36_characters_and_differ() {
        let a = new_run_id(Path::new("runs/a"));
        let b = new_run_id(Path::new("runs/b"));
        assert_eq!(a.len(), 8);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn retry_commands_quote_what_the_shell_would_split() {
        let state = WandbState {
            id: "x".into(),
            project: "my project".into(),
            entity: Some("team".into()),
            name: "n".into(),
            config: serde_json::Value::Null,
            synced_step: None,
        };
        assert_eq!(
            retry_command(Path::new("runs/it's"), &state),
            r"deepsynth wandb-sync 'runs/it'\''s' --wandb-project 'my project' --wandb-entity team"
        );
    }

    #[test]
    fn a_missing_interpreter_is_reported_as_not_installed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("metrics.jsonl"), "").unwrap();
        let mut state =
            WandbState::load_or_new(tmp.path(), &WandbSettings::default(), None).unwrap();
        let e = sync(
            tmp.path(),
            &mut state,
            Path::new("/nonexistent/python"),
            None,
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.not_installed, "{e}");
        assert!(!tmp.path().join(STATE_FILE).exists());
    }
}
