//! Publishing to the Hugging Face Hub against a stand-in Hub (tests/python/hub_standin.py: a
//! stdlib HTTP server on 127.0.0.1 that implements just enough of the Hub's API, stores the
//! files of each repo and records every request; it is not the Hub). `deepsynth push` of a
//! trained tiny run and `huggingface_hub.upload_folder` of the same folder give the same files
//! (paths, sizes, SHA-256, which went through LFS); `--private` creates a private repo;
//! `train --push-to-hub` pushes with each strategy; a failing Hub gives a typed error and the
//! command that pushes later (which then works); the token is never printed or written.
//!
//! Needs a Python with huggingface_hub (DEEPSYNTH_HUB_PYTHON=/path/to/python, as
//! environment/setup-hub.sh prints); skipped with a printed reason without it, except under CI
//! (`CI` set), where its absence fails the test.

#[path = "common/hub_standin.rs"]
mod hub_standin;
#[path = "common/tiny_cli.rs"]
mod tiny_cli;

use std::path::{Path, PathBuf};
use std::process::Output;

use hub_standin::{
    deepsynth, hub_python, python_upload, run, sha256_file, stderr, token_not_in_files, Standin,
    TOKEN,
};
use serde_json::{json, Value};
use tiny_cli::{dataset, TINY_TRAIN};

/// Trains the tiny model into `tmp/<name>` with `extra` options (two evaluations).
fn train(hub: &Standin, tmp: &Path, name: &str, extra: &[&str]) -> (PathBuf, Output) {
    let out = tmp.join(name);
    let o = run(deepsynth(hub, &tmp.join("hf-home"))
        .args(TINY_TRAIN)
        .args(["--epochs", "2", "--eval-steps", "2", "--lora-rank", "4"])
        .args(["--eval-fraction", "0.2", "--max-eval-samples", "1"])
        .args(extra)
        .arg("--dataset")
        .arg(dataset(tmp))
        .arg("--output-dir")
        .arg(&out));
    (out, o)
}

/// `(method, path with the repo replaced by REPO, had Authorization)` of the requests that
/// name `repo` or its LFS objects' uploads, as a set.
fn requests_for(
    state: &Value,
    repo: &str,
    oids: &[String],
) -> std::collections::BTreeSet<(String, String, bool)> {
    state["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let path = r["path"].as_str().unwrap();
            let named =
                path.contains(&format!("/{repo}/")) || path.contains(&format!("/{repo}.git/"));
            let lfs = oids.iter().any(|o| path.contains(o.as_str()));
            (named || lfs).then(|| {
                let mut p = path.replace(repo, "REPO");
                for o in oids {
                    p = p.replace(o.as_str(), "OID");
                }
                (
                    r["method"].as_str().unwrap().to_string(),
                    p,
                    r["auth"] == true,
                )
            })
        })
        .collect()
}

#[test]
fn a_pushed_run_matches_huggingface_hub_upload_folder() {
    let Some(python) = hub_python() else { return };
    // Objects over 32 KiB go through the multipart transfer, smaller ones through basic.
    let hub = Standin::start(&python, 32 * 1024);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf-home");

    // (f) train --push-to-hub (strategy end): one push of the best adapter when it ends.
    let (run_dir, o) = train(
        &hub,
        tmp.path(),
        "run",
        &[
            "--push-to-hub",
            "--hub-model-id",
            "me/trained",
            "--hub-private",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = hub.state();
    let trained = &s["repos"]["me/trained"];
    assert_eq!(trained["private"], true, "{s}");
    let summaries: Vec<&str> = trained["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["summary"].as_str().unwrap())
        .collect();
    assert_eq!(summaries, ["DeepSynth: end of training"]);
    let best = run_dir.join("best/adapter_model.safetensors");
    let pushed = hub.files("me/trained");
    let names: Vec<&str> = pushed.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "README.md",
            "adapter_config.json",
            "adapter_model.safetensors"
        ]
    );
    assert_eq!(
        pushed[2].2,
        sha256_file(&best),
        "the pushed adapter is best/'s"
    );
    assert!(pushed[2].3 && !pushed[0].3 && !pushed[1].3, "{pushed:?}");
    assert!(
        pushed[2].1 > 32 * 1024,
        "the adapter goes through multipart: {pushed:?}"
    );

    // (a) deepsynth push of the run folder; (b) huggingface_hub of the folder it pushed.
    let o = run(deepsynth(&hub, &home)
        .arg("push")
        .arg(&run_dir)
        .arg("me/push-a"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("/me/push-a/commit/"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let staged = run_dir.join("hub");
    python_upload(&python, &hub, &home, &staged, "me/py-b");
    // (c) the same files: paths, sizes, SHA-256, and which went through LFS.
    let (a, b) = (hub.files("me/push-a"), hub.files("me/py-b"));
    assert_eq!(a, b);
    assert_eq!(a.len(), 3);
    for (path, size, sha, _) in &a {
        let local = staged.join(path);
        assert_eq!(
            (
                std::fs::metadata(&local).unwrap().len(),
                sha256_file(&local)
            ),
            (*size, sha.clone())
        );
    }
    // The same kinds of requests, with the token exactly where huggingface_hub sends it.
    let s = hub.state();
    let oids: Vec<String> = a.iter().map(|f| f.2.clone()).collect();
    let ours = requests_for(&s, "me/push-a", &oids);
    let theirs = requests_for(&s, "me/py-b", &oids);
    assert!(ours.iter().any(|r| r.1.ends_with("/part/1")), "{ours:?}");
    assert_eq!(
        ours.iter()
            .filter(|r| !r.1.starts_with("/_lfs/"))
            .collect::<Vec<_>>(),
        theirs
            .iter()
            .filter(|r| !r.1.starts_with("/_lfs/"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        s["unknown"],
        json!([]),
        "requests the stand-in does not know"
    );
    for r in s["requests"].as_array().unwrap() {
        let path = r["path"].as_str().unwrap();
        if path.starts_with("/api/models/") || path.contains(".git/") || path == "/api/repos/create"
        {
            assert_eq!(r["auth"], true, "{r}");
        }
    }
    // The model card's YAML as the stand-in parsed it.
    let meta = s["metadata"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(meta["library_name"], "peft", "{meta}");
    for tag in [
        "deepsynth",
        "lora",
        "qlora",
        "summarization",
        "deepseek-ocr",
    ] {
        assert!(
            meta["tags"].as_array().unwrap().contains(&json!(tag)),
            "{meta}"
        );
    }
    assert_eq!(meta["model-index"][0]["name"], "me/push-a", "{meta}");
    let metrics = meta["model-index"][0]["results"][0]["metrics"]
        .as_array()
        .unwrap();
    assert!(metrics.iter().any(|m| m["type"] == "rougeL"), "{meta}");
    let card = std::fs::read_to_string(staged.join("README.md")).unwrap();
    assert!(
        card.contains("## Evaluation results") && card.contains("- lora_r: 4"),
        "{card}"
    );

    // (d) --private creates the repo private; without it, public.
    let o = run(deepsynth(&hub, &home).arg("push").arg(&staged).args([
        "me/private-c",
        "--private",
        "--commit-message",
        "adapter",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let s = hub.state();
    assert_eq!(s["repos"]["me/private-c"]["private"], true);
    assert_eq!(s["repos"]["me/push-a"]["private"], false);
    assert_eq!(
        s["repos"]["me/private-c"]["commits"][0]["summary"],
        "adapter"
    );
    assert_eq!(hub.files("me/private-c"), a);
    // (e) nothing the commands wrote holds the token.
    token_not_in_files(tmp.path());
}

#[test]
fn bad_hub_options_and_a_missing_token_stop_before_anything_runs() {
    let Some(python) = hub_python() else { return };
    let hub = Standin::start(&python, u64::MAX / 2);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf-home");
    let out = tmp.path().join("never");
    let cases: [(&[&str], &str); 5] = [
        (&["--push-to-hub"], "--push-to-hub needs --hub-model-id"),
        (
            &["--push-to-hub", "--hub-model-id", "no-owner"],
            "owner/name",
        ),
        (
            &[
                "--push-to-hub",
                "--hub-model-id",
                "me/x",
                "--hub-strategy",
                "every_save",
            ],
            "valid: end, best, checkpoint",
        ),
        (&["--hub-model-id", "me/x"], "need --push-to-hub"),
        (
            &["--push_to_hub", "--hub_model_id", "me/bad name"],
            "` ` in the name",
        ),
    ];
    for (extra, want) in cases {
        let o = run(deepsynth(&hub, &home)
            .args(TINY_TRAIN)
            .args(extra)
            .args(["--dataset", "missing.jsonl", "--output-dir"])
            .arg(&out));
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{extra:?}: {}", stderr(&o));
    }
    let o = run(deepsynth(&hub, &home)
        .args(["quickstart", "--push-to-hub", "--output-dir"])
        .arg(&out));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(deepsynth(&hub, &home)
        .arg("push")
        .arg(tmp.path())
        .arg("a/b/c"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // No token anywhere: an error naming where it looked, before the data is even read.
    let o = run(deepsynth(&hub, &home)
        .env_remove("HF_TOKEN")
        .args(TINY_TRAIN)
        .args([
            "--push-to-hub",
            "--hub-model-id",
            "me/x",
            "--dataset",
            "missing.jsonl",
        ])
        .arg("--output-dir")
        .arg(&out));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("no Hugging Face token")
            && e.contains(&home.join("token").display().to_string()),
        "{e}"
    );
    // A folder that is not there.
    let o = run(deepsynth(&hub, &home)
        .arg("push")
        .arg(tmp.path().join("nope"))
        .arg("me/x"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a folder"), "{}", stderr(&o));
    assert!(!out.exists());
    assert_eq!(
        hub.state()["requests"],
        json!([]),
        "nothing reached the Hub"
    );
}

#[test]
fn a_failing_hub_keeps_the_run_and_the_printed_command_pushes_it() {
    let Some(python) = hub_python() else { return };
    let hub = Standin::start(&python, u64::MAX / 2);
    let tmp = tempfile::tempdir().unwrap();
    // Every commit fails: the checkpoint pushes during training and the end push.
    hub.fail("/commit/", 500, 1000);
    let (run_dir, o) = train(
        &hub,
        tmp.path(),
        "run",
        &[
            "--push-to-hub",
            "--hub-model-id",
            "me/later",
            "--hub-strategy",
            "checkpoint",
        ],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    let url = format!("{}/api/models/me/later/commit/main", hub.endpoint);
    assert!(
        e.contains(&format!(
            "commit: POST {url} answered HTTP 500: stand-in failure on purpose"
        )),
        "{e}"
    );
    assert!(e.contains("checkpoint not pushed"), "{e}");
    assert!(
        run_dir.join("outcome.json").is_file()
            && run_dir.join("best/adapter_model.safetensors").is_file()
    );
    let retry = e
        .lines()
        .find_map(|l| l.split_once("push it with: ").map(|(_, c)| c.to_string()))
        .unwrap_or_else(|| panic!("no retry command in\n{e}"));
    let words: Vec<&str> = retry.split_whitespace().collect();
    assert_eq!(words[..2], ["deepsynth", "push"]);
    assert_eq!(
        words[2..],
        [run_dir.join("hub").to_str().unwrap(), "me/later"]
    );
    // The Hub is back; the printed command, with the token in the token file this time.
    ureq::post(&format!("{}/_standin/fail", hub.endpoint))
        .send_json(json!({"clear": true}))
        .unwrap();
    let home = tmp.path().join("hf-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("token"), format!("{TOKEN}\n")).unwrap();
    let o = run(deepsynth(&hub, &home)
        .env_remove("HF_TOKEN")
        .args(&words[1..]));
    assert!(o.status.success(), "{}", stderr(&o));
    let files = hub.files("me/later");
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    for want in [
        "README.md",
        "adapter_model.safetensors",
        "last-checkpoint/adapter_config.json",
        "last-checkpoint/adapter_model.safetensors",
        "last-checkpoint/trainer_state.json",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    token_not_in_files(&run_dir);
}

#[test]
fn strategy_best_pushes_each_better_adapter_and_checkpoint_each_checkpoint() {
    let Some(python) = hub_python() else { return };
    let hub = Standin::start(&python, u64::MAX / 2);
    let tmp = tempfile::tempdir().unwrap();
    let (_, o) = train(
        &hub,
        tmp.path(),
        "best",
        &[
            "--push-to-hub",
            "--hub-model-id",
            "me/best",
            "--hub-strategy",
            "best",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, o) = train(
        &hub,
        tmp.path(),
        "ck",
        &[
            "--push-to-hub",
            "--hub-model-id",
            "me/ck",
            "--hub-strategy",
            "checkpoint",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = hub.state();
    let summaries = |repo: &str| -> Vec<String> {
        s["repos"][repo]["commits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["summary"].as_str().unwrap().to_string())
            .collect()
    };
    let best = summaries("me/best");
    assert_eq!(
        best.last().unwrap(),
        "DeepSynth: end of training",
        "{best:?}"
    );
    assert!(
        best.len() >= 2
            && best[..best.len() - 1]
                .iter()
                .all(|c| c.starts_with("DeepSynth: best adapter at step ")),
        "{best:?}"
    );
    let ck = summaries("me/ck");
    assert!(
        ck.len() >= 3
            && ck[..ck.len() - 1]
                .iter()
                .all(|c| c.starts_with("DeepSynth: checkpoint at step ")),
        "{ck:?}"
    );
    let first = &s["repos"]["me/ck"]["commits"][0]["paths"];
    assert!(
        first
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p.as_str().unwrap().starts_with("last-checkpoint/")),
        "{first}"
    );
}

#[test]
fn quickstart_pushes_its_adapter_at_the_end() {
    let Some(python) = hub_python() else { return };
    let hub = Standin::start(&python, u64::MAX / 2);
    let tmp = tempfile::tempdir().unwrap();
    let o = run(deepsynth(&hub, &tmp.path().join("hf-home"))
        .args(["quickstart", "--max-train-samples", "4", "--epochs", "1"])
        .args(["--eval-steps", "2", "--max-eval-samples", "1"])
        .args(["--push-to-hub", "--hub-model-id", "me/qs", "--output-dir"])
        .arg(tmp.path().join("qs")));
    assert!(o.status.success(), "{}", stderr(&o));
    let files = hub.files("me/qs");
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "README.md",
            "adapter_config.json",
            "adapter_model.safetensors"
        ]
    );
    let best = tmp.path().join("qs/best/adapter_model.safetensors");
    assert_eq!(files[2].2, sha256_file(&best));
    let card = std::fs::read_to_string(tmp.path().join("qs/hub/README.md")).unwrap();
    assert!(card.contains("`train.jsonl` (a local file)"), "{card}");
}
