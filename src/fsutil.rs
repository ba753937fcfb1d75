//! Atomic file output: write to a temporary sibling, flush and sync, verify, then rename.
//!
//! A crash or a full disk mid-write leaves the previous file (if any) untouched and at most a
//! stray `.tmp-*` sibling, never a truncated file under the final name.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// I/O failure with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct IoError {
    /// What was being done ("read", "write", "rename", ...).
    pub op: &'static str,
    /// The file or folder involved.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// Wraps `source` with the operation and path it failed on.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, fsync, rename).
///
/// The temporary file is read back and compared in length before the rename, so a short write
/// (disk full) is reported and never replaces an existing file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let tmp = temp_sibling(path);
    let result = write_verified(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| IoError::new("rename", path, e)))
        .and_then(|()| sync_parent(path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_verified(tmp: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let mut file = fs::File::create(tmp).map_err(|e| IoError::new("create", tmp, e))?;
    file.write_all(bytes)
        .map_err(|e| IoError::new("write", tmp, e))?;
    file.sync_all().map_err(|e| IoError::new("sync", tmp, e))?;
    let written = fs::metadata(tmp)
        .map_err(|e| IoError::new("stat", tmp, e))?
        .len();
    if written != bytes.len() as u64 {
        let msg = format!("short write: {written} of {} bytes", bytes.len());
        return Err(IoError::new("verify", tmp, std::io::Error::other(msg)));
    }
    Ok(())
}

/// `dir/.tmp-<pid>-<name>` beside `path`: same filesystem, so the rename is atomic.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// Writes a whole folder atomically: `fill` populates a temporary sibling, `verify` checks it,
/// then it replaces `dir` (exchanged with an existing `dir` in one `renameat2` on Linux, the old
/// contents removed afterwards). On any failure the temporary folder is removed and `dir` is
/// untouched; a crash at any point leaves either the old or the new complete folder.
pub fn atomic_dir(
    dir: &Path,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
    verify: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), IoError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    let tmp = temp_sibling(dir);
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(|e| IoError::new("create folder", &tmp, e))?;
    let result = fill(&tmp)
        .and_then(|()| sync_dir_files(&tmp))
        .and_then(|()| verify(&tmp))
        .map_err(|e| IoError::new("write", &tmp, e))
        .and_then(|()| {
            if dir.exists() {
                // Swap the folders in one step, then drop the old contents (now at `tmp`).
                exchange(&tmp, dir)?;
                sync_parent(dir)?;
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            } else {
                fs::rename(&tmp, dir).map_err(|e| IoError::new("rename", &tmp, e))?;
                sync_parent(dir)
            }
        });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

/// Atomically exchanges two paths (`renameat2(RENAME_EXCHANGE)`): at every instant each name
/// refers to one complete folder, so a crash between steps never leaves `b` missing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> Result<(), IoError> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes())
        .map_err(|e| IoError::new("rename", a, std::io::Error::other(e)))?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes())
        .map_err(|e| IoError::new("rename", b, std::io::Error::other(e)))?;
    // SAFETY: both paths are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(IoError::new("exchange", b, std::io::Error::last_os_error()))
    }
}

/// Elsewhere: move the old folder aside, move the new one in (a crash in between leaves the
/// previous folder under its `.old-*` name).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(a: &Path, b: &Path) -> Result<(), IoError> {
    let old = b.with_file_name(format!(
        ".old-{}-{}",
        std::process::id(),
        b.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    fs::rename(b, &old).map_err(|e| IoError::new("rename", b, e))?;
    if let Err(e) = fs::rename(a, b) {
        let _ = fs::rename(&old, b);
        return Err(IoError::new("rename", a, e));
    }
    fs::rename(&old, a).map_err(|e| IoError::new("rename", &old, e))
}

/// Flushes the folder entry of `path` (its parent), so a rename survives a power loss.
fn sync_parent(path: &Path) -> Result<(), IoError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(parent)
        .and_then(|f| f.sync_all())
        .map_err(|e| IoError::new("sync folder", parent, e))
}

/// Syncs every file under `dir` (recursively) and the folders themselves.
fn sync_dir_files(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_dir_files(&path)?;
        } else if path.is_file() {
            fs::File::open(&path)?.sync_all()?;
        }
    }
    fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and its parents, naming the folder on failure.
pub fn create_dir_all(dir: &Path) -> Result<(), IoError> {
    fs::create_dir_all(dir).map_err(|e| IoError::new("create folder", dir, e))
}

/// Every file under `dir` (recursively, sorted) with its `/`-separated path relative to `dir`.
pub(crate) fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((p.clone(), rel));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_existing_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        atomic_write(&p, b"first").unwrap();
        atomic_write(&p, b"second!").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second!");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
    }

    #[test]
    fn missing_folder_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/out.bin");
        let err = atomic_write(&p, b"x").unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
