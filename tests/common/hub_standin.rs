//! The stand-in Hub of tests/hub_push.rs (tests/python/hub_standin.py, started on 127.0.0.1
//! and stopped when dropped) and the helpers that run `deepsynth` and huggingface_hub against
//! it (shared via `#[path]`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};

/// The token the stand-in accepts; it must never show up in an output or a run file.
pub const TOKEN: &str = "hf_StandInSecret7f3a9c1e5b";

pub fn hub_python() -> Option<PathBuf> {
    let p = std::env::var_os("DEEPSYNTH_HUB_PYTHON").map(PathBuf::from);
    if p.is_none() {
        let why = "set DEEPSYNTH_HUB_PYTHON to a Python with huggingface_hub \
                   (environment/setup-hub.sh)";
        assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
        eprintln!("skipped: {why}");
    }
    p
}

/// The stand-in Hub, stopped when dropped.
pub struct Standin {
    child: Child,
    pub endpoint: String,
}

impl Standin {
    /// Starts it; LFS objects over `multipart_above` bytes use the multipart transfer.
    pub fn start(python: &Path, multipart_above: u64) -> Self {
        let mut child = Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/python/hub_standin.py"
            ))
            .args(["--token", TOKEN, "--multipart-above"])
            .arg(multipart_above.to_string())
            .args(["--chunk-size", "65536"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the stand-in prints its port");
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn state(&self) -> Value {
        ureq::get(&format!("{}/_standin/state", self.endpoint))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    }

    /// Makes the next `times` requests whose path contains `path` fail with `status`.
    pub fn fail(&self, path: &str, status: u16, times: u32) {
        ureq::post(&format!("{}/_standin/fail", self.endpoint))
            .send_json(json!({"path_contains": path, "status": status, "times": times}))
            .unwrap();
    }

    /// `(path, size, sha256, lfs)` of every file of `repo`, sorted.
    pub fn files(&self, repo: &str) -> Vec<(String, u64, String, bool)> {
        let s = self.state();
        let files = s["repos"][repo]["files"]
            .as_object()
            .unwrap_or_else(|| panic!("no repo {repo}: {s}"));
        let mut v: Vec<_> = files
            .iter()
            .map(|(p, f)| {
                (
                    p.clone(),
                    f["size"].as_u64().unwrap(),
                    f["sha256"].as_str().unwrap().to_string(),
                    f["lfs"].as_bool().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `deepsynth` with the stand-in as the Hub, the token in HF_TOKEN and an empty HF_HOME.
pub fn deepsynth(hub: &Standin, home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepsynth"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HF_ENDPOINT", &hub.endpoint)
        .env("HF_TOKEN", TOKEN)
        .env("HF_HOME", home)
        .env_remove("HF_TOKEN_PATH");
    c
}

/// Runs it, checks the token is in neither output, and returns the output.
pub fn run(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    for (name, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
        let text = String::from_utf8_lossy(text);
        assert!(!text.contains(TOKEN), "the token is in {name}:\n{text}");
    }
    o
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// No file under `dir` holds the token.
pub fn token_not_in_files(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                assert!(
                    !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
                    "the token is in {}",
                    p.display()
                );
            }
        }
    }
}

/// Uploads `folder` to `repo` with huggingface_hub (LFS, not Xet: the stand-in has no Xet).
pub fn python_upload(python: &Path, hub: &Standin, home: &Path, folder: &Path, repo: &str) {
    let o = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/hub_upload.py"
        ))
        .arg(folder)
        .arg(repo)
        .env("HF_ENDPOINT", &hub.endpoint)
        .env("HF_TOKEN", TOKEN)
        .env("HF_HOME", home)
        .env("HF_HUB_DISABLE_XET", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

pub fn sha256_file(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(std::fs::read(p).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
