//! The command line on DeepSeek-OCR 2 (the tiny fixture `tests/fixtures/deepseek-ocr2-tiny`,
//! read in its crop mode at the fixture's sizes, `--mode ocr2:128/96`): `infer` turns the
//! fixture's PNG into transformers' 16 greedy tokens; `train --finetune-vision-layers` adapts
//! the Qwen2 encoder's layers and `infer --adapter` reads them back; bad requests are refused
//! by name.

use std::process::{Command, Output};

#[path = "common/tiny_cli.rs"]
mod tiny_cli;

const MODEL: &str = "tests/fixtures/deepseek-ocr2-tiny";
const TOKENIZER: &str = "tests/fixtures/tiny-char-tokenizer/tokenizer.json";
const MODE: &str = "ocr2:128/96";

fn deepsynth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deepsynth"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `infer` on the fixture page with the fixture's prompt; returns the JSON line.
fn infer(extra: &[&str]) -> serde_json::Value {
    let mut args = infer_in(MODE);
    args.extend_from_slice(&["--max-new-tokens", "16", "--prompt", "<image>\nFree OCR."]);
    args.extend_from_slice(extra);
    let out = deepsynth(&args);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

/// PNG -> preprocessing -> encoder -> decoder -> greedy search through the CLI gives the 16
/// tokens transformers' `deepseek_ocr2` generates for the same page and prompt.
#[test]
fn infer_reads_the_fixture_page_as_transformers_does() {
    let v = infer(&[]);
    let g = candle_core::safetensors::load(
        format!("{MODEL}/goldens.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let want: Vec<i64> = g["generated_ids"].to_vec1().unwrap();
    let got: Vec<i64> = serde_json::from_value(v["result"]["tokens"].clone()).unwrap();
    assert_eq!(got, want);
    // 2 tiles x 144 + 256 global queries + the separator.
    assert_eq!(v["result"]["image_positions"], 545);
}

/// Two training steps with the encoder's layers adapted; the adapter holds them, its config
/// leaves them to PEFT, and `infer --adapter` loads them.
#[test]
fn train_adapts_the_encoder_and_infer_reads_the_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_cli::dataset(tmp.path());
    let run = tmp.path().join("run");
    let out = deepsynth(&[
        "train",
        "--model",
        MODEL,
        "--tokenizer",
        TOKENIZER,
        "--mode",
        MODE,
        "--render-preset",
        "tiny",
        "--batch-size",
        "2",
        "--gradient-accumulation-steps",
        "1",
        "--max-new-tokens",
        "4",
        "--offline",
        "--epochs",
        "1",
        "--eval-steps",
        "2",
        "--finetune-vision-layers",
        "--dataset",
        data.to_str().unwrap(),
        "--output-dir",
        run.to_str().unwrap(),
    ]);
    ok(&out);
    let best = run.join("best");
    let tensors = candle_core::safetensors::load(
        best.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    // 2 encoder layers x 7 linears x (A, B).
    let encoder = tensors
        .keys()
        .filter(|k| k.contains(".qwen2_model."))
        .count();
    assert_eq!(encoder, 2 * 7 * 2);
    let cfg = std::fs::read_to_string(best.join("adapter_config.json")).unwrap();
    assert!(
        !cfg.contains("qwen2_model") && cfg.contains("sam_model"),
        "{cfg}"
    );
    let v = infer(&["--adapter", best.to_str().unwrap()]);
    assert_eq!(v["result"]["tokens"].as_array().unwrap().len(), 16);
}

/// Runs `args`, which must fail, and returns what it printed on stderr.
fn refused(args: &[&str]) -> String {
    let out = deepsynth(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `infer` on the fixture page in `mode`.
fn infer_in(mode: &str) -> Vec<&str> {
    vec![
        "infer",
        "--model",
        MODEL,
        "--tokenizer",
        TOKENIZER,
        "--mode",
        mode,
        "--input",
        "tests/fixtures/deepseek-ocr2-tiny/source.png",
    ]
}

#[test]
fn bad_requests_are_refused_by_name() {
    // DeepSeek-OCR's SAM + CLIP tower has no trainable path.
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_cli::dataset(tmp.path());
    let mut args = tiny_cli::TINY_TRAIN.to_vec();
    let out_dir = tmp.path().join("run");
    args.extend([
        "--finetune-vision-layers",
        "--dataset",
        data.to_str().unwrap(),
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    let err = refused(&args);
    assert!(err.contains("finetune_vision_layers"), "{err}");
    // View sizes off the model's patch grid (4 patches of 2 px here).
    let err = refused(&infer_in("ocr2:130/96"));
    assert!(err.contains("multiples of 4 SAM patches"), "{err}");
    // A DeepSeek-OCR mode for DeepSeek-OCR 2.
    let err = refused(&infer_in("256"));
    assert!(err.contains("ocr2"), "{err}");
}
