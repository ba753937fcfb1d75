//! `--push-to-hub` during training ([`HubPusher`], a [`Tracker`] that only listens to
//! [`Tracker::saved`]) with the `--hub-strategy` of `transformers.TrainingArguments`:
//!
//! - `end`: one push when training ends: the best adapter and the model card at the
//!   repository's root (a run without evaluations publishes its newest checkpoint's adapter).
//! - `best`: the same push also every time `best/` is rewritten (the watched metric improved),
//!   so the repository always holds the best adapter so far; then the end push.
//! - `checkpoint`: every saved checkpoint goes to `last-checkpoint/` (all its files, enough to
//!   resume), and the end push adds the newest checkpoint under `last-checkpoint/` too.
//!
//! Pushes during training are synchronous (training waits for them) and never stop the run: a
//! failure is logged and the end push carries everything. The end push's failure is returned
//! to the caller, which keeps the run and prints [`HubPusher::retry_command`].

use std::path::{Path, PathBuf};

use super::{push_folder, stage_run, HubClient, HubError, PushReport, PushSpec, RepoId};
use crate::track::{Saved, TrackError, Tracker};

/// When a training run pushes to the Hub (`--hub-strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HubStrategy {
    /// Once, at the end.
    #[default]
    End,
    /// Whenever `best/` improves, and at the end.
    Best,
    /// Every checkpoint to `last-checkpoint/`, and at the end.
    Checkpoint,
}

impl HubStrategy {
    /// Parses `end`, `best` or `checkpoint`.
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name {
            "end" => Ok(Self::End),
            "best" => Ok(Self::Best),
            "checkpoint" => Ok(Self::Checkpoint),
            other => Err(format!(
                "unknown --hub-strategy `{other}` (valid: end, best, checkpoint)"
            )),
        }
    }

    /// The option's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::End => "end",
            Self::Best => "best",
            Self::Checkpoint => "checkpoint",
        }
    }
}

/// Pushes a training run to one repository according to a [`HubStrategy`].
pub struct HubPusher {
    client: HubClient,
    repo: RepoId,
    private: bool,
    strategy: HubStrategy,
    run: PathBuf,
    datasets: Vec<String>,
    log: Box<dyn FnMut(&str)>,
    /// Pushes during training that failed (the end push carries their content).
    pub failures: Vec<String>,
}

impl HubPusher {
    /// A pusher of the run in `run` to `repo` (created `private` when missing); the model card
    /// names `datasets`; `log` gets one line per push.
    pub fn new(
        client: HubClient,
        repo: RepoId,
        private: bool,
        strategy: HubStrategy,
        run: &Path,
        datasets: Vec<String>,
        log: Box<dyn FnMut(&str)>,
    ) -> Self {
        Self {
            client,
            repo,
            private,
            strategy,
            run: run.to_path_buf(),
            datasets,
            log,
            failures: Vec::new(),
        }
    }

    /// The repository.
    pub fn repo(&self) -> &RepoId {
        &self.repo
    }

    fn spec(&self, message: String) -> PushSpec {
        PushSpec::new(self.repo.clone(), message).private(self.private)
    }

    /// Stages the run (`<run>/hub/`) and pushes that folder with `message`.
    fn push_stage(&self, message: String, with_checkpoint: bool) -> Result<PushReport, HubError> {
        let dir = stage_run(&self.run, &self.repo, &self.datasets, with_checkpoint)?;
        push_folder(&self.client, &dir, &self.spec(message))
    }

    /// The end push: the best adapter and model card (and the newest checkpoint under
    /// `last-checkpoint/` with the `checkpoint` strategy).
    pub fn push_end(&mut self) -> Result<PushReport, HubError> {
        let r = self.push_stage(
            "DeepSynth: end of training".into(),
            self.strategy == HubStrategy::Checkpoint,
        )?;
        (self.log)(&r.line());
        Ok(r)
    }

    /// The command that pushes what the end push would have: the staged `<run>/hub/` folder.
    pub fn retry_command(&self) -> String {
        let dir = self.run.join(super::STAGE_DIR);
        let mut cmd = format!(
            "deepsynth push {} {}",
            shell_quote(&dir.display().to_string()),
            self.repo
        );
        if self.private {
            cmd.push_str(" --private");
        }
        cmd
    }

    fn during(&mut self, what: &str, r: Result<PushReport, HubError>) {
        match r {
            Ok(r) => (self.log)(&r.line()),
            Err(e) => {
                let line = format!("{what} not pushed ({e}); the end of the run pushes again");
                (self.log)(&line);
                self.failures.push(line);
            }
        }
    }
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl Tracker for HubPusher {
    fn scalar(&mut self, _: &str, _: u64, _: f64) -> Result<(), TrackError> {
        Ok(())
    }

    fn saved(&mut self, what: Saved<'_>) -> Result<(), TrackError> {
        match (self.strategy, what) {
            (HubStrategy::Best, Saved::Best { step, .. }) => {
                let r = self.push_stage(format!("DeepSynth: best adapter at step {step}"), false);
                self.during("best adapter", r);
            }
            (HubStrategy::Checkpoint, Saved::Checkpoint { dir, step }) => {
                let spec = self
                    .spec(format!("DeepSynth: checkpoint at step {step}"))
                    .under("last-checkpoint");
                let r = self
                    .client
                    .create_repo(&self.repo, self.private)
                    .and_then(|created| {
                        let files = crate::fsutil::files_under(dir);
                        let mut r = super::upload_files(&self.client, &spec, &files)?;
                        r.created = created;
                        Ok(r)
                    });
                self.during("checkpoint", r);
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_and_quoting() {
        for s in [HubStrategy::End, HubStrategy::Best, HubStrategy::Checkpoint] {
            assert_eq!(HubStrategy::from_name(s.name()), Ok(s));
        }
        let e = HubStrategy::from_name("every_save").unwrap_err();
        assert!(e.contains("valid: end, best, checkpoint"), "{e}");
        assert_eq!(shell_quote("runs/a-1/hub"), "runs/a-1/hub");
        assert_eq!(shell_quote("my run/hub"), "'my run/hub'");
    }
}
