//! The Hub's HTTP commit API over `ureq`: repository creation, the metadata check, the preupload
//! check and NDJSON commits (the Git LFS part is in `lfs.rs`). Every failure is a
//! [`HubError`] naming the step, the method and URL, and the HTTP status.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::{HubError, RepoId, Token, DEFAULT_ENDPOINT};
use crate::fsutil::IoError;

/// A connection to one Hub (`https://huggingface.co`, or `HF_ENDPOINT`) with a token.
#[derive(Clone)]
pub struct HubClient {
    endpoint: String,
    token: Token,
    agent: ureq::Agent,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// What a commit returned.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    /// The commit's page on the Hub.
    pub url: String,
    /// The commit id.
    pub oid: String,
}

/// One file of a commit: inline (base64 in the commit) or already uploaded through LFS.
#[derive(Clone, Debug)]
pub(crate) enum CommitOp {
    /// A small text file, sent in the commit.
    Inline { path: String, base64: String },
    /// A file uploaded through LFS, named by its SHA-256.
    Lfs {
        path: String,
        oid: String,
        size: u64,
    },
}

/// Percent-encodes a URL path segment (RFC 3986 unreserved characters stay).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The message of an error answer: the Hub's `error` field, else the body, cut to 300 chars.
fn message(body: &str) -> String {
    let v = serde_json::from_str::<Value>(body).unwrap_or(Value::Null);
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["message"].as_str()).collect())
        .unwrap_or_default();
    let m = match v["error"].as_str() {
        Some(e) => e.to_string(),
        None if !errors.is_empty() => errors.join("; "),
        None => body.trim().to_string(),
    };
    m.chars().take(300).collect()
}

/// A request body.
pub(super) enum Body<'a> {
    Json(&'a Value),
    Ndjson(&'a [u8]),
    /// `len` bytes of a file from an offset.
    File(&'a Path, u64, u64),
}

impl HubClient {
    /// A client of the Hub at `endpoint` (`http://` or `https://`) sending `token`.
    pub fn new(endpoint: &str, token: Token) -> Result<Self, HubError> {
        let endpoint = endpoint.trim().trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            || endpoint.contains('@')
        {
            return Err(HubError::Protocol {
                what: "HF_ENDPOINT".into(),
                url: endpoint,
                reason: "expected an http:// or https:// URL without credentials".into(),
            });
        }
        // Socket timeouts, not a whole-request one: a large adapter may take a while.
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .build();
        Ok(Self {
            endpoint,
            token,
            agent,
        })
    }

    /// The Hub at `HF_ENDPOINT` (default `https://huggingface.co`) with the token of
    /// [`super::find_token`].
    pub fn from_env() -> Result<Self, HubError> {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        Self::new(&endpoint, super::find_token()?)
    }

    /// The Hub's base URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The URL of a model repository's page.
    pub fn repo_url(&self, repo: &RepoId) -> String {
        format!("{}/{repo}", self.endpoint)
    }

    /// Sends one request; `auth` adds the token. Retries a transport failure, 429 and 5xx
    /// `tries - 1` times (1 s, then 2 s, ... apart).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send(
        &self,
        what: &str,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body,
        auth: bool,
        tries: u32,
    ) -> Result<ureq::Response, HubError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut r = self.agent.request(method, url);
            if auth {
                r = r.set("Authorization", &self.token.bearer());
            }
            match &body {
                Body::Json(_) => r = r.set("Content-Type", "application/json"),
                Body::Ndjson(_) => r = r.set("Content-Type", "application/x-ndjson"),
                Body::File(..) => {}
            }
            // After the body's type: an LFS request names its own.
            for (k, v) in headers {
                r = r.set(k, v);
            }
            let result = match &body {
                Body::Json(v) => r.send_bytes(&serde_json::to_vec(v).expect("JSON serialises")),
                Body::Ndjson(b) => r.send_bytes(b),
                Body::File(path, offset, len) => {
                    let mut f = std::fs::File::open(path)
                        .map_err(|e| HubError::Io(IoError::new("open", *path, e)))?;
                    f.seek(SeekFrom::Start(*offset))
                        .map_err(|e| HubError::Io(IoError::new("seek", *path, e)))?;
                    r.set("Content-Length", &len.to_string()).send(f.take(*len))
                }
            };
            let err = match result {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(status, resp)) => HubError::Http {
                    what: what.into(),
                    method: method.into(),
                    url: url.into(),
                    status,
                    message: message(&resp.into_string().unwrap_or_default()),
                },
                Err(ureq::Error::Transport(t)) => HubError::Transport {
                    what: what.into(),
                    method: method.into(),
                    url: url.into(),
                    reason: t.to_string(),
                },
            };
            if attempt >= tries || !err.retryable() {
                return Err(err);
            }
            std::thread::sleep(Duration::from_secs(attempt as u64));
        }
    }

    pub(super) fn json(what: &str, url: &str, resp: ureq::Response) -> Result<Value, HubError> {
        resp.into_string()
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .ok_or_else(|| HubError::Protocol {
                what: what.into(),
                url: url.into(),
                reason: "the answer is not JSON".into(),
            })
    }

    /// Creates the model repository (`private` or public); `Ok(false)` when it already exists
    /// (its visibility is then left as it is, as `huggingface_hub.create_repo(exist_ok=True)`).
    pub fn create_repo(&self, repo: &RepoId, private: bool) -> Result<bool, HubError> {
        let url = format!("{}/api/repos/create", self.endpoint);
        let body = json!({
            "name": repo.name(),
            "organization": repo.owner(),
            "type": "model",
            "visibility": if private { "private" } else { "public" },
        });
        match self.send("create repo", "POST", &url, &[], Body::Json(&body), true, 1) {
            Ok(_) => Ok(true),
            Err(HubError::Http { status: 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks a model card's YAML metadata with the Hub (`POST /api/validate-yaml`), as
    /// `huggingface_hub.upload_folder` does before uploading a `README.md`.
    pub(crate) fn validate_yaml(&self, content: &str) -> Result<(), HubError> {
        let url = format!("{}/api/validate-yaml", self.endpoint);
        let body = json!({"content": content, "repoType": "model"});
        match self.send(
            "validate README.md metadata",
            "POST",
            &url,
            &[],
            Body::Json(&body),
            true,
            3,
        ) {
            Ok(_) => Ok(()),
            Err(HubError::Http {
                what,
                method,
                url,
                status: 400,
                message,
            }) => Err(HubError::Http {
                what,
                method,
                url,
                status: 400,
                message: format!("invalid metadata in README.md: {message}"),
            }),
            Err(e) => Err(e),
        }
    }

    fn api(&self, repo: &RepoId, op: &str, revision: &str) -> String {
        format!(
            "{}/api/models/{repo}/{op}/{}",
            self.endpoint,
            encode(revision)
        )
    }

    /// Which of `files` (`path`, size, first 512 bytes) the Hub wants through LFS.
    pub(crate) fn preupload(
        &self,
        repo: &RepoId,
        revision: &str,
        files: &[(String, u64, Vec<u8>)],
    ) -> Result<BTreeMap<String, bool>, HubError> {
        use base64::Engine;
        let url = self.api(repo, "preupload", revision);
        let mut modes = BTreeMap::new();
        for chunk in files.chunks(256) {
            let body = json!({"files": chunk.iter().map(|(p, size, sample)| json!({
                "path": p,
                "size": size,
                "sample": base64::engine::general_purpose::STANDARD.encode(sample),
            })).collect::<Vec<_>>()});
            let resp = self.send("preupload", "POST", &url, &[], Body::Json(&body), true, 3)?;
            let v = Self::json("preupload", &url, resp)?;
            let bad = || HubError::Protocol {
                what: "preupload".into(),
                url: url.clone(),
                reason: "no `files` list with `path` and `uploadMode`".into(),
            };
            for f in v["files"].as_array().ok_or_else(bad)? {
                let (Some(p), Some(m)) = (f["path"].as_str(), f["uploadMode"].as_str()) else {
                    return Err(bad());
                };
                modes.insert(p.to_string(), m == "lfs");
            }
        }
        Ok(modes)
    }

    /// Commits `ops` to `revision` with `summary` as the commit message.
    pub(crate) fn commit(
        &self,
        repo: &RepoId,
        revision: &str,
        summary: &str,
        description: &str,
        ops: &[CommitOp],
    ) -> Result<CommitInfo, HubError> {
        let url = self.api(repo, "commit", revision);
        let mut lines = vec![
            json!({"key": "header", "value": {"summary": summary, "description": description}}),
        ];
        for op in ops {
            lines.push(match op {
                CommitOp::Inline { path, base64 } => json!({"key": "file", "value": {
                    "content": base64, "path": path, "encoding": "base64"}}),
                CommitOp::Lfs { path, oid, size } => json!({"key": "lfsFile", "value": {
                    "path": path, "algo": "sha256", "oid": oid, "size": size}}),
            });
        }
        let mut body = Vec::new();
        for l in &lines {
            body.extend(serde_json::to_vec(l).expect("JSON serialises"));
            body.push(b'\n');
        }
        let resp = self.send("commit", "POST", &url, &[], Body::Ndjson(&body), true, 1)?;
        let v = Self::json("commit", &url, resp)?;
        match (v["commitUrl"].as_str(), v["commitOid"].as_str()) {
            (Some(u), Some(o)) => Ok(CommitInfo {
                url: u.to_string(),
                oid: o.to_string(),
            }),
            _ => Err(HubError::Protocol {
                what: "commit".into(),
                url,
                reason: "no commitUrl / commitOid".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_encoded_and_messages_cut() {
        assert_eq!(encode("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode("main"), "main");
        assert_eq!(
            message(r#"{"error":"Repository not found"}"#),
            "Repository not found"
        );
        assert_eq!(message(&"x".repeat(400)).len(), 300);
        assert!(HubClient::new("ftp://x", Token::new("t")).is_err());
        assert!(HubClient::new("https://u:p@hub", Token::new("t")).is_err());
    }
}
