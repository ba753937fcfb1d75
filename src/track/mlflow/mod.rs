//! Reporting a run to an MLflow tracking server through its REST API
//! (<https://mlflow.org/docs/latest/rest-api.html>): an experiment by name (created when
//! missing), a run with a name and tags, the run's settings as params, every scalar as a metric
//! at its step (`runs/log-batch`, split within MLflow's limits), chosen files as artifacts, and
//! the status `FINISHED`, `FAILED` or `KILLED` at the end.
//!
//! The server is a copy, never the record: the run folder ([`RunTracker`](super::RunTracker))
//! is written first. A server that is down or goes away never stops a run: metrics wait in a
//! bounded buffer and are sent again on a later call (after 1 s, 2 s, 4 s, ... up to a minute),
//! [`MlflowTracker::end`] tries a last few times, and its [`MlflowReport`] lists what could not
//! be sent.

pub mod batch;
pub mod client;
mod report;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use batch::{flatten_params, split_batches, Batch, KeyValue, Metric};
pub use client::{Auth, MlflowClient, MlflowError, RunInfo};
pub use report::{ArtifactOutcome, MlflowReport, RunStatus};

use super::{TrackError, Tracker};
use batch::{clip, MAX_KEY_CHARS};

/// What run to create and how to buffer (builder-style; [`MlflowRunSpec::new`] has the
/// defaults).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MlflowRunSpec {
    /// Experiment name (created when missing).
    pub experiment: String,
    /// Run name (`mlflow.runName`); the server picks one when `None`.
    pub run_name: Option<String>,
    /// Params (see [`flatten_params`]).
    pub params: Vec<KeyValue>,
    /// Tags besides the ones every run gets (`mlflow.source.name` = `deepsynth`,
    /// `mlflow.source.type` = `LOCAL`, `mlflow.user`, `mlflow.runName`, `deepsynth.version`).
    pub tags: Vec<KeyValue>,
    /// Most metrics waiting for the server; past it the oldest are dropped (and counted).
    pub buffer_capacity: usize,
    /// Metrics are sent at most this often (and whenever a full request has gathered).
    pub flush_every: Duration,
    /// Wait after the first failure; doubled after each further one up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest wait between tries.
    pub retry_max: Duration,
    /// Tries [`MlflowTracker::end`] makes to send what is left (waiting `retry_initial`,
    /// doubled, between them).
    pub end_attempts: u32,
}

impl MlflowRunSpec {
    /// A run in `experiment`: a buffer of 100,000 metrics, sent every 2 s, retried after 1 s
    /// doubling to 60 s, 3 last tries at the end.
    pub fn new(experiment: impl Into<String>, run_name: Option<String>) -> Self {
        Self {
            experiment: experiment.into(),
            run_name,
            params: Vec::new(),
            tags: Vec::new(),
            buffer_capacity: 100_000,
            flush_every: Duration::from_secs(2),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            end_attempts: 3,
        }
    }

    /// With these params added.
    pub fn with_params(mut self, params: impl IntoIterator<Item = KeyValue>) -> Self {
        self.params.extend(params);
        self
    }

    /// With these tags added.
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = KeyValue>) -> Self {
        self.tags.extend(tags);
        self
    }

    /// With another buffer size, send interval and retry waits.
    pub fn with_timing(
        mut self,
        buffer_capacity: usize,
        flush_every: Duration,
        retry_initial: Duration,
        retry_max: Duration,
    ) -> Self {
        self.buffer_capacity = buffer_capacity.max(1);
        self.flush_every = flush_every;
        self.retry_initial = retry_initial;
        self.retry_max = retry_max.max(retry_initial);
        self
    }

    /// The tags `runs/create` gets: the standard ones, then the caller's (which win).
    fn create_tags(&self) -> Vec<KeyValue> {
        let mut tags = vec![
            KeyValue::new("mlflow.source.name", "deepsynth"),
            KeyValue::new("mlflow.source.type", "LOCAL"),
            KeyValue::new("deepsynth.version", env!("CARGO_PKG_VERSION")),
        ];
        if let Ok(user) = std::env::var("USER") {
            tags.push(KeyValue::new("mlflow.user", user));
        }
        if let Some(n) = &self.run_name {
            tags.push(KeyValue::new("mlflow.runName", n.clone()));
        }
        for t in &self.tags {
            tags.retain(|x| x.key != t.key);
            tags.push(t.clone());
        }
        tags
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A [`Tracker`] that reports to an MLflow run (scalars only: images stay in TensorBoard).
/// Never fails a run for the server's sake: see the module documentation.
pub struct MlflowTracker {
    client: MlflowClient,
    spec: MlflowRunSpec,
    started_ms: i64,
    run: Option<RunInfo>,
    /// Params and tags not yet accepted by the server.
    pending_params: Vec<KeyValue>,
    pending_tags: Vec<KeyValue>,
    buffer: VecDeque<Metric>,
    artifacts: Vec<(PathBuf, String)>,
    last_try: Option<Instant>,
    failures: u32,
    next_try: Option<Instant>,
    /// A refusal that makes further tries pointless (the run could not be created).
    fatal: Option<MlflowError>,
    log: Box<dyn FnMut(&str)>,
    report: MlflowReport,
}

impl MlflowTracker {
    /// Starts reporting to `client`: tries once to create the run right away (a server that
    /// cannot be reached yet is tried again on later calls). Progress notes (server lost,
    /// server back, requests refused) go to `log`.
    pub fn start(client: MlflowClient, spec: MlflowRunSpec, log: Box<dyn FnMut(&str)>) -> Self {
        let report = MlflowReport::new(client.tracking_uri());
        let mut t = Self {
            pending_params: spec.params.clone(),
            pending_tags: Vec::new(),
            client,
            spec,
            started_ms: now_ms(),
            run: None,
            buffer: VecDeque::new(),
            artifacts: Vec::new(),
            last_try: None,
            failures: 0,
            next_try: None,
            fatal: None,
            log,
            report,
        };
        t.pump(true);
        t
    }

    /// The run on the server, once it has been created.
    pub fn run(&self) -> Option<&RunInfo> {
        self.run.as_ref()
    }

    /// Metrics waiting for the server.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Sets a tag (sent with the next request).
    pub fn tag(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.pending_tags.push(KeyValue::new(key, value));
        self.pump(false);
    }

    /// Uploads the file `local` as the artifact `path` when the run ends.
    pub fn add_artifact(&mut self, local: impl Into<PathBuf>, path: impl Into<String>) {
        self.artifacts.push((local.into(), path.into()));
    }

    /// Uploads every file under `dir` (found when the run ends) below the artifact folder
    /// `prefix`.
    pub fn add_artifact_dir(&mut self, dir: &Path, prefix: &str) {
        for (local, rel) in crate::fsutil::files_under(dir) {
            let path = if prefix.is_empty() {
                rel
            } else {
                format!("{}/{rel}", prefix.trim_end_matches('/'))
            };
            self.add_artifact(local, path);
        }
    }

    fn note(&mut self, line: String) {
        (self.log)(&line);
        self.report.notes.push(line);
    }

    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        (self.spec.retry_initial * factor).min(self.spec.retry_max)
    }

    /// Sends what is waiting when it is time (always with `force`), and keeps the retry state.
    fn pump(&mut self, force: bool) {
        if self.fatal.is_some() {
            return;
        }
        let now = Instant::now();
        if !force {
            match self.next_try {
                Some(t) if now < t => return,
                Some(_) => {}
                None => {
                    let quiet = self
                        .last_try
                        .is_some_and(|t| now.duration_since(t) < self.spec.flush_every);
                    let idle = self.run.is_some()
                        && self.pending_params.is_empty()
                        && self.pending_tags.is_empty();
                    if quiet && idle && self.buffer.len() < batch::MAX_METRICS_PER_BATCH {
                        return;
                    }
                }
            }
        }
        self.last_try = Some(now);
        let step = self.buffer.back().map(|m| m.step);
        match self.send_pending() {
            Ok(sent) => {
                if self.failures > 0 {
                    self.note(format!(
                        "{} reached again after {} failed tries; {sent} waiting metrics sent",
                        self.client.tracking_uri(),
                        self.failures
                    ));
                }
                self.failures = 0;
                self.next_try = None;
            }
            Err(e) if e.retryable() => {
                self.failures += 1;
                let wait = self.backoff(self.failures);
                self.next_try = Some(now + wait);
                if self.failures == 1 {
                    let from = step.map_or(String::new(), |s| format!(" (from step {s})"));
                    self.note(format!(
                        "{e}; training goes on, metrics wait in memory{from} and are sent when \
                         it answers"
                    ));
                }
                self.report.record_error(&e);
            }
            Err(e) => {
                self.note(format!("{e}; nothing more is sent to this server"));
                self.report.record_error(&e);
                self.fatal = Some(e);
            }
        }
    }

    /// Creates the run if needed, then sends params, tags and metrics in requests within
    /// MLflow's limits. A request the server refuses (4xx) is dropped into the report; the
    /// first one it cannot take (down, 5xx) stops the sending. Returns the metrics sent.
    fn send_pending(&mut self) -> Result<usize, MlflowError> {
        if self.run.is_none() {
            let eid = self.client.experiment_id(&self.spec.experiment)?;
            let run = self.client.create_run(
                &eid,
                self.spec.run_name.as_deref(),
                self.started_ms,
                &self.spec.create_tags(),
            )?;
            self.report.experiment_id = Some(run.experiment_id.clone());
            self.report.run_id = Some(run.run_id.clone());
            self.run = Some(run);
        }
        let run_id = self
            .run
            .as_ref()
            .map(|r| r.run_id.clone())
            .unwrap_or_default();
        let mut sent = 0;
        loop {
            let metrics: Vec<Metric> = self
                .buffer
                .iter()
                .take(batch::MAX_METRICS_PER_BATCH)
                .cloned()
                .collect();
            let Some(b) = split_batches(&metrics, &self.pending_params, &self.pending_tags)
                .into_iter()
                .next()
            else {
                return Ok(sent);
            };
            let result = self.client.log_batch(&run_id, &b);
            match result {
                Err(e) if e.retryable() => return Err(e),
                outcome => {
                    self.buffer.drain(..b.metrics.len());
                    self.pending_params.drain(..b.params.len());
                    self.pending_tags.drain(..b.tags.len());
                    match outcome {
                        Ok(()) => {
                            sent += b.metrics.len();
                            self.report.metrics_sent += b.metrics.len();
                            self.report.params_sent += b.params.len();
                        }
                        Err(e) => {
                            self.note(format!(
                                "{e}: {} metrics, {} params, {} tags refused",
                                b.metrics.len(),
                                b.params.len(),
                                b.tags.len()
                            ));
                            self.report.record_error(&e);
                            self.report.refused(b);
                        }
                    }
                }
            }
        }
    }

    /// Ends the run: sends what is waiting (up to `end_attempts` tries), uploads the artifacts,
    /// sets the status, and says what reached the server and what did not.
    pub fn end(mut self, status: RunStatus) -> MlflowReport {
        for attempt in 0..self.spec.end_attempts.max(1) {
            if attempt > 0 {
                std::thread::sleep(self.backoff(attempt));
            }
            self.pump(true);
            if self.fatal.is_some() || self.failures == 0 {
                break;
            }
        }
        let artifacts = std::mem::take(&mut self.artifacts);
        for (local, path) in artifacts {
            let outcome = self.upload(&local, &path);
            self.report.artifacts.push(outcome);
        }
        if let Some(run) = self.run.clone() {
            match self
                .client
                .update_run(&run.run_id, status.as_str(), now_ms())
            {
                Ok(()) => self.report.status = Some(status),
                Err(e) => {
                    self.note(format!("{e}; the run stays RUNNING on the server"));
                    self.report.record_error(&e);
                }
            }
        }
        self.report.unsent.extend(self.buffer.drain(..));
        let params = self.pending_params.drain(..).map(|p| p.key);
        self.report.params_unsent.extend(params);
        let tags = self.pending_tags.drain(..).map(|t| t.key);
        self.report.tags_unsent.extend(tags);
        self.report
    }

    fn upload(&mut self, local: &Path, path: &str) -> ArtifactOutcome {
        let bytes = std::fs::metadata(local).map(|m| m.len()).unwrap_or(0);
        let error = match (&self.run, &self.fatal) {
            (_, Some(e)) => Some(e.to_string()),
            (None, None) => Some(format!(
                "the run was never created on {}",
                self.client.tracking_uri()
            )),
            (Some(run), None) => {
                let uri = run.artifact_uri.clone();
                let mut result = self.client.upload_artifact(&uri, path, local);
                for attempt in 1..self.spec.end_attempts {
                    match &result {
                        Err(e) if e.retryable() => {
                            std::thread::sleep(self.backoff(attempt));
                            result = self.client.upload_artifact(&uri, path, local);
                        }
                        _ => break,
                    }
                }
                result.err().map(|e| {
                    self.report.record_error(&e);
                    e.to_string()
                })
            }
        };
        ArtifactOutcome {
            path: path.to_string(),
            local: local.to_path_buf(),
            bytes,
            error,
        }
    }
}

impl Tracker for MlflowTracker {
    fn scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<(), TrackError> {
        if self.buffer.len() >= self.spec.buffer_capacity {
            if let Some(old) = self.buffer.pop_front() {
                self.report.drop_metric(&old);
            }
        }
        self.buffer.push_back(Metric {
            key: clip(tag, MAX_KEY_CHARS).0,
            value,
            timestamp: now_ms(),
            step: step as i64,
        });
        self.pump(false);
        Ok(())
    }

    // Images are not sent (MLflow has no per-step image call in its REST API): the trait's
    // default ignores them, and they stay in the TensorBoard event files.

    /// Sends what is waiting (one try; [`MlflowTracker::end`] makes the last ones).
    fn finish(&mut self) -> Result<(), TrackError> {
        self.pump(true);
        Ok(())
    }
}
