//! LoRA / QLoRA training steps of DeepSeek-OCR on CPU, ours (`Trainer::step`) against PyTorch +
//! PEFT (+ bitsandbytes for QLoRA) doing the same computation (`benches/torch_train.py`): random
//! pages through the frozen vision tower, LoRA r=16 on every decoder linear, causal-LM loss on the
//! text positions, backward, clipping, AdamW. Each measurement runs in its own process, so peak
//! memory (VmHWM / ru_maxrss) is per run; one warm-up step is not timed.
//!
//! `cargo bench --bench train_vs_peft` (Python from `DEEPSYNTH_PYTHON`, else `python3`, with
//! torch, peft and bitsandbytes). The full-size config reuses the random bf16 checkpoint of the
//! `ocr_forward` bench (written if missing, ~7 GB); `DEEPSYNTH_BENCH_SKIP_FULL=1` skips it.

mod common;

use common::{full_size_checkpoint, peak_rss_mib};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use deepsynth::lora::{self, LoraConfig};
use deepsynth::model::{Batch, DeepseekOcr, ImageInput};
use deepsynth::rng::Rng;
use deepsynth::train::{TrainConfig, Trainer};
use deepsynth::weights::QuantizeSpec;

/// The settings of one measurement.
#[derive(Clone, Copy)]
struct Shape {
    steps: usize,
    batch: usize,
    image: usize,
    text: usize,
}

fn child(dir: &Path, mode: &str, s: Shape) {
    let quant = (mode == "qlora").then(QuantizeSpec::nf4_decoder);
    let t0 = Instant::now();
    let files = deepsynth::model::hub::resolve(
        &deepsynth::model::ModelSource::Dir(dir.to_path_buf()),
        true,
    )
    .expect("files");
    let mut m = DeepseekOcr::from_files(&files, DType::F32, &Device::Cpu, quant).expect("model");
    let cfg = LoraConfig::new(16, 32.0);
    let summary = lora::apply_lora(&mut m, &cfg, &mut Rng::new(0)).expect("lora");
    let load_s = t0.elapsed().as_secs_f64();
    let mut tc = TrainConfig::new(1e-4, (s.steps + 1) as u64);
    tc.warmup_steps = 0;
    let mut trainer = Trainer::new(&m, tc).expect("trainer");
    let vocab = m.config().decoder.vocab_size as u64;
    let image_id = m.config().image_token_id;
    let mut rng = Rng::new(1);
    let (mut step_s, mut losses) = (Vec::new(), Vec::new());
    // Image rows of one page at this size (the same for every page).
    let probe = ImageInput {
        global: Tensor::zeros((3, s.image, s.image), DType::F32, &Device::Cpu).unwrap(),
        tiles: None,
    };
    let t_enc = Instant::now();
    let n = m.encode_images(&[vec![probe]]).expect("encode")[0]
        .as_ref()
        .unwrap()
        .dims()[0];
    let encode_s = t_enc.elapsed().as_secs_f64();
    let positions = 1 + n + s.text;
    for step in 0..=s.steps {
        let t = Instant::now();
        let mut images = Vec::with_capacity(s.batch);
        let mut rows = Vec::with_capacity(s.batch);
        for _ in 0..s.batch {
            let px: Vec<f32> = (0..3 * s.image * s.image)
                .map(|_| rng.uniform(-1.0, 1.0) as f32)
                .collect();
            let global = Tensor::from_vec(px, (3, s.image, s.image), &Device::Cpu).unwrap();
            let img = ImageInput {
                global,
                tiles: None,
            };
            images.push(vec![img]);
            let text: Vec<u32> = (0..s.text)
                .map(|_| 2 + (rng.next_u64() % (vocab - 2)) as u32)
                .collect();
            rows.push(text);
        }
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        let mut labels = Vec::new();
        for text in &rows {
            ids.push(0u32);
            ids.extend(std::iter::repeat_n(image_id, n));
            ids.extend(text);
            mask.push(0u8);
            mask.extend(std::iter::repeat_n(1u8, n));
            mask.extend(std::iter::repeat_n(0u8, s.text));
            let mut l = vec![-100i64; 1 + n];
            l.extend(text.iter().map(|&t| t as i64));
            labels.push(l);
        }
        let batch = Batch {
            input_ids: Tensor::from_vec(ids, (s.batch, positions), &Device::Cpu).unwrap(),
            image_mask: Tensor::from_vec(mask, (s.batch, positions), &Device::Cpu).unwrap(),
            images,
            attention_mask: None,
            labels: Some(labels),
        };
        let r = trainer.step(&m, &[batch]).expect("step");
        if step > 0 {
            step_s.push(t.elapsed().as_secs_f64());
            losses.push(r.loss);
        }
    }
    let line = serde_json::json!({
        "load_s": load_s, "encode_s": encode_s, "step_s": step_s, "losses": losses, "positions": positions,
        "trainable": summary.trainable_params, "peak_rss_mib": peak_rss_mib(),
    });
    println!("{line}");
}

fn last_json(out: std::process::Output, who: &str) -> Option<serde_json::Value> {
    if !out.status.success() {
        eprintln!(
            "{who} failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
}

fn spec(s: Shape) -> String {
    format!("{}|{}|{}|{}", s.steps, s.batch, s.image, s.text)
}

fn run_ours(exe: &Path, dir: &Path, mode: &str, s: Shape) -> Option<serde_json::Value> {
    let out = Command::new(exe)
        .env(
            "DEEPSYNTH_BENCH_CHILD",
            format!("{}|{mode}|{}", dir.display(), spec(s)),
        )
        .output()
        .ok()?;
    last_json(out, "ours")
}

fn run_peer(python: &str, dir: &Path, mode: &str, s: Shape) -> Option<serde_json::Value> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let out = Command::new(python)
        .arg("benches/torch_train.py")
        .arg(dir)
        .args([
            mode.to_string(),
            s.steps.to_string(),
            s.batch.to_string(),
            s.image.to_string(),
            s.text.to_string(),
            threads.to_string(),
        ])
        .output()
        .ok()?;
    last_json(out, "torch + peft")
}

fn median(v: &serde_json::Value) -> f64 {
    let mut x: Vec<f64> = v["step_s"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_f64()).collect())
        .unwrap_or_default();
    if x.is_empty() {
        return f64::NAN;
    }
    x.sort_by(f64::total_cmp);
    x[x.len() / 2]
}

fn compare(name: &str, dir: &Path, modes: &[&str], s: Shape, exe: &Path, python: &str) {
    println!(
        "== {name}: batch {}, {} px pages + {} text tokens, {} timed steps",
        s.batch, s.image, s.text, s.steps
    );
    for mode in modes {
        let ours = run_ours(exe, dir, mode, s);
        let peer = run_peer(python, dir, mode, s);
        for (who, v) in [("ours", &ours), ("torch+peft", &peer)] {
            if let Some(v) = v {
                println!(
                    "{mode:<6} {who:<11} {:>4} positions  median step {:>8.3}s ({:>6.3} steps/s, one page's encoder {:.3}s)  peak RSS {:>7.0} MiB  load {:>6.1}s  trainable {}  losses {:?}",
                    v["positions"],
                    median(v),
                    1.0 / median(v),
                    v["encode_s"].as_f64().unwrap_or(f64::NAN),
                    v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
                    v["load_s"].as_f64().unwrap_or(f64::NAN),
                    v["trainable"],
                    v["losses"].as_array().map(|a| a.iter().take(3).filter_map(|x| x.as_f64()).map(|x| (x * 1000.0).round() / 1000.0).collect::<Vec<_>>()).unwrap_or_default(),
                );
            }
        }
        if let (Some(o), Some(p)) = (&ours, &peer) {
            println!(
                "ratio {mode}: x{:.2} steps/s, memory x{:.2} (ours / peer)",
                median(p) / median(o),
                o["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
                    / p["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
}

fn main() {
    // As the CLI does (candle otherwise re-reads /proc/cpuinfo on every matmul).
    deepsynth::configure_threads();
    if let Ok(spec) = std::env::var("DEEPSYNTH_BENCH_CHILD") {
        let p: Vec<&str> = spec.split('|').collect();
        let n = |i: usize| p[i].parse::<usize>().expect("number");
        let s = Shape {
            steps: n(2),
            batch: n(3),
            image: n(4),
            text: n(5),
        };
        child(Path::new(p[0]), p[1], s);
        return;
    }
    let exe = std::env::current_exe().expect("exe");
    let python = std::env::var("DEEPSYNTH_PYTHON").unwrap_or_else(|_| "python3".into());
    let tiny = PathBuf::from("tests/fixtures/deepseek-ocr-tiny");
    let small = Shape {
        steps: 10,
        batch: 4,
        image: 512,
        text: 64,
    };
    compare(
        "tiny config",
        &tiny,
        &["lora", "qlora"],
        small,
        &exe,
        &python,
    );
    if std::env::var("DEEPSYNTH_BENCH_SKIP_FULL").is_ok() {
        return;
    }
    let full = full_size_checkpoint();
    let big = Shape {
        steps: 2,
        batch: 1,
        image: 512,
        text: 64,
    };
    compare(
        "full-size config (3.34B, random weights)",
        &full,
        &["qlora"],
        big,
        &exe,
        &python,
    );
}
