//! `deepsynth infer` end to end on the tiny fixture: a PNG through Pillow-exact preprocessing,
//! the model and greedy decoding gives the reference's 16 tokens; bad inputs fail cleanly.

use std::process::Command;

fn deepsynth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepsynth"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

const MODEL: &str = "tests/fixtures/deepseek-ocr-tiny";
const TOKENIZER: &str = "tests/fixtures/tiny-char-tokenizer/tokenizer.json";

/// The fixture's prompt ids after `<image>`, as text of the character tokenizer.
fn fixture_prompt() -> String {
    let tok = deepsynth::data::Tokenizer::from_file(TOKENIZER).unwrap();
    use deepsynth::data::TextCodec;
    let text = tok.decode(&[10, 57, 203, 88, 301, 12], false).unwrap();
    assert_eq!(tok.encode(&text).unwrap(), vec![10, 57, 203, 88, 301, 12]);
    format!("<image>{text}")
}

#[test]
fn png_to_reference_tokens() {
    // `auto` is the CPU in this build unless it has `cuda` and a GPU: both give the tokens.
    for device in ["auto", "cpu"] {
        png_to_reference_tokens_on(device);
    }
}

fn png_to_reference_tokens_on(device: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("out/summaries.jsonl");
    let out = deepsynth()
        .args([
            "infer",
            "--model",
            MODEL,
            "--tokenizer",
            TOKENIZER,
            "--mode",
            "256",
            "--device",
            device,
        ])
        .args([
            "--input",
            "tests/fixtures/deepseek-ocr-tiny/source.png",
            "--max-new-tokens",
            "16",
        ])
        .args([
            "--no-repeat-ngram-size",
            "20",
            "--prompt",
            &fixture_prompt(),
            "--out",
        ])
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = std::fs::read_to_string(&out_file).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let tokens: Vec<u64> = serde_json::from_value(v["result"]["tokens"].clone()).unwrap();
    assert_eq!(
        tokens,
        vec![138, 145, 447, 508, 138, 145, 447, 178, 318, 447, 178, 318, 243, 318, 243, 318]
    );
    assert_eq!(v["result"]["image_positions"], 21);
    assert_eq!(v["result"]["visual_tokens"], 16);
    assert!(v["result"]["timings"]["decode_s"].as_f64().unwrap() > 0.0);
}

/// A device this build cannot open is an error naming it and what is missing; a name that is
/// no device is a usage error listing the valid ones.
#[test]
fn unusable_devices_are_refused_by_name() {
    let run = |device: &str| {
        deepsynth()
            .args(["infer", "--model", MODEL, "--tokenizer", TOKENIZER])
            .args([
                "--device",
                device,
                "--input",
                "tests/fixtures/deepseek-ocr-tiny/source.png",
            ])
            .output()
            .unwrap()
    };
    let out = run("tpu");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown device `tpu` (auto, cpu, cuda, cuda:N)"),
        "{err}"
    );
    if !cfg!(feature = "cuda") {
        let out = run("cuda:1");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("device `cuda:1` is not available")
                && err.contains("build with `--features cuda`"),
            "{err}"
        );
    }
}

#[test]
fn beam_search_on_text_documents_and_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG not really").unwrap();
    std::fs::write(tmp.path().join("doc.txt"), "Une page de texte à résumer.").unwrap();
    let out = deepsynth()
        .args([
            "infer",
            "--model",
            MODEL,
            "--tokenizer",
            TOKENIZER,
            "--preset",
            "beam4",
        ])
        .args([
            "--max-new-tokens",
            "4",
            "--render-preset",
            "tiny",
            "--mode",
            "tiny",
            "--input",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    // One bad image: exit code 2, the good document still summarised, the error names the file.
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let err = lines.iter().find(|l| l.get("error").is_some()).unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("broken.png"),
        "{err}"
    );
    let ok = lines.iter().find(|l| l.get("result").is_some()).unwrap();
    assert_eq!(ok["result"]["tokens"].as_array().unwrap().len(), 4);
    assert!(ok["result"]["compression"].as_f64().unwrap() > 0.0);
    // A bad setting is refused before loading anything.
    let out = deepsynth()
        .args([
            "infer",
            "--model",
            MODEL,
            "--input",
            "x.png",
            "--temperature",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("temperature"));
}

/// Options that would do nothing with the chosen decoding are refused, naming the fix.
#[test]
fn options_without_their_decoding_are_refused() {
    let cases: [(&[&str], &str); 5] = [
        (&["--top-k", "5"], "--top-k only applies to sampling"),
        (&["--top-p", "0.9"], "--top-p only applies to sampling"),
        (&["--temperature", "0.7"], "add --do-sample"),
        (
            &["--early-stopping", "true"],
            "--early-stopping only applies to beam search",
        ),
        (
            &["--num-beams", "2", "--early-stopping", "soon"],
            "valid: true, false, never",
        ),
    ];
    for (args, want) in cases {
        let out = deepsynth()
            .args(["infer", "--model", MODEL, "--input", "x.png"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// A document longer than its page: the summary says how much was left off, and the
/// compression counts only the text shown.
#[test]
fn long_documents_report_what_their_page_left_off() {
    let tmp = tempfile::tempdir().unwrap();
    let words: Vec<&str> = ["river", "bridge", "council", "school"]
        .iter()
        .cycle()
        .take(5000)
        .copied()
        .collect();
    let doc = words.join(" ");
    std::fs::write(tmp.path().join("long.txt"), &doc).unwrap();
    let base = [
        "infer",
        "--model",
        MODEL,
        "--tokenizer",
        TOKENIZER,
        "--mode",
        "tiny",
        "--max-new-tokens",
        "2",
        "--input",
    ];
    let out = deepsynth()
        .args(base)
        .arg(tmp.path().join("long.txt"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let shown = v["result"]["shown_chars"].as_u64().unwrap();
    let left = v["truncated_chars"].as_u64().unwrap();
    assert!(shown > 1000 && left > 5 * shown, "{v}");
    assert!(shown + left + 1 >= doc.len() as u64);
    // Character tokenizer: one token per character shown, 64 visual tokens in Tiny mode.
    let ratio = v["result"]["compression"].as_f64().unwrap();
    assert!(
        (ratio - shown as f64 / 64.0).abs() < 1e-9,
        "{ratio} vs {shown}/64"
    );
    assert!(err.contains("were left off"), "{err}");
    // With --on-overflow error the run stops, naming the document.
    let out = deepsynth()
        .args(base)
        .arg(tmp.path().join("long.txt"))
        .args(["--on-overflow", "error"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("long: the document needs"));
}
