//! MLflow tracking against a real `mlflow server` (SQLite store, proxied artifacts) on
//! 127.0.0.1, read back with MLflow's own Python client: a run logged through the library
//! (params, tags, every metric value and step, artifacts, status, all exactly as sent, with
//! enough of each to need several `log-batch` requests), `deepsynth train --report-to
//! tensorboard,mlflow` (MLflow holds exactly `metrics.jsonl`), a failed and an interrupted run
//! (`FAILED`, `KILLED`), `deepsynth quickstart --report-to mlflow`, and a server stopped
//! mid-run (training goes on, the report lists what was not sent, a restarted server gets the
//! rest).
//!
//! Needs `mlflow` (DEEPSYNTH_MLFLOW=/path/to/bin/mlflow, or on PATH); skipped with a printed
//! reason without it.

#[path = "common/mlflow_server.rs"]
mod mlflow_server;
#[path = "common/tiny_cli.rs"]
mod tiny_cli;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use deepsynth::track::mlflow::{
    flatten_params, Auth, KeyValue, MlflowClient, MlflowRunSpec, MlflowTracker, RunStatus,
};
use deepsynth::track::{MetricRecord, Tracker};
use mlflow_server::{mlflow_exe, sha256_file, Server};
use serde_json::{json, Value};
use tiny_cli::{dataset, TINY_TRAIN};

fn client(server: &Server) -> MlflowClient {
    MlflowClient::new(&server.uri(), Auth::None).unwrap()
}

/// `{key: [(step, value as JSON)]}` sorted by step, from a read-back run.
fn history(run: &Value) -> BTreeMap<String, Vec<(i64, Value)>> {
    let mut out = BTreeMap::new();
    for (k, points) in run["metrics"].as_object().unwrap() {
        let mut v: Vec<(i64, Value)> = points
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_i64().unwrap(), p[1].clone()))
            .collect();
        v.sort_by_key(|p| p.0);
        out.insert(k.clone(), v);
    }
    out
}

/// A value as MLflow gives it back through the read-back script: NaN as "NaN"; infinities
/// come back as the largest finite doubles (MLflow's SQL store saves them so).
fn as_json(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v.is_infinite() {
        json!(f64::MAX.copysign(v))
    } else {
        json!(v)
    }
}

/// Equal metric histories, or a panic naming the first difference.
fn assert_same_history(
    got: &BTreeMap<String, Vec<(i64, Value)>>,
    want: &BTreeMap<String, Vec<(i64, Value)>>,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "metric keys"
    );
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(g.len(), w.len(), "{k}: values read back vs sent");
        for (a, b) in g.iter().zip(w) {
            assert_eq!(a, b, "{k}: (step, value) read back vs sent");
        }
    }
}

#[test]
fn mlflow_server_receives_runs() {
    let Some(exe) = mlflow_exe("mlflow_server_receives_runs") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&exe, tmp.path());
    library_run_reads_back_exactly(&server, tmp.path());
    let data = dataset(tmp.path());
    cli_train_matches_metrics_jsonl(&server, tmp.path(), &data);
    cli_failed_and_interrupted_runs(&server, tmp.path(), &data);
    quickstart_reports_too(&server, tmp.path());
}

/// `deepsynth quickstart --report-to mlflow` (shortened): a finished run with the HTML report,
/// the summary and the best adapter as artifacts.
fn quickstart_reports_too(server: &Server, tmp: &Path) {
    let out = tmp.join("qs");
    let o = Command::new(env!("CARGO_BIN_EXE_deepsynth"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MLFLOW_TRACKING_URI", server.uri())
        .env("MLFLOW_EXPERIMENT_NAME", "from-env")
        .args(["quickstart", "--max-train-samples", "8", "--epochs", "1"])
        .args([
            "--eval-steps",
            "2",
            "--max-eval-samples",
            "2",
            "--report-to",
            "mlflow",
        ])
        .arg("--output-dir")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let back = server.read_run(&run_id(&out));
    assert_eq!(back["status"], "FINISHED");
    assert_eq!(back["experiment"], "from-env");
    assert_eq!(back["run_name"], "qs");
    assert_eq!(back["tags"]["deepsynth.command"], "quickstart");
    for f in [
        "report.html",
        "quickstart.json",
        "best/adapter_model.safetensors",
    ] {
        assert_eq!(
            back["artifacts"][f]["sha256"],
            sha256_file(&out.join(f)),
            "{f}"
        );
    }
}

/// Params past 100 (two requests), 1,203 metric values (two requests), tags, odd values
/// (NaN, infinities, 0.1 + 0.2, 1e-300), a param cut to 6,000 characters, artifacts in
/// nested folders.
fn library_run_reads_back_exactly(server: &Server, tmp: &Path) {
    let mut settings = serde_json::Map::new();
    for i in 0..130 {
        settings.insert(format!("p{i:03}"), json!(i));
    }
    settings.insert("long".into(), json!("x".repeat(7000)));
    settings.insert(
        "nested".into(),
        json!({"lr": 2e-4, "targets": ["q_proj", "v_proj"]}),
    );
    let (params, clipped) = flatten_params("", &Value::Object(settings));
    assert_eq!(clipped, ["long"]);
    assert_eq!(params.len(), 133);
    let spec = MlflowRunSpec::new("library", Some("exact".into()))
        .with_params(params.clone())
        .with_tags([KeyValue::new("team", "ocr")])
        .with_timing(
            100_000,
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_secs(1),
        );
    let mut t = MlflowTracker::start(client(server), spec, Box::new(|l| eprintln!("{l}")));
    let run = t.run().expect("run created").clone();
    let mut sent: BTreeMap<String, Vec<(i64, Value)>> = BTreeMap::new();
    let mut log = |t: &mut MlflowTracker, key: &str, step: u64, v: f64| {
        t.scalar(key, step, v).unwrap();
        sent.entry(key.into())
            .or_default()
            .push((step as i64, as_json(v)));
    };
    for step in 0..1200u64 {
        log(&mut t, "train/loss", step, 1.0 / (step as f64 + 1.0));
    }
    for (i, v) in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.1 + 0.2,
        1e-300,
    ]
    .into_iter()
    .enumerate()
    {
        log(&mut t, "eval/odd", i as u64 * 10, v);
    }
    // Artifacts: one file and a folder with a sub-folder.
    let art = tmp.join("library-artifacts");
    std::fs::create_dir_all(art.join("best/sub")).unwrap();
    std::fs::write(art.join("outcome.json"), b"{\"steps\": 1200}").unwrap();
    std::fs::write(art.join("best/adapter_config.json"), b"{\"r\": 4}").unwrap();
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(art.join("best/sub/weights.bin"), &blob).unwrap();
    t.add_artifact(art.join("outcome.json"), "outcome.json");
    t.add_artifact_dir(&art.join("best"), "best");
    let report = t.end(RunStatus::Finished);
    assert!(report.is_complete(), "{:#?}", report);
    assert_eq!(report.metrics_sent, 1205);
    assert_eq!(report.params_sent, 133);

    let back = server.read_run(&run.run_id);
    assert_eq!(back["status"], "FINISHED");
    assert_eq!(back["run_name"], "exact");
    assert_eq!(back["experiment"], "library");
    let want: serde_json::Map<String, Value> = params
        .iter()
        .map(|p| (p.key.clone(), json!(p.value)))
        .collect();
    assert_eq!(back["params"], Value::Object(want));
    assert_eq!(back["params"]["long"].as_str().unwrap().len(), 6000);
    assert_eq!(back["params"]["nested.targets"], r#"["q_proj","v_proj"]"#);
    for (k, v) in [
        ("mlflow.runName", "exact"),
        ("mlflow.source.name", "deepsynth"),
        ("mlflow.source.type", "LOCAL"),
        ("team", "ocr"),
    ] {
        assert_eq!(back["tags"][k], v, "tag {k}");
    }
    assert_same_history(&history(&back), &sent);
    let arts = back["artifacts"].as_object().unwrap();
    let mut paths: Vec<&String> = arts.keys().collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "best/adapter_config.json",
            "best/sub/weights.bin",
            "outcome.json"
        ]
    );
    for (path, local) in [
        ("outcome.json", art.join("outcome.json")),
        ("best/sub/weights.bin", art.join("best/sub/weights.bin")),
    ] {
        assert_eq!(arts[path]["sha256"], sha256_file(&local), "{path}");
        assert_eq!(
            arts[path]["size"],
            std::fs::metadata(&local).unwrap().len(),
            "{path}"
        );
    }
}

fn train(server: &Server, data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepsynth"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MLFLOW_TRACKING_URI", server.uri())
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .args(TINY_TRAIN)
        .args(["--lora-rank", "4", "--mlflow-experiment", "cli"])
        .arg("--dataset")
        .arg(data)
        .arg("--output-dir")
        .arg(out)
        .args(extra);
    c
}

/// The run id `deepsynth train` wrote to `mlflow.json`.
fn run_id(out: &Path) -> String {
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mlflow.json")).unwrap()).unwrap();
    r["run_id"].as_str().unwrap().to_string()
}

/// The tiny model trained with `--report-to tensorboard,mlflow`: MLflow's metrics are exactly
/// `metrics.jsonl` (every key, step and value), the params are the run's settings, the report
/// and the best adapter are artifacts, and TensorBoard files are still written.
fn cli_train_matches_metrics_jsonl(server: &Server, tmp: &Path, data: &Path) {
    let out = tmp.join("cli-run");
    let o = train(server, data, &out, &["--epochs", "2", "--eval-steps", "2"])
        .args([
            "--eval-fraction",
            "0.2",
            "--report-to",
            "tensorboard,mlflow",
        ])
        .args(["--run-name", "cli-run"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("MLflow run http://127.0.0.1"), "{stderr}");
    assert!(stderr.contains("(FINISHED)"), "{stderr}");
    let back = server.read_run(&run_id(&out));
    assert_eq!(back["status"], "FINISHED");
    assert_eq!(back["run_name"], "cli-run");
    assert_eq!(back["experiment"], "cli");
    assert_eq!(back["tags"]["deepsynth.command"], "train");
    let mut local: BTreeMap<String, Vec<(i64, Value)>> = BTreeMap::new();
    for line in std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
    {
        let r: MetricRecord = serde_json::from_str(line).unwrap();
        local
            .entry(r.tag)
            .or_default()
            .push((r.step as i64, as_json(r.value)));
    }
    for v in local.values_mut() {
        v.sort_by_key(|p| p.0);
    }
    assert!(local["train/loss"].len() >= 4, "{local:?}");
    assert!(local.contains_key("eval/rougeL"), "{local:?}");
    assert_same_history(&history(&back), &local);
    let p = &back["params"];
    assert_eq!(p["run.batch_size"], "2");
    assert_eq!(p["run.epochs"], "2");
    assert_eq!(p["lora.r"], "4");
    assert_eq!(p["model"], "tests/fixtures/deepseek-ocr-tiny");
    assert_eq!(p["bits"], "4");
    let arts = back["artifacts"].as_object().unwrap();
    for f in [
        "outcome.json",
        "metrics.jsonl",
        "best/adapter_config.json",
        "best/adapter_model.safetensors",
    ] {
        assert_eq!(arts[f]["sha256"], sha256_file(&out.join(f)), "{f}");
    }
    assert!(!arts.contains_key("best/optimizer.safetensors"));
    let tb = std::fs::read_dir(&out).unwrap().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("events.out.tfevents")
    });
    assert!(tb, "TensorBoard event file written");
}

/// A run that fails (too many bad examples) ends `FAILED`; Ctrl-C ends one `KILLED` with exit
/// code 130 after the step it was in.
fn cli_failed_and_interrupted_runs(server: &Server, tmp: &Path, data: &Path) {
    let bad = tmp.join("bad.jsonl");
    let mut text = std::fs::read_to_string(data).unwrap();
    text.push_str("{\"id\": \"empty\", \"text\": \"\", \"summary\": \"Nothing.\"}\n");
    std::fs::write(&bad, text).unwrap();
    let out = tmp.join("failed");
    let o = train(
        server,
        &bad,
        &out,
        &["--epochs", "2", "--max-bad-examples", "0"],
    )
    .args(["--report-to", "mlflow", "--eval-fraction", "0"])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(stderr.contains("(FAILED)"), "{stderr}");
    assert_eq!(server.read_run(&run_id(&out))["status"], "FAILED");
    // --report-to mlflow alone: no TensorBoard files, metrics.jsonl still written.
    assert!(!std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("events.out")));

    let out = tmp.join("killed");
    let mut child = train(server, data, &out, &["--epochs", "500"])
        .args([
            "--report-to",
            "mlflow",
            "--eval-steps",
            "0",
            "--eval-fraction",
            "0.2",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let pid = child.id() as i32;
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        let mut signalled = false;
        loop {
            let n = std::io::Read::read(&mut stderr, &mut buf).unwrap_or(0);
            if n == 0 {
                return all;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            if !signalled && all.contains("step 3 epoch") {
                signalled = true;
                // SAFETY: signals the child this test started.
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
        }
    });
    let all = reader.join().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{all}");
    assert!(all.contains("(KILLED)"), "{all}");
    assert_eq!(server.read_run(&run_id(&out))["status"], "KILLED");
}

#[test]
fn mlflow_server_lost_mid_run() {
    let Some(exe) = mlflow_exe("mlflow_server_lost_mid_run") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&exe, tmp.path());
    let spec = |name: &str| {
        MlflowRunSpec::new("outage", Some(name.into())).with_timing(
            1000,
            Duration::ZERO,
            Duration::from_millis(200),
            Duration::from_millis(400),
        )
    };
    let quiet = || -> Box<dyn FnMut(&str)> { Box::new(|l| eprintln!("{l}")) };
    // Two runs: `a` ends while the server is down, `b` after it is back.
    let mut a = MlflowTracker::start(client(&server), spec("a"), quiet());
    let mut b = MlflowTracker::start(client(&server), spec("b"), quiet());
    let (ra, rb) = (a.run().unwrap().clone(), b.run().unwrap().clone());
    let log_steps = |t: &mut MlflowTracker, steps: std::ops::RangeInclusive<u64>| {
        for s in steps {
            for k in ["train/loss", "train/lr", "train/grad_norm"] {
                // The training loop never sees the server's failures.
                t.scalar(k, s, s as f64 / 8.0).unwrap();
            }
        }
    };
    log_steps(&mut a, 1..=10);
    log_steps(&mut b, 1..=10);
    assert_eq!((a.buffered(), b.buffered()), (0, 0));
    server.stop();
    log_steps(&mut a, 11..=20);
    log_steps(&mut b, 11..=20);
    assert_eq!((a.buffered(), b.buffered()), (30, 30));

    let report = a.end(RunStatus::Finished);
    assert!(!report.is_complete());
    assert_eq!(report.status, None);
    assert_eq!(report.metrics_sent, 30);
    assert_eq!(report.unsent.len(), 30);
    let by_key = report.unsent_by_key();
    for k in ["train/loss", "train/lr", "train/grad_norm"] {
        assert_eq!(by_key[k], (10, 11, 20), "{k}");
    }
    let text = report.lines().join("\n");
    assert!(text.contains("30 metric values NOT sent"), "{text}");
    assert!(text.contains(&server.uri()), "{text}");

    server.restart();
    // The next logged value, once the retry wait is over, sends everything waiting.
    std::thread::sleep(Duration::from_millis(500));
    log_steps(&mut b, 21..=21);
    assert_eq!(b.buffered(), 0);
    let report = b.end(RunStatus::Finished);
    assert!(report.is_complete(), "{report:#?}");
    assert_eq!(report.metrics_sent, 63);
    assert!(
        report.notes.iter().any(|n| n.contains("reached again")),
        "{:?}",
        report.notes
    );

    let back_a = server.read_run(&ra.run_id);
    assert_eq!(back_a["status"], "RUNNING");
    let steps: Vec<i64> = history(&back_a)["train/loss"].iter().map(|p| p.0).collect();
    assert_eq!(steps, (1..=10).collect::<Vec<_>>());
    let back_b = server.read_run(&rb.run_id);
    assert_eq!(back_b["status"], "FINISHED");
    for (k, points) in history(&back_b) {
        let want: Vec<(i64, Value)> = (1..=21).map(|s| (s, json!(s as f64 / 8.0))).collect();
        assert_eq!(points, want, "{k}");
    }
}

#[test]
fn report_to_is_checked_before_anything_runs() {
    let run = |list: &str, uri: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_deepsynth"));
        c.args(["train", "--dataset", "none.jsonl", "--report-to", list]);
        match uri {
            Some(u) => c.env("MLFLOW_TRACKING_URI", u),
            None => c.env_remove("MLFLOW_TRACKING_URI"),
        };
        let o = c.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // wandb is accepted: the run gets as far as the missing dataset.
    let (code, err) = run("wandb", None);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("none.jsonl") && !err.contains("report-to"),
        "{err}"
    );
    let (code, err) = run("tensorboard,comet", None);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown --report-to `comet`"), "{err}");
    let (code, err) = run("mlflow", None);
    assert_eq!(code, Some(2));
    assert!(err.contains("MLFLOW_TRACKING_URI is not set"), "{err}");
    let (code, err) = run("mlflow", Some("file:///tmp/mlruns"));
    assert_eq!(code, Some(2));
    assert!(err.contains("http://host:port"), "{err}");
}
