//! Pushing a folder to a Hub model repository in one commit: list its files (leaving out
//! `.git/` and `.cache/huggingface/`, as `huggingface_hub.upload_folder` does), ask the Hub
//! which go through LFS, upload those, commit all of them.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use super::client::CommitOp;
use super::{CommitInfo, HubClient, HubError, RepoId};
use crate::fsutil::IoError;

/// Where and how to push.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PushSpec {
    /// The model repository.
    pub repo: RepoId,
    /// The branch to commit to.
    pub revision: String,
    /// Create the repository private (an existing one keeps its visibility).
    pub private: bool,
    /// The commit message.
    pub commit_message: String,
    /// A folder of the repository to put the files under (`""` for its root).
    pub path_in_repo: String,
}

impl PushSpec {
    /// A push of a folder to the root of `repo`'s `main`, public, with `commit_message`.
    pub fn new(repo: RepoId, commit_message: impl Into<String>) -> Self {
        Self {
            repo,
            revision: "main".into(),
            private: false,
            commit_message: commit_message.into(),
            path_in_repo: String::new(),
        }
    }

    /// The same, created private when `private`.
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// The same, committed to `revision`.
    pub fn revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = revision.into();
        self
    }

    /// The same, under `folder` of the repository.
    pub fn under(mut self, folder: impl Into<String>) -> Self {
        self.path_in_repo = folder.into().trim_matches('/').to_string();
        self
    }
}

/// What a push did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PushReport {
    /// The repository's page.
    pub repo_url: String,
    /// Whether this push created the repository.
    pub created: bool,
    /// The commit.
    pub commit: CommitInfo,
    /// Each file: path in the repository, size, and whether it went through LFS.
    pub files: Vec<(String, u64, bool)>,
}

impl PushReport {
    /// One line about the push: files, bytes, how many through LFS, where, the commit.
    pub fn line(&self) -> String {
        let bytes: u64 = self.files.iter().map(|f| f.1).sum();
        format!(
            "hub: pushed {} file(s), {bytes} bytes ({} through LFS) to {}{}: commit {}",
            self.files.len(),
            self.files.iter().filter(|f| f.2).count(),
            self.repo_url,
            if self.created { " (created)" } else { "" },
            self.commit.oid
        )
    }
}

/// Whether `rel` (a `/`-separated path) is left out of an upload, as by `upload_folder`.
fn ignored(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    parts.contains(&".git")
        || parts
            .windows(2)
            .any(|w| w[0] == ".cache" && w[1] == "huggingface")
}

/// The files of `folder` to upload, as (file, path relative to the folder).
fn folder_files(folder: &Path) -> Result<Vec<(PathBuf, String)>, HubError> {
    if !folder.is_dir() {
        return Err(HubError::Folder {
            path: folder.into(),
            reason: "not a folder".into(),
        });
    }
    let files: Vec<_> = crate::fsutil::files_under(folder)
        .into_iter()
        .filter(|(_, rel)| !ignored(rel))
        .collect();
    if files.is_empty() {
        return Err(HubError::Folder {
            path: folder.into(),
            reason: "it holds no files".into(),
        });
    }
    Ok(files)
}

/// Creates the repository when missing and pushes every file of `folder` in one commit.
pub fn push_folder(
    client: &HubClient,
    folder: &Path,
    spec: &PushSpec,
) -> Result<PushReport, HubError> {
    let files = folder_files(folder)?;
    let created = client.create_repo(&spec.repo, spec.private)?;
    let mut report = upload_files(client, spec, &files)?;
    report.created = created;
    Ok(report)
}

/// Size, first 512 bytes and SHA-256 of a file.
fn describe(path: &Path) -> Result<(u64, Vec<u8>, String), HubError> {
    let io = |op, e| HubError::Io(IoError::new(op, path, e));
    let mut f = std::fs::File::open(path).map_err(|e| io("open", e))?;
    let mut hasher = Sha256::new();
    let mut sample = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io("read", e))?;
        if n == 0 {
            break;
        }
        if sample.len() < 512 {
            let take = (512 - sample.len()).min(n);
            sample.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let oid = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, sample, oid))
}

/// Pushes `files` (local file, path relative to the pushed folder) to an existing repository
/// in one commit: the preupload check, LFS uploads, then the commit.
pub fn upload_files(
    client: &HubClient,
    spec: &PushSpec,
    files: &[(PathBuf, String)],
) -> Result<PushReport, HubError> {
    let in_repo = |rel: &str| match spec.path_in_repo.as_str() {
        "" => rel.to_string(),
        dir => format!("{dir}/{rel}"),
    };
    if let Some((card, _)) = files.iter().find(|(_, rel)| rel == "README.md") {
        if spec.path_in_repo.is_empty() {
            let text = std::fs::read_to_string(card).map_err(|e| IoError::new("read", card, e))?;
            client.validate_yaml(&text)?;
        }
    }
    let mut described = Vec::with_capacity(files.len());
    for (path, rel) in files {
        let (size, sample, oid) = describe(path)?;
        described.push((path, in_repo(rel), size, sample, oid));
    }
    let check: Vec<(String, u64, Vec<u8>)> = described
        .iter()
        .map(|(_, p, size, sample, _)| (p.clone(), *size, sample.clone()))
        .collect();
    let modes = client.preupload(&spec.repo, &spec.revision, &check)?;
    // Empty files cannot go through LFS; the Hub takes them inline.
    let lfs = |p: &str, size: u64| size > 0 && modes.get(p).copied().unwrap_or(false);
    let objects: Vec<(String, u64)> = described
        .iter()
        .filter(|(_, p, size, ..)| lfs(p, *size))
        .map(|(_, _, size, _, oid)| (oid.clone(), *size))
        .collect();
    for chunk in objects.chunks(256) {
        let actions = client.lfs_batch(&spec.repo, &spec.revision, chunk)?;
        for obj in &actions {
            if let Some((path, p, size, ..)) = described
                .iter()
                .find(|(_, p, size, _, oid)| *oid == obj.oid && lfs(p, *size))
            {
                client.lfs_upload(obj, path, *size, p)?;
            }
        }
    }
    let mut ops = Vec::with_capacity(described.len());
    let mut listed = Vec::with_capacity(described.len());
    for (path, p, size, _, oid) in &described {
        let is_lfs = lfs(p, *size);
        ops.push(if is_lfs {
            CommitOp::Lfs {
                path: p.clone(),
                oid: oid.clone(),
                size: *size,
            }
        } else {
            let bytes = std::fs::read(path).map_err(|e| IoError::new("read", *path, e))?;
            CommitOp::Inline {
                path: p.clone(),
                base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            }
        });
        listed.push((p.clone(), *size, is_lfs));
    }
    let commit = client.commit(&spec.repo, &spec.revision, &spec.commit_message, "", &ops)?;
    Ok(PushReport {
        repo_url: client.repo_url(&spec.repo),
        created: false,
        commit,
        files: listed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_and_hf_cache_folders_are_left_out() {
        assert!(ignored(".git/config"));
        assert!(ignored("sub/.git/HEAD"));
        assert!(ignored(".cache/huggingface/upload/x.lock"));
        assert!(!ignored("adapter_model.safetensors"));
        assert!(!ignored(".cache/other"));
        assert!(!ignored("README.md"));
    }

    #[test]
    fn describe_gives_size_sample_and_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 1000]).unwrap();
        let (size, sample, oid) = describe(&p).unwrap();
        assert_eq!((size, sample.len()), (1000, 512));
        let want: String = Sha256::digest(vec![7u8; 1000])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(oid, want);
        let e = folder_files(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("not a folder"), "{e}");
    }
}
