//! What a run did with individual examples: those it skipped (a render, tokenisation or
//! generation failure, a document that does not fit under `--on-overflow skip`) and those whose
//! page shows only part of the document. Each example is listed once per phase, however many
//! epochs meet it; the list is written to the run's `skipped.jsonl` whenever it grows.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::examples::Shown;
use super::TrainError;

/// Where an example was met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A training example.
    Train,
    /// A held-out example (evaluation).
    Eval,
}

/// One example left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedExample {
    /// Training or held-out.
    pub phase: Phase,
    /// Position in its list (training or held-out examples, as given to the run).
    pub index: usize,
    /// The example's id.
    pub id: String,
    /// What went wrong.
    pub reason: String,
    /// Optimiser steps done when it was first met.
    pub step: u64,
}

/// One example whose page shows only the beginning of the document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruncatedExample {
    /// Training or held-out.
    pub phase: Phase,
    /// Position in its list.
    pub index: usize,
    /// The example's id.
    pub id: String,
    /// What the page shows.
    pub shown: Shown,
}

/// The skipped and truncated examples of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExampleLog {
    /// Examples left out, in the order they were met.
    pub skipped: Vec<SkippedExample>,
    /// Examples shown in part, in the order they were met.
    pub truncated: Vec<TruncatedExample>,
    #[serde(skip)]
    seen_skipped: BTreeSet<(Phase, usize)>,
    #[serde(skip)]
    seen_truncated: BTreeSet<(Phase, usize)>,
}

impl ExampleLog {
    /// Rebuilds the lookup sets after deserialising.
    pub(crate) fn reindex(&mut self) {
        self.seen_skipped = self.skipped.iter().map(|s| (s.phase, s.index)).collect();
        self.seen_truncated = self.truncated.iter().map(|t| (t.phase, t.index)).collect();
    }

    /// Records a skipped example; true if it was not listed yet.
    pub fn skip(&mut self, s: SkippedExample) -> bool {
        if !self.seen_skipped.insert((s.phase, s.index)) {
            return false;
        }
        self.skipped.push(s);
        true
    }

    /// Records a truncated example (once).
    pub fn truncate(&mut self, t: TruncatedExample) {
        if self.seen_truncated.insert((t.phase, t.index)) {
            self.truncated.push(t);
        }
    }

    /// Skipped examples of one phase.
    pub fn skipped_in(&self, phase: Phase) -> usize {
        self.skipped.iter().filter(|s| s.phase == phase).count()
    }

    /// Writes the skipped examples as JSON lines to `path`, atomically.
    pub fn write_skipped(&self, path: &Path) -> Result<(), TrainError> {
        let mut body = String::new();
        for s in &self.skipped {
            body.push_str(&serde_json::to_string(s).expect("record serialises"));
            body.push('\n');
        }
        crate::fsutil::atomic_write(path, body.as_bytes()).map_err(|e| TrainError::Checkpoint {
            path: path.into(),
            reason: e.to_string(),
        })
    }
}
