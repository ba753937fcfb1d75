//! The `deepsynth` binary end to end.

use std::process::Command;

fn deepsynth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deepsynth"))
}

#[test]
fn render_bundled_examples_with_defaults() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = deepsynth()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["render", "--threads", "2", "--out"])
        .arg(out_dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let examples = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/documents"))
        .unwrap()
        .count();
    let report = std::fs::read_to_string(out_dir.path().join("report.jsonl")).unwrap();
    assert_eq!(report.lines().count(), examples);
    for line in report.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            v["report"]["missing"].as_array().unwrap().len(),
            0,
            "{line}"
        );
        for f in v["files"].as_array().unwrap() {
            let img = image::open(out_dir.path().join(f.as_str().unwrap())).unwrap();
            assert_eq!(img.width(), 1024);
        }
    }
    assert!(
        stdout.contains(&format!("rendered {examples} document(s)")),
        "{stdout}"
    );
}

#[test]
fn strict_mode_fails_the_document_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("docs.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"ok\", \"text\": \"fine\"}\n{\"id\": \"pua\", \"text\": \"\u{E000}\"}\n",
    )
    .unwrap();
    let out = deepsynth()
        .args(["render", "--strict", "--preset", "tiny", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed: pua: no font covers 1 character(s): U+E000"),
        "{stderr}"
    );
    assert!(dir.path().join("out/ok-p001.png").exists());
}

#[test]
fn bad_input_and_config_are_reported_with_where() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("docs.jsonl");
    std::fs::write(&input, "{\"text\": \"fine\"}\n{\"title\": \"no text\"}\n").unwrap();
    let out = deepsynth()
        .args(["render", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("docs.jsonl:2: missing string field `text`"),
        "{stderr}"
    );

    let out = deepsynth()
        .args(["render", "--preset", "poster", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown render preset `poster`"));

    let out = deepsynth()
        .args(["render", "--margin", "600", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid render config `margins`"));

    let out = deepsynth()
        .args(["render", "--font", "/nonexistent/font.ttf", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/font.ttf"));
}

#[test]
fn eval_scores_pairs_reports_bad_lines_and_writes_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"same\", \"reference\": \"the cat sat on the mat\", \"prediction\": \"the cat sat on the mat\"}\n\
         {\"id\": \"broken\", \"reference\": \"no prediction here\"}\n\
         {\"id\": \"diff\", \"reference\": \"a b c d\", \"prediction\": \"a x c\"}\n",
    )
    .unwrap();
    let json_out = dir.path().join("scores.json");
    let out = deepsynth()
        .args([
            "eval",
            "--metrics",
            "rouge1,wer,bleu",
            "--bootstrap",
            "50",
            "--input",
        ])
        .arg(&input)
        .arg("--out")
        .arg(&json_out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pairs.jsonl:2: missing string field `prediction`"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_out).unwrap()).unwrap();
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["rouge1"][2].as_f64(), Some(1.0));
    // "a b c d" -> "a x c": 1 substitution + 1 deletion over 4 words.
    assert_eq!(records[1]["wer"]["rate"].as_f64(), Some(0.5));
    assert_eq!(records[1]["wer"]["substitutions"].as_u64(), Some(1));
    assert_eq!(records[1]["wer"]["deletions"].as_u64(), Some(1));
    let micro = v["summary"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "wer")
        .unwrap();
    assert_eq!(
        micro["value"].as_f64(),
        Some(2.0 / 10.0),
        "2 errors over 6 + 4 reference words"
    );

    let parquet_out = dir.path().join("scores.parquet");
    let out = deepsynth()
        .args(["eval", "--metrics", "chrf,cer", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&parquet_out)
        .output()
        .unwrap();
    if cfg!(feature = "frames") {
        assert_eq!(out.status.code(), Some(2));
        assert!(parquet_out.exists());
        assert!(dir.path().join("scores.summary.parquet").exists());
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("scores.parquet") && err.contains("frames"),
            "{err}"
        );
        assert!(!parquet_out.exists());
    }

    let out = deepsynth()
        .args(["eval", "--metrics", "meteor", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown metric `meteor`"));
}

/// `deepsynth pretrain --train-vision --lines N`: a synthetic-line stage, then the page stage,
/// with the vision tower learning; the report records both stages and the reading CER, and a
/// second run with the same seed writes the same weights, byte for byte.
#[test]
fn pretrain_with_vision_and_a_line_stage_is_reported_and_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("data/crates-readme/train.jsonl")).unwrap();
    let lines: Vec<&str> = docs.lines().take(6).collect();
    let (train, held) = (
        tmp.path().join("train.jsonl"),
        tmp.path().join("held.jsonl"),
    );
    std::fs::write(&train, lines[..4].join("\n")).unwrap();
    std::fs::write(&held, lines[4..].join("\n")).unwrap();
    let run_with = |out: &str, extra: &[&str]| {
        let dir = tmp.path().join(out);
        let o = deepsynth()
            .args([
                "pretrain",
                "--train-vision",
                "--lines",
                "8",
                "--line-chars",
                "12",
            ])
            .args(["--epochs", "1", "--batch-size", "4", "--vocab-size", "400"])
            .args(["--read-pages", "2", "--read-chars", "40"])
            .args(extra)
            .arg("--corpus")
            .arg(&train)
            .arg("--held-out")
            .arg(&held)
            .arg("--output-dir")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        dir
    };
    let run = |out: &str| run_with(out, &[]);
    let a = run("a");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("pretrain.json")).unwrap()).unwrap();
    assert_eq!(report["train_vision"], true);
    assert_eq!(report["line_stage"]["lines"], 8);
    assert_eq!(
        report["line_stage"]["train_losses"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(report["line_stage"]["reading_cer"].as_f64().unwrap() >= 0.0);
    assert!(report["reading_cer"].as_f64().unwrap() >= 0.0);
    assert_eq!(report["steps"], 1);
    let b = run("b");
    assert!(
        std::fs::read(a.join("model.safetensors")).unwrap()
            == std::fs::read(b.join("model.safetensors")).unwrap(),
        "two runs with one seed wrote different weights"
    );
    // The next curriculum stage starts from `a` (its tokenizer and weights), not from a random
    // initialisation: its first line loss is below the fresh run's first.
    let c = run_with("c", &["--init", a.to_str().unwrap()]);
    let next: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.join("pretrain.json")).unwrap()).unwrap();
    assert_eq!(next["init"], a.to_str().unwrap());
    assert_eq!(
        std::fs::read(a.join("tokenizer.json")).unwrap(),
        std::fs::read(c.join("tokenizer.json")).unwrap()
    );
    assert!(!tmp.path().join("c.init").exists());
    let fresh_first = report["line_stage"]["train_losses"][0][1].as_f64().unwrap();
    let continued_first = next["line_stage"]["train_losses"][0][1].as_f64().unwrap();
    eprintln!("first line loss: fresh {fresh_first}, continued {continued_first}");
    assert!(
        continued_first < fresh_first,
        "continued {continued_first} vs fresh {fresh_first}"
    );
}
