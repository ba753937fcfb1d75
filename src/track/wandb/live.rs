//! [`WandbRun`]: the W&B side of a training run. It tracks nothing itself (the run folder's
//! `metrics.jsonl` is the record); with `live`, the first value logged after an evaluation
//! starts a sync in the background (one at a time; a sync still running is left to finish and
//! the next one catches up), so training never waits for W&B. [`WandbRun::end`] waits for it and
//! sends the rest.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{sync, SyncOutcome, WandbError, WandbState};
use crate::track::{TrackError, Tracker};

/// A W&B run fed from a run folder.
pub struct WandbRun {
    dir: PathBuf,
    python: PathBuf,
    state: Arc<Mutex<WandbState>>,
    live: bool,
    timeout: Duration,
    evaluated_at: Option<u64>,
    running: Option<JoinHandle<Result<SyncOutcome, WandbError>>>,
    live_errors: Vec<String>,
}

impl WandbRun {
    /// A run of `dir` (writing `wandb.json` there) synced with `python`; `live` syncs after
    /// every evaluation; each sync may take up to `timeout`.
    pub fn new(
        dir: &Path,
        state: WandbState,
        python: PathBuf,
        live: bool,
        timeout: Duration,
    ) -> Self {
        Self {
            dir: dir.to_path_buf(),
            python,
            state: Arc::new(Mutex::new(state)),
            live,
            timeout,
            evaluated_at: None,
            running: None,
            live_errors: vec![],
        }
    }

    /// The run's state (id, names, last step sent).
    pub fn state(&self) -> WandbState {
        self.state.lock().expect("wandb state").clone()
    }

    /// Starts a background sync of the steps up to `upto` unless one is running.
    fn kick(&mut self, upto: u64) {
        if let Some(h) = self.running.take() {
            if !h.is_finished() {
                self.running = Some(h);
                return;
            }
            self.collect(h);
        }
        let (dir, python, state, timeout) = (
            self.dir.clone(),
            self.python.clone(),
            self.state.clone(),
            self.timeout,
        );
        self.running = Some(std::thread::spawn(move || {
            let mut s = state.lock().expect("wandb state").clone();
            let r = sync(&dir, &mut s, &python, Some(upto), timeout);
            if r.is_ok() {
                *state.lock().expect("wandb state") = s;
            }
            r
        }));
    }

    fn collect(&mut self, h: JoinHandle<Result<SyncOutcome, WandbError>>) {
        match h.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => self.live_errors.push(e.reason),
            Err(_) => self.live_errors.push("the sync thread panicked".into()),
        }
    }

    /// Waits for a background sync, then sends every step not sent yet. Returns the last sync
    /// and the errors of background syncs (each was caught up by a later one when this is Ok).
    pub fn end(mut self) -> (Result<SyncOutcome, WandbError>, Vec<String>) {
        if let Some(h) = self.running.take() {
            self.collect(h);
        }
        let mut s = self.state();
        let r = sync(&self.dir, &mut s, &self.python, None, self.timeout);
        (r, self.live_errors)
    }
}

impl Tracker for WandbRun {
    fn scalar(&mut self, tag: &str, step: u64, _: f64) -> Result<(), TrackError> {
        if !self.live {
            return Ok(());
        }
        if tag.starts_with("eval/") {
            self.evaluated_at = Some(step);
        } else if let Some(e) = self.evaluated_at.filter(|e| step > *e) {
            // Every value of the evaluation's step is in metrics.jsonl by now; values of
            // `step` may still be on their way.
            self.evaluated_at = None;
            self.kick(e);
        }
        Ok(())
    }
}
