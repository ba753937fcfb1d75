//! `--push-to-hub`, `--hub-model-id`, `--hub-private` and `--hub-strategy` of `train` and
//! `quickstart` (`transformers.TrainingArguments` names and meaning; see
//! `deepsynth::track::hub::HubStrategy` for what each strategy pushes).

use std::path::Path;

use clap::Args;
use deepsynth::track::hub::{HubClient, HubPusher, HubStrategy, RepoId};
use deepsynth::track::TrackError;

/// Options for publishing a training run to the Hugging Face Hub.
#[derive(Args, Debug, Clone)]
pub struct HubArgs {
    /// Push the best adapter and a model card to the Hugging Face Hub (HF_ENDPOINT; token from
    /// HF_TOKEN or the token file) under --hub-model-id.
    #[arg(long)]
    pub push_to_hub: bool,
    /// The repository to push to, owner/name (needed with --push-to-hub).
    #[arg(long)]
    pub hub_model_id: Option<String>,
    /// Create the repository private (an existing one keeps its visibility).
    #[arg(long, alias = "hub-private-repo")]
    pub hub_private: bool,
    /// When to push: end (once, at the end), best (also whenever best/ improves),
    /// checkpoint (also every checkpoint, to last-checkpoint/).
    #[arg(long, default_value = "end")]
    pub hub_strategy: String,
}

impl HubArgs {
    /// Checks the options (a usage error names what is wrong): the repository id and strategy
    /// when pushing, and no Hub option without --push-to-hub.
    pub fn check(&self) -> Result<Option<(RepoId, HubStrategy)>, String> {
        let strategy = HubStrategy::from_name(&self.hub_strategy)?;
        if !self.push_to_hub {
            if self.hub_model_id.is_some() || self.hub_private {
                return Err("--hub-model-id and --hub-private need --push-to-hub".into());
            }
            return Ok(None);
        }
        let id = self
            .hub_model_id
            .as_deref()
            .ok_or("--push-to-hub needs --hub-model-id owner/name")?;
        let repo = RepoId::parse(id).map_err(|e| format!("--hub-model-id: {e}"))?;
        Ok(Some((repo, strategy)))
    }

    /// The pusher of the run in `dir` (`None` without --push-to-hub); finds the token now, so
    /// that a missing one stops the command before training.
    pub fn pusher(
        &self,
        dir: &Path,
        datasets: Vec<String>,
    ) -> deepsynth::Result<Option<HubPusher>> {
        let Some((repo, strategy)) = self.check().ok().flatten() else {
            return Ok(None);
        };
        let client = HubClient::from_env().map_err(TrackError::from)?;
        eprintln!(
            "hub: pushing to {} (strategy {}{})",
            client.repo_url(&repo),
            strategy.name(),
            if self.hub_private { ", private" } else { "" }
        );
        Ok(Some(HubPusher::new(
            client,
            repo,
            self.hub_private,
            strategy,
            dir,
            datasets,
            Box::new(|l| eprintln!("{l}")),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(push: bool, id: Option<&str>, strategy: &str) -> HubArgs {
        HubArgs {
            push_to_hub: push,
            hub_model_id: id.map(str::to_string),
            hub_private: false,
            hub_strategy: strategy.into(),
        }
    }

    #[test]
    fn hub_options_are_checked_before_anything_runs() {
        assert_eq!(args(false, None, "end").check(), Ok(None));
        let (repo, s) = args(true, Some("me/x"), "best").check().unwrap().unwrap();
        assert_eq!((repo.to_string(), s), ("me/x".into(), HubStrategy::Best));
        let e = args(true, None, "end").check().unwrap_err();
        assert!(e.contains("needs --hub-model-id"), "{e}");
        let e = args(true, Some("bad id"), "end").check().unwrap_err();
        assert!(e.contains("--hub-model-id"), "{e}");
        let e = args(true, Some("me/x"), "sometimes").check().unwrap_err();
        assert!(e.contains("valid: end, best, checkpoint"), "{e}");
        assert!(args(false, Some("me/x"), "end").check().is_err());
    }
}
