//! `deepsynth quickstart` end to end on the bundled model and corpus (a shortened run): QLoRA
//! lowers the held-out loss of the untrained adapter, and the run folder gets the HTML report
//! (metrics table, loss and ROUGE curves, page previews, samples), `quickstart.json`, `best/`
//! and TensorBoard events.

use std::process::Command;

/// The shortened quickstart (48 training documents, 1 epoch, evaluation every 3 steps on 4
/// held-out documents) into `out` with `extra` options: its log (after checking that it
/// succeeded) and `quickstart.json`.
fn short_quickstart(out: &std::path::Path, extra: &[&str]) -> (String, serde_json::Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_deepsynth"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "quickstart",
            "--max-train-samples",
            "48",
            "--epochs",
            "1",
            "--eval-steps",
            "3",
            "--max-eval-samples",
            "4",
        ])
        .args(extra)
        .arg("--output-dir")
        .arg(out)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{log}");
    let s = serde_json::from_str(&std::fs::read_to_string(out.join("quickstart.json")).unwrap())
        .unwrap();
    (log, s)
}

#[test]
fn quickstart_trains_the_bundled_model_and_writes_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qs");
    let (log, s) = short_quickstart(&out, &[]);
    assert!(
        log.contains("before (untrained adapter)") && log.contains("report:"),
        "{log}"
    );
    let (before, after) = (
        s["before"]["loss"].as_f64().unwrap(),
        s["after"]["loss"].as_f64().unwrap(),
    );
    assert!(after < before - 0.05, "held-out loss {before} -> {after}");
    for k in ["rougeL", "cer", "wer"] {
        assert!(s["after"][k].as_f64().unwrap().is_finite(), "{k}");
    }
    assert_eq!(s["steps"].as_u64(), Some(6));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for part in [
        "Before and after",
        "Curves",
        "Pages the model reads",
        "Sample summaries",
    ] {
        assert!(html.contains(part), "report lacks {part}");
    }
    // Two charts and three page previews, inlined.
    assert_eq!(html.matches("data:image/png;base64,").count(), 5);
    assert!(out.join("best/adapter_model.safetensors").is_file());
    assert!(std::fs::read_dir(&out).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("events.out.tfevents")));
}

/// An installed `deepsynth` has no repository around it: run from an empty folder, the
/// quickstart finds the bundled model and corpus embedded in the program.
#[test]
fn quickstart_runs_from_any_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_deepsynth"))
        .current_dir(tmp.path())
        .env("DEEPSYNTH_CACHE", tmp.path().join("cache"))
        .args([
            "quickstart",
            "--max-train-samples",
            "8",
            "--epochs",
            "1",
            "--eval-steps",
            "1",
            "--max-eval-samples",
            "2",
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(tmp.path().join("runs/quickstart/report.html").is_file());
    let copy = std::fs::read_dir(tmp.path().join("cache"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(copy
        .join("models/deepsynth-ocr-tiny/model.safetensors")
        .is_file());
}

/// 8-bit QLoRA (`--bits 8`: bitsandbytes LLM.int8 decoder) lowers the held-out loss too.
#[test]
fn quickstart_with_an_int8_decoder_lowers_the_held_out_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qs8");
    let (log, s) = short_quickstart(&out, &["--bits", "8"]);
    assert!(log.contains("QLoRA: int8 decoder"), "{log}");
    let (before, after) = (
        s["before"]["loss"].as_f64().unwrap(),
        s["after"]["loss"].as_f64().unwrap(),
    );
    eprintln!("--bits 8: held-out loss {before:.4} -> {after:.4}");
    assert!(after < before - 0.05, "held-out loss {before} -> {after}");
    assert_eq!(s["steps"].as_u64(), Some(6));
    // A width that is neither 4 nor 8 is refused.
    let o = Command::new(env!("CARGO_BIN_EXE_deepsynth"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["quickstart", "--bits", "16", "--output-dir"])
        .arg(tmp.path().join("never"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--bits must be 4 or 8, got 16"));
}
