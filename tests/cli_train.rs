//! `deepsynth train` end to end on the tiny fixture: a JSONL dataset in, a run folder out (best
//! adapter, rotated checkpoints, metrics, outcome), `--resume-from-checkpoint`, `--help` with
//! defaults, and bad input refused.

use std::process::Command;

fn deepsynth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepsynth"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

const BASE: [&str; 20] = [
    "train",
    "--model",
    "tests/fixtures/deepseek-ocr-tiny",
    "--tokenizer",
    "tests/fixtures/tiny-char-tokenizer/tokenizer.json",
    "--mode",
    "256",
    "--render-preset",
    "tiny",
    "--batch-size",
    "2",
    "--gradient-accumulation-steps",
    "1",
    "--epochs",
    "2",
    "--eval-steps",
    "2",
    "--max-new-tokens",
    "4",
    "--offline",
];

fn dataset(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("data.jsonl");
    let rows = [
        (
            "The council approved the new park on Monday.",
            "Park approved.",
        ),
        (
            "Heavy rain closed two roads in the north.",
            "Rain closes roads.",
        ),
        ("The museum opens a modern art wing.", "Museum expands."),
        (
            "Local team wins the cup after a late goal.",
            "Team wins cup.",
        ),
        ("The library stays open late for exams.", "Library hours."),
    ];
    let mut text: String = rows
        .iter()
        .enumerate()
        .map(|(i, (t, s))| {
            serde_json::json!({"id": format!("n{i}"), "text": t, "summary": s}).to_string() + "\n"
        })
        .collect();
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
        .args(BASE)
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
    // Resume from the step-2 checkpoint into another folder: the same final outcome.
    let out2 = tmp.path().join("resumed");
    let o2 = deepsynth()
        .args(BASE)
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
        .args(BASE)
        .args(["--bits", "8"])
        .arg("--dataset")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--bits"));
    let o = deepsynth()
        .args(BASE)
        .arg("--dataset")
        .arg(tmp.path().join("missing.jsonl"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.jsonl"));
}
