//! What reached the MLflow server and what did not, for the end of a run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::batch::{Batch, Metric};
use super::client::MlflowError;

/// How a run ended, as MLflow's `RunStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RunStatus {
    /// The run completed.
    #[serde(rename = "FINISHED")]
    Finished,
    /// The run stopped on an error.
    #[serde(rename = "FAILED")]
    Failed,
    /// The run was interrupted (Ctrl-C).
    #[serde(rename = "KILLED")]
    Killed,
}

impl RunStatus {
    /// MLflow's name: `FINISHED`, `FAILED` or `KILLED`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }
}

/// One file meant as an artifact.
#[derive(Clone, Debug, Serialize)]
pub struct ArtifactOutcome {
    /// Path in the run's artifacts.
    pub path: String,
    /// The local file.
    pub local: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Why it was not uploaded; `None` when it was.
    pub error: Option<String>,
}

/// The most distinct errors a report keeps.
const MAX_ERRORS: usize = 20;

/// What an [`MlflowTracker`](super::MlflowTracker) sent, and everything it could not.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct MlflowReport {
    /// The server.
    pub tracking_uri: String,
    /// The experiment, once the run was created.
    pub experiment_id: Option<String>,
    /// The run, once created.
    pub run_id: Option<String>,
    /// The status set on the server; `None` when it could not be set (the run stays
    /// `RUNNING` there).
    pub status: Option<RunStatus>,
    /// Metric values the server accepted.
    pub metrics_sent: usize,
    /// Params the server accepted.
    pub params_sent: usize,
    /// Metric values that did not reach it, in logging order: those it refused, then those
    /// still waiting when the run ended.
    pub unsent: Vec<Metric>,
    /// Metric values dropped from the full buffer (oldest first), not in `unsent`.
    pub dropped: usize,
    /// Steps of the first and last dropped value.
    pub dropped_steps: Option<(i64, i64)>,
    /// Params not sent (keys).
    pub params_unsent: Vec<String>,
    /// Tags not sent (keys).
    pub tags_unsent: Vec<String>,
    /// Every artifact meant for the run.
    pub artifacts: Vec<ArtifactOutcome>,
    /// Distinct errors, first seen first (at most 20).
    pub errors: Vec<String>,
    /// What happened on the way (server lost, back, requests refused).
    pub notes: Vec<String>,
}

impl MlflowReport {
    pub(super) fn new(tracking_uri: &str) -> Self {
        Self {
            tracking_uri: tracking_uri.to_string(),
            experiment_id: None,
            run_id: None,
            status: None,
            metrics_sent: 0,
            params_sent: 0,
            unsent: Vec::new(),
            dropped: 0,
            dropped_steps: None,
            params_unsent: Vec::new(),
            tags_unsent: Vec::new(),
            artifacts: Vec::new(),
            errors: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(super) fn record_error(&mut self, e: &MlflowError) {
        let text = e.to_string();
        if self.errors.len() < MAX_ERRORS && !self.errors.contains(&text) {
            self.errors.push(text);
        }
    }

    pub(super) fn refused(&mut self, b: Batch) {
        self.unsent.extend(b.metrics);
        self.params_unsent
            .extend(b.params.into_iter().map(|p| p.key));
        self.tags_unsent.extend(b.tags.into_iter().map(|t| t.key));
    }

    pub(super) fn drop_metric(&mut self, m: &Metric) {
        self.dropped += 1;
        self.dropped_steps = Some(match self.dropped_steps {
            None => (m.step, m.step),
            Some((first, _)) => (first, m.step),
        });
    }

    /// The run's page in the MLflow UI.
    pub fn run_url(&self) -> Option<String> {
        match (&self.experiment_id, &self.run_id) {
            (Some(e), Some(r)) => Some(format!("{}/#/experiments/{e}/runs/{r}", self.tracking_uri)),
            _ => None,
        }
    }

    /// Whether everything reached the server and the status was set.
    pub fn is_complete(&self) -> bool {
        self.status.is_some()
            && self.unsent.is_empty()
            && self.dropped == 0
            && self.params_unsent.is_empty()
            && self.tags_unsent.is_empty()
            && self.artifacts.iter().all(|a| a.error.is_none())
    }

    /// The unsent metric values per key: count, first and last step.
    pub fn unsent_by_key(&self) -> BTreeMap<String, (usize, i64, i64)> {
        let mut out: BTreeMap<String, (usize, i64, i64)> = BTreeMap::new();
        for m in &self.unsent {
            let e = out.entry(m.key.clone()).or_insert((0, m.step, m.step));
            e.0 += 1;
            e.1 = e.1.min(m.step);
            e.2 = e.2.max(m.step);
        }
        out
    }

    /// A few lines for people: where the run is, what was sent, and what was not.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![match (self.run_url(), self.status) {
            (Some(url), Some(s)) => format!("MLflow run {url} ({})", s.as_str()),
            (Some(url), None) => format!("MLflow run {url} (status not set: still RUNNING there)"),
            (None, _) => format!("MLflow: no run could be created on {}", self.tracking_uri),
        }];
        let uploaded = self.artifacts.iter().filter(|a| a.error.is_none()).count();
        out.push(format!(
            "MLflow: {} metric values, {} params, {uploaded} of {} artifacts sent",
            self.metrics_sent,
            self.params_sent,
            self.artifacts.len()
        ));
        if !self.unsent.is_empty() {
            out.push(format!(
                "MLflow: {} metric values NOT sent (they are in the run folder's metrics.jsonl):",
                self.unsent.len()
            ));
            for (key, (n, first, last)) in self.unsent_by_key() {
                out.push(format!("  {key}: {n} values, steps {first} to {last}"));
            }
        }
        if self.dropped > 0 {
            let (a, b) = self.dropped_steps.unwrap_or_default();
            out.push(format!(
                "MLflow: {} metric values dropped from the full buffer (steps {a} to {b}; they \
                 are in metrics.jsonl)",
                self.dropped
            ));
        }
        for (what, keys) in [("params", &self.params_unsent), ("tags", &self.tags_unsent)] {
            match keys.len() {
                0 => {}
                1..=8 => out.push(format!("MLflow: {what} NOT sent: {}", keys.join(", "))),
                n => out.push(format!(
                    "MLflow: {n} {what} NOT sent (listed in mlflow.json)"
                )),
            }
        }
        for a in &self.artifacts {
            if let Some(e) = &a.error {
                out.push(format!("MLflow: artifact {} NOT uploaded: {e}", a.path));
            }
        }
        if !self.is_complete() {
            for e in &self.errors {
                out.push(format!("MLflow error: {e}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_groups_unsent_values_by_key() {
        let mut r = MlflowReport::new("http://h:1");
        assert!(!r.is_complete());
        r.experiment_id = Some("3".into());
        r.run_id = Some("abc".into());
        r.status = Some(RunStatus::Finished);
        assert!(r.is_complete());
        assert_eq!(r.run_url().unwrap(), "http://h:1/#/experiments/3/runs/abc");
        for (k, s) in [("train/loss", 5), ("train/loss", 7), ("eval/rougeL", 6)] {
            r.unsent.push(Metric {
                key: k.into(),
                value: 1.0,
                timestamp: 0,
                step: s,
            });
        }
        assert!(!r.is_complete());
        let by = r.unsent_by_key();
        assert_eq!(by["train/loss"], (2, 5, 7));
        assert_eq!(by["eval/rougeL"], (1, 6, 6));
        let text = r.lines().join("\n");
        assert!(text.contains("3 metric values NOT sent"), "{text}");
        assert!(
            text.contains("train/loss: 2 values, steps 5 to 7"),
            "{text}"
        );
    }
}
