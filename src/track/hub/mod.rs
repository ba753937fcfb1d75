//! Publishing to the [Hugging Face Hub](https://huggingface.co/docs/hub): `deepsynth push` and
//! `deepsynth train --push-to-hub`.
//!
//! A small client of the Hub's documented HTTP commit API over `ureq` ([`HubClient`]): create a
//! repository (`POST /api/repos/create`, public or private), ask which files go through Git LFS
//! (`POST /api/{type}s/{repo}/preupload/{revision}`), upload those with the LFS batch API
//! (`POST /{repo}.git/info/lfs/objects/batch`, then the `basic` or `multipart` transfer it
//! names), and commit everything in one NDJSON request (`POST /api/{type}s/{repo}/commit/{revision}`).
//! The hf-hub crate (0.4, used for downloads) has no upload API; its 1.x releases do, on tokio
//! and reqwest, uploading large files only through Xet (see the README for the measured cost).
//!
//! What a run folder publishes ([`stage_run`]): its best adapter (`best/`'s
//! `adapter_config.json` and `adapter_model.safetensors`) and a model card ([`model_card`],
//! `README.md` with YAML metadata as PEFT and `transformers.Trainer` write it), gathered in
//! `hub/` inside the run folder, which is then uploaded as it is ([`push_folder`]).
//! The token comes from [`find_token`] and is never printed.

mod card;
mod client;
mod lfs;
mod push;
mod repo_id;
mod stage;
mod strategy;
mod token;

pub use card::{model_card, CardInputs};
pub use client::{CommitInfo, HubClient};
pub use push::{push_folder, upload_files, PushReport, PushSpec};
pub use repo_id::RepoId;
pub use stage::{stage_run, STAGE_DIR};
pub use strategy::{HubPusher, HubStrategy};
pub use token::{find_token, Token};

use std::path::PathBuf;

use crate::fsutil::IoError;

/// The default Hub (`HF_ENDPOINT` overrides it).
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Errors of publishing to the Hub: each names what failed (the endpoint and HTTP status, the
/// file, the missing token) and never holds the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// No token was found in any of the places looked at.
    #[error(
        "no Hugging Face token: set HF_TOKEN, or log in with `hf auth login` (looked at HF_TOKEN, {looked})"
    )]
    NoToken {
        /// The token files looked at, in order.
        looked: String,
    },
    /// A repository id that the Hub would refuse.
    #[error("`{id}` is not a Hub repository id (owner/name): {reason}")]
    BadRepoId {
        /// What was given.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The Hub answered with an error status.
    #[error("{what}: {method} {url} answered HTTP {status}: {message}")]
    Http {
        /// What was being done (`create repo`, `commit`, `upload adapter_model.safetensors`).
        what: String,
        /// The HTTP method.
        method: String,
        /// The URL (never with credentials).
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's message (cut to 300 characters).
        message: String,
    },
    /// The Hub could not be reached, or the connection broke.
    #[error("{what}: {method} {url} failed: {reason}")]
    Transport {
        /// What was being done.
        what: String,
        /// The HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The Hub's answer is not what its API documents.
    #[error("{what}: unexpected answer from {url}: {reason}")]
    Protocol {
        /// What was being done.
        what: String,
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The folder to push is missing, empty or not a run folder with an adapter.
    #[error("cannot push {path}: {reason}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
}

impl HubError {
    /// Whether trying again later may work: no answer, 429 or a 5xx.
    pub fn retryable(&self) -> bool {
        match self {
            HubError::Transport { .. } => true,
            HubError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
