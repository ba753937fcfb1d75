//! The Python tools read what we write: TensorBoard's `EventAccumulator` reads our scalars and
//! page images, and PEFT loads our adapter (config, tensor names, shapes, values) onto the
//! model's module tree. Python comes from `DEEPSYNTH_PYTHON`, else the repo's `.venv`, else
//! `python3`; a check whose package is not installed there says so and is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use deepsynth::lora::{self, LoraConfig};
use deepsynth::model::{Config, DeepseekOcr};
use deepsynth::rng::Rng;
use deepsynth::track::{RunTracker, Tracker};
use deepsynth::weights::Weights;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("DEEPSYNTH_PYTHON") {
        return p.into();
    }
    let venv = repo().join(".venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        "python3".into()
    }
}

/// Whether `module` imports; prints why the check is skipped when not.
fn have(module: &str) -> bool {
    let ok = Command::new(python())
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "skipped: Python package `{module}` is not installed for {}",
            python().display()
        );
    }
    ok
}

fn run_json(script: &str, args: &[&Path]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(repo().join("tests/python").join(script))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tensorboard_reads_our_scalars_and_images() {
    if !have("tensorboard") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut t = RunTracker::open(tmp.path()).unwrap();
    let losses = [2.5f64, 2.25, 1.875];
    for (i, l) in losses.iter().enumerate() {
        t.scalar("train/loss", i as u64 + 1, *l).unwrap();
    }
    t.scalar("eval/rougeL", 3, 0.125).unwrap();
    let page = deepsynth::render::Renderer::from_preset(deepsynth::render::Preset::Tiny)
        .unwrap()
        .render("A page for TensorBoard.")
        .unwrap()
        .pages
        .remove(0);
    let png = page
        .to_png(deepsynth::render::PngCompression::Fast)
        .unwrap();
    t.image("pages/held_out_0", 0, &png, page.width(), page.height(), 1)
        .unwrap();
    drop(t);
    let v = run_json("read_tensorboard.py", &[tmp.path()]);
    let got: Vec<(u64, f64)> = v["scalars"]["train/loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    assert_eq!(got, vec![(1, 2.5), (2, 2.25), (3, 1.875)]);
    assert_eq!(v["scalars"]["eval/rougeL"][0][1].as_f64(), Some(0.125));
    let img = &v["images"]["pages/held_out_0"][0];
    assert_eq!(img[0].as_u64(), Some(0));
    assert_eq!(
        (img[1].as_u64(), img[2].as_u64(), img[3].as_u64()),
        (
            Some(page.width() as u64),
            Some(page.height() as u64),
            Some(png.len() as u64)
        )
    );
}

#[test]
fn peft_loads_our_adapter_onto_the_models_linears() {
    if !have("peft") {
        return;
    }
    let dir = repo().join("tests/fixtures/deepseek-ocr-tiny");
    let w = Weights::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let mut m = DeepseekOcr::new(&Config::tiny(), &w).unwrap();
    let cfg = LoraConfig::new(4, 8.0);
    lora::apply_lora(&mut m, &cfg, &mut Rng::new(3)).unwrap();
    // Non-zero B everywhere, so loading the values is checked, not just zeros.
    for (i, (_, v)) in lora::trainable_vars(&m).into_iter().enumerate() {
        let t = Tensor::randn(0f32, 0.1, v.shape(), &Device::Cpu).unwrap();
        let t = (t + i as f64 * 1e-3).unwrap();
        v.set(&t).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    lora::save_adapter(&m, &cfg, tmp.path()).unwrap();
    let ours = lora::adapter_tensors(&m).unwrap();
    let v = run_json(
        "load_peft_adapter.py",
        &[tmp.path(), &dir.join("model.safetensors")],
    );
    assert_eq!(v["r"].as_u64(), Some(4));
    assert_eq!(v["lora_alpha"].as_f64(), Some(8.0));
    assert_eq!(v["peft_class"], "PeftModelForCausalLM");
    // PEFT's own matching picks exactly the modules we adapted, under the same key names.
    assert_eq!(v["peft_keys"], v["our_keys"]);
    assert_eq!(v["our_keys"].as_array().unwrap().len(), ours.len());
    assert_eq!(v["unexpected_keys"].as_array().unwrap().len(), 0);
    assert_eq!(v["shapes_match"], true);
    assert_eq!(v["values_equal"], true);
}
