//! A real MLflow tracking server for tests: `mlflow server` on 127.0.0.1 with a SQLite store
//! and proxied artifacts, in its own process group, stopped when dropped; and MLflow's own
//! Python client reading a run back (`tests/python/mlflow_readback.py`).
//!
//! The `mlflow` program comes from `DEEPSYNTH_MLFLOW` (a path; then every problem is a test
//! failure) or from `PATH`; with neither the tests print why and pass without running.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `mlflow` program, or `None` (after printing why) when the test should be skipped.
pub fn mlflow_exe(test: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DEEPSYNTH_MLFLOW").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "DEEPSYNTH_MLFLOW={} is not a file (the venv's bin/mlflow)",
            p.display()
        );
        return Some(p);
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("mlflow"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!(
            "skipping {test}: no MLflow (set DEEPSYNTH_MLFLOW=/path/to/venv/bin/mlflow, or put \
             mlflow on PATH; environment/test.sh installs it from \
             environment/requirements-mlflow.txt)"
        );
    }
    found
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `mlflow server`.
pub struct Server {
    exe: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Server {
    /// Starts a server keeping its database and artifacts in `dir`, and waits until it answers.
    pub fn start(exe: &Path, dir: &Path) -> Self {
        let mut s = Server {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            port: free_port(),
            child: None,
        };
        s.restart();
        s
    }

    /// `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The Python of the `mlflow` program's environment.
    pub fn python(&self) -> PathBuf {
        let venv = self.exe.with_file_name("python");
        if venv.is_file() {
            venv
        } else {
            PathBuf::from("python3")
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Starts it again (same port, database and artifacts) after [`Server::stop`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = Command::new(&self.exe)
            .args(["server", "--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                self.dir.join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(self.dir.join("artifacts"))
            .args(["--workers", "1"])
            // Background job runners (several Python processes) are not needed here.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.exe.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(240);
        let url = format!("{}/health", self.uri());
        loop {
            if ureq::get(&url).call().is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mlflow server exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server did not answer {url} within 240 s:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Stops it (SIGTERM to its process group, SIGKILL after 20 s) and waits until the port
    /// refuses connections.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = child.id() as i32;
        // SAFETY: signals the process group this server was started in.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: as above; whatever is left of the group.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = child.wait();
        let addr = format!("127.0.0.1:{}", self.port);
        while std::net::TcpStream::connect(&addr).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A run as MLflow's own Python client reads it: status, name, experiment, params, tags,
    /// every metric's history `[step, value, timestamp]`, and artifacts (size, SHA-256).
    pub fn read_run(&self, run_id: &str) -> serde_json::Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/mlflow_readback.py");
        let o = Command::new(self.python())
            .arg(script)
            .arg(self.uri())
            .arg(run_id)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "mlflow_readback.py failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(p).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
