//! `deepsynth train` end to end on the tiny fixture: a JSONL dataset in, a run folder out (best
//! adapter, rotated checkpoints, metrics, outcome), `--resume-from-checkpoint`, `--help` with
//! defaults, and bad input refused.

use std::process::Command;

#[path = "common/tiny_cli.rs"]
mod tiny_cli;
use tiny_cli::TINY_TRAIN;

fn deepsynth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepsynth"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// The tiny model's options with 2 epochs and evaluation every 2 steps.
fn base() -> Vec<&'static str> {
    let mut v = TINY_TRAIN.to_vec();
    v.extend(["--epochs", "2", "--eval-steps", "2"]);
    v
}

/// [`base`] with `pairs` (flag, value, flag, value, ...) replacing or adding options.
fn base_with<'a>(pairs: &[&'a str]) -> Vec<&'a str> {
    let mut base = base();
    for kv in pairs.chunks(2) {
        if let Some(i) = base.iter().position(|a| *a == kv[0]) {
            base.drain(i..i + 2);
        }
        base.extend_from_slice(kv);
    }
    base
}

/// The tiny dataset with a broken sixth line.
fn dataset(dir: &std::path::Path) -> std::path::PathBuf {
    let p = tiny_cli::dataset(dir);
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("{\"id\": \"broken\", \"text\": 3}\n");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn trains_checkpoints_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("run");
    let o = deepsynth()
        .args(base())
        .args([
            "--lora-rank",
            "4",
            "--learning-rate",
            "0.005",
            "--prompt",
            "<image>\nSum:",
            "--eval-fraction",
            "0.2",
        ])
        .arg("--dataset")
        .arg(&data)
        .arg("--output-dir")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("data.jsonl:6: skipped"), "{stderr}");
    assert!(
        stderr.contains("4 training / 1 held-out examples"),
        "{stderr}"
    );
    let outcome: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("outcome.json")).unwrap()).unwrap();
    assert_eq!(outcome["steps"], 4);
    assert_eq!(outcome["evals"].as_array().unwrap().len(), 2);
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "optimizer.safetensors",
        "manifest.json",
    ] {
        assert!(out.join("best").join(f).is_file(), "best/{f}");
    }
    assert!(out.join("metrics.jsonl").is_file());
    // Resume from the step-2 checkpoint into another folder, without repeating the rank and
    // learning rate (the checkpoint has them): the same final outcome, and an adapter config
    // that matches the tensors (r = 4, not the default 16).
    let out2 = tmp.path().join("resumed");
    let o2 = deepsynth()
        .args(base())
        .args(["--prompt", "<image>\nSum:", "--eval-fraction", "0.2"])
        .arg("--dataset")
        .arg(&data)
        .arg("--output-dir")
        .arg(&out2)
        .arg("--resume-from-checkpoint")
        .arg(out.join("checkpoint-000002"))
        .output()
        .unwrap();
    assert!(
        o2.status.success(),
        "{}",
        String::from_utf8_lossy(&o2.stderr)
    );
    let outcome2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out2.join("outcome.json")).unwrap()).unwrap();
    assert_eq!(outcome2["train_losses"], outcome["train_losses"]);
    assert_eq!(
        outcome2["evals"][1]["metrics"],
        outcome["evals"][1]["metrics"]
    );
    assert!(out2.join("checkpoint-000004").is_dir());
    for dir in ["best", "checkpoint-000004"]
        .iter()
        .filter(|d| out2.join(d).is_dir())
    {
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out2.join(dir).join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (cfg["r"].as_u64(), cfg["lora_alpha"].as_f64()),
            (Some(4), Some(32.0))
        );
    }
    // Options that contradict the checkpoint are refused, naming both values.
    let o3 = deepsynth()
        .args(base_with(&[
            "--batch-size",
            "1",
            "--lora-rank",
            "8",
            "--eval-fraction",
            "0.2",
        ]))
        .arg("--dataset")
        .arg(&data)
        .arg("--output-dir")
        .arg(tmp.path().join("refused"))
        .arg("--resume-from-checkpoint")
        .arg(out.join("checkpoint-000002"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o3.stderr);
    assert_eq!(o3.status.code(), Some(2), "{err}");
    for part in [
        "--batch-size gives 1, the checkpoint has 2",
        "--lora-rank gives 8, the checkpoint has 4",
    ] {
        assert!(err.contains(part), "{err}");
    }
    assert!(!tmp.path().join("refused").exists());
}

/// The issue's run: three bad rows and a 5,000-word document in the training data. The run
/// finishes, lists the skipped rows and says how much of the long document its page showed.
#[test]
fn bad_rows_and_a_long_document_do_not_stop_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let mut text = std::fs::read_to_string(&data).unwrap();
    let long: Vec<&str> = ["council", "budget", "river", "school", "report"]
        .iter()
        .cycle()
        .take(5000)
        .copied()
        .collect();
    for (id, t, s) in [
        ("bad-empty-text", String::new(), "Nothing.".to_string()),
        (
            "bad-empty-summary",
            "A document.".to_string(),
            String::new(),
        ),
        (
            "bad-huge-summary",
            "A document.".to_string(),
            "x".repeat(9000),
        ),
        ("long", long.join(" "), "Council budget.".to_string()),
    ] {
        text.push_str(&(serde_json::json!({"id": id, "text": t, "summary": s}).to_string() + "\n"));
    }
    std::fs::write(&data, text).unwrap();
    let held = tmp.path().join("held.jsonl");
    std::fs::write(
        &held,
        "{\"id\": \"h1\", \"text\": \"The bridge reopens in May.\", \"summary\": \"Bridge.\"}\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let o = deepsynth()
        .args(base())
        .args(["--lora-rank", "4", "--prompt", "<image>\nSum:"])
        .arg("--dataset")
        .arg(&data)
        .arg("--eval-dataset")
        .arg(&held)
        .arg("--output-dir")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("skipped 3 example(s)"), "{err}");
    for id in ["bad-empty-text", "bad-empty-summary", "bad-huge-summary"] {
        assert!(err.contains(&format!("`{id}`")), "{id}: {err}");
    }
    assert!(
        err.contains("truncated: Train") && err.contains("`long`"),
        "{err}"
    );
    let skipped = std::fs::read_to_string(out.join("skipped.jsonl")).unwrap();
    assert_eq!(skipped.lines().count(), 3);
    let outcome: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("outcome.json")).unwrap()).unwrap();
    let t = &outcome["examples"]["truncated"][0];
    assert_eq!(t["id"], "long");
    let shown = t["shown"]["shown_chars"].as_u64().unwrap();
    let left = t["shown"]["truncated_chars"].as_u64().unwrap();
    assert!(shown > 1000 && left > shown, "{t}");
}

#[test]
fn options_are_checked_against_their_valid_values() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let cases: [(&[&str], &str); 10] = [
        (
            // The plan's underscore spelling of --context-multiplier.
            &["--context_multiplier", "11"],
            "--context-multiplier must be in [1, 10], got 11",
        ),
        (&["--save-steps", "0"], "--save-steps must be at least 1"),
        (
            &["--log_interval", "0"],
            "--logging-steps must be at least 1",
        ),
        (
            &["--early-stopping-metric", "meteor"],
            "valid: loss, rouge1, rouge2, rougeL, rougeLsum, bleu, chrf, wer, cer",
        ),
        (&["--batch-size", "0"], "--batch-size must be at least 1"),
        (
            &["--save-total-limit", "0"],
            "--save-total-limit must be at least 1",
        ),
        (&["--on-overflow", "drop"], "valid: error, truncate, skip"),
        (&["--max-bad-examples", "many"], "valid: auto or a count"),
        (
            &["--lr-scheduler", "step"],
            "valid: cosine, linear, constant",
        ),
        (
            &["--eval-fraction", "0.9"],
            "--eval-fraction must be in [0, 0.5]",
        ),
    ];
    for (args, want) in cases {
        let o = deepsynth()
            .args(base_with(args))
            .arg("--dataset")
            .arg(&data)
            .arg("--output-dir")
            .arg(tmp.path().join("never"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!tmp.path().join("never").exists());
}

#[test]
fn help_shows_defaults_and_bad_input_is_refused() {
    let help = deepsynth().args(["train", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for d in [
        "[default: 16]",
        "[default: 32]",
        "[default: 0.05]",
        "[default: 0.0002]",
        "[default: 4]",
    ] {
        assert!(text.contains(d), "missing {d} in\n{text}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let o = deepsynth()
        .args(base())
        .args(["--bits", "3"])
        .arg("--dataset")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--bits must be 4, 8 or 16, got 3"));
    let o = deepsynth()
        .args(base())
        .arg("--dataset")
        .arg(tmp.path().join("missing.jsonl"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.jsonl"));
}

#[test]
fn the_plans_option_spellings_and_hugging_face_names_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("run");
    // base() less its --epochs (given as --num_epochs below); evaluation every 2 steps.
    let mut base = base();
    let i = base.iter().position(|a| *a == "--epochs").unwrap();
    base.drain(i..i + 2);
    let o = deepsynth()
        .args(base)
        .args([
            "--num_epochs",
            "3",
            "--log_interval",
            "2",
            "--save_steps",
            "3",
            "--metric_for_best_model",
            "loss",
            "--greater_is_better",
            "true",
            "--early_stopping_patience",
            "0",
            "--warmup_steps",
            "1",
            "--context_multiplier",
            "2",
            "--max_train_samples",
            "4",
            "--lora_rank",
            "4",
            "--eval-fraction",
            "0.2",
            "--prompt",
            "<image>\nSum:",
        ])
        .arg("--dataset_name")
        .arg(&data)
        .arg("--output_dir")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // 4 examples, batch 2, 3 epochs: 6 steps; checkpoints at 3 and 6, evaluations at 2, 4, 6.
    let outcome: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("outcome.json")).unwrap()).unwrap();
    assert_eq!(outcome["steps"], 6);
    // Loss as if higher were better: the first evaluation is best, and nothing stops early.
    assert_eq!(outcome["best"][0], 2, "{}", outcome["best"]);
    assert_eq!(outcome["stopped_early"], false);
    for d in ["checkpoint-000003", "checkpoint-000006", "best"] {
        assert!(out.join(d).is_dir(), "{d}");
    }
    assert!(!out.join("checkpoint-000004").exists());
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("checkpoint-000006/trainer_state.json")).unwrap(),
    )
    .unwrap();
    let run = &state["extra"]["run"];
    assert_eq!(run["max_seq_length"], 2048, "{run}");
    assert_eq!(run["logging_steps"], 2);
    assert_eq!(run["train"]["warmup_steps"], 1);
    assert_eq!(run["best_metric"]["higher_is_better"], true);
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["tag"] == "train/loss")
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [2, 4, 6]);
}

/// `--bits 8`: the decoder loads as bitsandbytes LLM.int8 and the run trains and saves its
/// adapter like a 4-bit one.
#[test]
fn trains_over_an_int8_decoder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("run8");
    let o = deepsynth()
        .args(base_with(&[
            "--epochs",
            "1",
            "--bits",
            "8",
            "--lora-rank",
            "4",
        ]))
        .arg("--dataset")
        .arg(&data)
        .arg("--output-dir")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let mut stack = vec![out.clone()];
    let mut adapters = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n == "adapter_model.safetensors")
            {
                adapters += 1;
            }
        }
    }
    assert!(adapters >= 1, "no adapter saved under {}", out.display());
}
