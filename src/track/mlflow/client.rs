//! A client of MLflow's REST API (`/api/2.0/mlflow/...`) and of the artifact proxy
//! (`/api/2.0/mlflow-artifacts/artifacts/...`) of a tracking server started with
//! `--serve-artifacts` (the default when it has `--artifacts-destination`).
//!
//! Endpoints used: `experiments/get-by-name`, `experiments/create`, `runs/create`,
//! `runs/log-batch`, `runs/update`, `runs/set-tag`, and `PUT` on the artifact proxy.
//! Authentication follows MLflow's environment variables: `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD` (HTTP basic), else `MLFLOW_TRACKING_TOKEN` (bearer).

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::batch::{Batch, KeyValue};

/// A request to the tracking server that failed: which URL, what was being done, why, and the
/// HTTP status when the server answered.
#[derive(Clone, Debug, thiserror::Error)]
#[error("MLflow {what} at {url}: {reason}")]
pub struct MlflowError {
    /// The URL requested (without credentials).
    pub url: String,
    /// What was being done (`create run`, `log-batch`, `upload artifact best/adapter_config.json`).
    pub what: String,
    /// The server's error code and message, or the transport failure.
    pub reason: String,
    /// HTTP status; `None` when the server could not be reached or did not answer, `Some(0)`
    /// for a failure that is not an HTTP status and that trying again cannot fix (a bad
    /// tracking URI, a local file that cannot be read, a server that does not proxy artifacts,
    /// an answer without the fields MLflow documents).
    pub status: Option<u16>,
}

impl MlflowError {
    /// Whether trying again later may work: no answer (the server is down or unreachable),
    /// 429 (rate limit) or a 5xx. Any other status means the request itself was refused.
    pub fn retryable(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s == 429 || s >= 500,
        }
    }
}

/// Credentials sent with every request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// None.
    #[default]
    None,
    /// HTTP basic authentication (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`).
    Basic {
        /// User.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer token (`MLFLOW_TRACKING_TOKEN`).
    Bearer(String),
}

impl Auth {
    /// From MLflow's environment variables: username and password first, then the token (the
    /// order MLflow's own client uses).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (
            var("MLFLOW_TRACKING_USERNAME"),
            var("MLFLOW_TRACKING_PASSWORD"),
            var("MLFLOW_TRACKING_TOKEN"),
        ) {
            (Some(username), Some(password), _) => Auth::Basic { username, password },
            (_, _, Some(token)) => Auth::Bearer(token),
            _ => Auth::None,
        }
    }

    fn header(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
        }
    }
}

/// What `runs/create` returned that later requests need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// The experiment's id.
    pub experiment_id: String,
    /// Where the server keeps the run's artifacts (`mlflow-artifacts:/...` when it proxies).
    pub artifact_uri: String,
}

/// A connection to one MLflow tracking server.
#[derive(Clone)]
pub struct MlflowClient {
    base: String,
    auth: Auth,
    agent: ureq::Agent,
}

impl std::fmt::Debug for MlflowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes a path (keeping `/` and RFC 3986 unreserved characters).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl MlflowClient {
    /// A client of the server at `tracking_uri` (`http://` or `https://`, optionally with a
    /// path prefix). Nothing is sent yet. Any other URI (a local folder, `databricks`) is
    /// refused, naming it.
    pub fn new(tracking_uri: &str, auth: Auth) -> Result<Self, MlflowError> {
        let uri = tracking_uri.trim().trim_end_matches('/');
        if !(uri.starts_with("http://") || uri.starts_with("https://")) || uri.contains('@') {
            return Err(MlflowError {
                url: uri.to_string(),
                what: "tracking URI".into(),
                reason: "DeepSynth talks to an MLflow tracking server over its REST API: the \
                         URI must be http://host:port or https://... (credentials go in \
                         MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or \
                         MLFLOW_TRACKING_TOKEN)"
                    .into(),
                status: Some(0),
            });
        }
        // Socket timeouts, not a whole-request one: an adapter upload may take a while, but a
        // server that stops answering holds a training step for at most 20 s per try.
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout_read(Duration::from_secs(20))
            .timeout_write(Duration::from_secs(20))
            .build();
        Ok(Self {
            base: uri.to_string(),
            auth,
            agent,
        })
    }

    /// A client of `MLFLOW_TRACKING_URI` with [`Auth::from_env`].
    pub fn from_env() -> Result<Self, MlflowError> {
        let uri = std::env::var("MLFLOW_TRACKING_URI").unwrap_or_default();
        if uri.trim().is_empty() {
            return Err(MlflowError {
                url: String::new(),
                what: "tracking URI".into(),
                reason: "MLFLOW_TRACKING_URI is not set (the http(s) address of an MLflow \
                         tracking server, e.g. http://127.0.0.1:5000)"
                    .into(),
                status: Some(0),
            });
        }
        Self::new(&uri, Auth::from_env())
    }

    /// The server's address.
    pub fn tracking_uri(&self) -> &str {
        &self.base
    }

    fn api(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/mlflow/{endpoint}", self.base)
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let r = self.agent.request(method, url);
        match self.auth.header() {
            Some(h) => r.set("Authorization", &h),
            None => r,
        }
    }

    /// Sends a request; the answer's JSON, or an error saying what failed.
    fn send(
        &self,
        what: &str,
        url: &str,
        r: ureq::Request,
        body: Body<'_>,
    ) -> Result<Value, MlflowError> {
        let fail = |reason: String, status: Option<u16>| MlflowError {
            url: url.to_string(),
            what: what.to_string(),
            reason,
            status,
        };
        let result = match body {
            Body::None => r.call(),
            Body::Json(v) => r.send_json(v),
            Body::File(file, len) => r
                .set("Content-Type", "application/octet-stream")
                .set("Content-Length", &len.to_string())
                .send(file),
        };
        match result {
            Ok(resp) => {
                let text = resp
                    .into_string()
                    .map_err(|e| fail(format!("reading the answer: {e}"), None))?;
                if text.trim().is_empty() {
                    return Ok(json!({}));
                }
                serde_json::from_str(&text)
                    .map_err(|e| fail(format!("the answer is not JSON ({e}): {text:.200}"), None))
            }
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let reason = match serde_json::from_str::<Value>(&text) {
                    Ok(v) if v.get("error_code").is_some() => format!(
                        "HTTP {code} {}: {}",
                        v["error_code"].as_str().unwrap_or_default(),
                        v["message"].as_str().unwrap_or_default()
                    ),
                    _ => format!(
                        "HTTP {code}: {}",
                        text.chars().take(300).collect::<String>()
                    ),
                };
                Err(fail(reason, Some(code)))
            }
            Err(ureq::Error::Transport(t)) => {
                // ureq starts its message with the URL, which the error already names.
                let text = t.to_string();
                let text = match t.url() {
                    Some(u) => text
                        .strip_prefix(&format!("{u}: "))
                        .unwrap_or(&text)
                        .to_string(),
                    None => text,
                };
                Err(fail(text, None))
            }
        }
    }

    fn post(&self, what: &str, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        let url = self.api(endpoint);
        self.send(what, &url, self.request("POST", &url), Body::Json(body))
    }

    /// The id of the experiment called `name`, created when there is none.
    pub fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        let url = self.api("experiments/get-by-name");
        let get = || {
            self.send(
                &format!("get experiment `{name}`"),
                &url,
                self.request("GET", &url).query("experiment_name", name),
                Body::None,
            )
        };
        let id = |v: &Value, at: &str| -> Result<String, MlflowError> {
            v.pointer(at)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| MlflowError {
                    url: url.clone(),
                    what: format!("experiment `{name}`"),
                    reason: format!("the answer has no {at}: {v}"),
                    status: Some(0),
                })
        };
        match get() {
            Ok(v) => id(&v, "/experiment/experiment_id"),
            Err(e) if e.status == Some(404) => {
                match self.post(
                    &format!("create experiment `{name}`"),
                    "experiments/create",
                    &json!({ "name": name }),
                ) {
                    Ok(v) => id(&v, "/experiment_id"),
                    // Created by someone else in between.
                    Err(e) if e.reason.contains("RESOURCE_ALREADY_EXISTS") => {
                        id(&get()?, "/experiment/experiment_id")
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Starts a run in `experiment_id` (status RUNNING) with a name and tags.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: Option<&str>,
        start_time_ms: i64,
        tags: &[KeyValue],
    ) -> Result<RunInfo, MlflowError> {
        let mut body = json!({
            "experiment_id": experiment_id,
            "start_time": start_time_ms,
            "tags": tags,
        });
        if let Some(n) = run_name {
            body["run_name"] = json!(n);
        }
        let v = self.post("create run", "runs/create", &body)?;
        let info = &v["run"]["info"];
        let field = |k: &str| info[k].as_str().map(str::to_string);
        match (field("run_id"), field("artifact_uri")) {
            (Some(run_id), Some(artifact_uri)) => Ok(RunInfo {
                run_id,
                experiment_id: field("experiment_id").unwrap_or_else(|| experiment_id.into()),
                artifact_uri,
            }),
            _ => Err(MlflowError {
                url: self.api("runs/create"),
                what: "create run".into(),
                reason: format!("the answer has no run.info.run_id / artifact_uri: {v}"),
                status: Some(0),
            }),
        }
    }

    /// Logs one batch (which must be within MLflow's limits, see
    /// [`split_batches`](super::batch::split_batches)).
    pub fn log_batch(&self, run_id: &str, batch: &Batch) -> Result<(), MlflowError> {
        let mut body = serde_json::to_value(batch).expect("batch serialises");
        body["run_id"] = json!(run_id);
        self.post("log-batch", "runs/log-batch", &body).map(|_| ())
    }

    /// Sets the run's status (`FINISHED`, `FAILED`, `KILLED`) and end time.
    pub fn update_run(
        &self,
        run_id: &str,
        status: &str,
        end_time_ms: i64,
    ) -> Result<(), MlflowError> {
        self.post(
            &format!("set run status {status}"),
            "runs/update",
            &json!({ "run_id": run_id, "status": status, "end_time": end_time_ms }),
        )
        .map(|_| ())
    }

    /// Sets one tag of the run.
    pub fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        self.post(
            &format!("set tag {key}"),
            "runs/set-tag",
            &json!({ "run_id": run_id, "key": key, "value": value }),
        )
        .map(|_| ())
    }

    /// The artifact proxy URL of `path` (relative, `/`-separated) under `artifact_uri`, or why
    /// there is none (the server stores artifacts somewhere this client cannot write).
    pub fn artifact_url(&self, artifact_uri: &str, path: &str) -> Result<String, String> {
        let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(format!(
                "the server does not proxy artifacts (the run's artifact URI is \
                 `{artifact_uri}`; start it with --artifacts-destination, which serves them)"
            ));
        };
        // `mlflow-artifacts://host:port/path` names the server; the path is what matters.
        let root = match rest.strip_prefix("//") {
            Some(with_host) => with_host.find('/').map_or("", |i| &with_host[i..]),
            None => rest,
        };
        Ok(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{}",
            self.base,
            encode_path(root.trim_matches('/')),
            encode_path(path.trim_start_matches('/'))
        ))
    }

    /// Uploads the file `local` (streamed) as the artifact `path` of the run whose artifact
    /// URI is `artifact_uri`.
    pub fn upload_artifact(
        &self,
        artifact_uri: &str,
        path: &str,
        local: &Path,
    ) -> Result<(), MlflowError> {
        let what = format!("upload artifact {path}");
        let fail = |url: &str, reason: String| MlflowError {
            url: url.to_string(),
            what: what.clone(),
            reason,
            status: Some(0),
        };
        let url = self
            .artifact_url(artifact_uri, path)
            .map_err(|reason| fail(&self.base, reason))?;
        let file = std::fs::File::open(local)
            .map_err(|e| fail(&url, format!("reading {}: {e}", local.display())))?;
        let len = file
            .metadata()
            .map_err(|e| fail(&url, format!("reading {}: {e}", local.display())))?
            .len();
        self.send(
            &what,
            &url,
            self.request("PUT", &url),
            Body::File(file, len),
        )
        .map(|_| ())
    }
}

enum Body<'a> {
    None,
    Json(&'a Value),
    File(std::fs::File, u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_artifact_urls() {
        assert!(MlflowClient::new("file:///tmp/mlruns", Auth::None).is_err());
        assert!(MlflowClient::new("databricks", Auth::None).is_err());
        assert!(MlflowClient::new("http://u:p@host", Auth::None).is_err());
        let c = MlflowClient::new("http://127.0.0.1:5000/prefix/", Auth::None).unwrap();
        assert_eq!(c.tracking_uri(), "http://127.0.0.1:5000/prefix");
        let want = "http://127.0.0.1:5000/prefix/api/2.0/mlflow-artifacts/artifacts/1/abc/\
                    artifacts/best/a%20b.json";
        for uri in [
            "mlflow-artifacts:/1/abc/artifacts",
            "mlflow-artifacts://elsewhere:5000/1/abc/artifacts",
        ] {
            assert_eq!(c.artifact_url(uri, "best/a b.json").unwrap(), want);
        }
        let err = c
            .artifact_url("/srv/mlruns/1/abc/artifacts", "x")
            .unwrap_err();
        assert!(err.contains("does not proxy"), "{err}");
    }

    #[test]
    fn auth_headers() {
        let basic = Auth::Basic {
            username: "user".into(),
            password: "pass".into(),
        };
        assert_eq!(basic.header().unwrap(), "Basic dXNlcjpwYXNz");
        assert_eq!(Auth::Bearer("t".into()).header().unwrap(), "Bearer t");
        assert_eq!(Auth::None.header(), None);
    }

    #[test]
    fn unreachable_server_is_a_retryable_error_naming_the_url() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = MlflowClient::new(&format!("http://127.0.0.1:{port}"), Auth::None).unwrap();
        let e = c.experiment_id("x").unwrap_err();
        assert!(e.retryable());
        assert!(
            e.url.contains(&format!("127.0.0.1:{port}/api/2.0/mlflow/")),
            "{e}"
        );
        assert!(e.to_string().contains("get experiment `x`"), "{e}");
    }
}
