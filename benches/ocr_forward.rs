//! One Base-mode page through DeepSeek-OCR: encoder (1024 px page) + 273-position prefill + 32
//! greedily decoded tokens with the KV cache, on the tiny fixture config and on the full-size
//! config (random weights in the real layout, generated once under the target folder), ours and
//! PyTorch (`benches/torch_ocr.py`, the same computation) in the same run, each in its own
//! process so peak memory (VmHWM / ru_maxrss) is per run.
//!
//! `cargo bench --bench ocr_forward` (PyTorch from `DEEPSYNTH_PYTHON`, else `python3`; set
//! `DEEPSYNTH_BENCH_SKIP_FULL=1` to skip the full-size config, which needs ~14 GB of RAM in f32
//! and ~7 GB of disk).

mod common;

use common::{full_size_checkpoint, peak_rss_mib};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use deepsynth::infer::{generate, GenerationConfig, PromptInput};
use deepsynth::model::{Config, DeepseekOcr, ImageInput};
use deepsynth::weights::QuantizeSpec;

const NEW_TOKENS: usize = 32;
const PAGE: usize = 1024;

/// Runs one measurement in this process and prints a JSON line.
fn child(dir: &Path, mode: &str) {
    let (dtype, quant) = match mode {
        "f32" => (DType::F32, None),
        "bf16" => (DType::BF16, None),
        "nf4" => (DType::F32, Some(QuantizeSpec::nf4_decoder())),
        other => panic!("unknown mode {other}"),
    };
    let t0 = Instant::now();
    let cfg = Config::from_file(dir.join("config.json")).expect("config");
    let files = deepsynth::model::hub::resolve(
        &deepsynth::model::ModelSource::Dir(dir.to_path_buf()),
        true,
    )
    .expect("files");
    let m = DeepseekOcr::from_files(&files, dtype, &Device::Cpu, quant).expect("model");
    let load_s = t0.elapsed().as_secs_f64();
    let load_peak = peak_rss_mib();
    // A deterministic page in [-1, 1].
    let pixels: Vec<f32> = (0..3 * PAGE * PAGE)
        .map(|i| ((i as u64).wrapping_mul(2654435761) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let global = Tensor::from_vec(pixels, (3, PAGE, PAGE), &Device::Cpu).unwrap();
    let t1 = Instant::now();
    let feats = m
        .encode_images(&[vec![ImageInput {
            global,
            tiles: None,
        }]])
        .expect("encode");
    let encode_s = t1.elapsed().as_secs_f64();
    let n = feats[0].as_ref().unwrap().dims()[0];
    let mut ids = vec![0u32];
    ids.extend(std::iter::repeat_n(cfg.image_token_id, n));
    ids.extend([10, 11, 12, 13, 14, 15]);
    let mut mask = vec![0u8];
    mask.extend(std::iter::repeat_n(1u8, n));
    mask.extend([0u8; 6]);
    let idt = Tensor::from_slice(&ids, (1, ids.len()), &Device::Cpu).unwrap();
    let mt = Tensor::from_slice(&mask, (1, mask.len()), &Device::Cpu).unwrap();
    let embeds = m.merge_embeddings(&idt, &mt, &feats).expect("merge");
    let mut g = GenerationConfig::default();
    g.max_new_tokens = NEW_TOKENS;
    g.eos_token_ids = vec![u32::MAX - 1];
    let prompt = PromptInput {
        embeds: embeds.squeeze(0).unwrap(),
        ids: ids.clone(),
    };
    let out = generate(&m, &[prompt], &g, None)
        .expect("generate")
        .pop()
        .unwrap();
    let line = serde_json::json!({
        "load_s": load_s, "encode_s": encode_s, "prefill_s": out.prefill_s, "decode_s": out.decode_s,
        "positions": ids.len(), "tokens": out.tokens.len(), "load_peak_rss_mib": load_peak,
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{line}");
}

fn run_child(exe: &Path, dir: &Path, mode: &str) -> Option<serde_json::Value> {
    let out = Command::new(exe)
        .env("DEEPSYNTH_BENCH_CHILD", format!("{}|{mode}", dir.display()))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
}

fn run_torch(python: &str, dir: &Path, dtype: &str) -> Option<serde_json::Value> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let out = Command::new(python)
        .args(["benches/torch_ocr.py", "bench"])
        .arg(dir)
        .args([
            dtype,
            &PAGE.to_string(),
            &NEW_TOKENS.to_string(),
            &threads.to_string(),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "torch peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
}

fn total(v: &serde_json::Value) -> f64 {
    ["encode_s", "prefill_s", "decode_s"]
        .iter()
        .map(|k| v[k].as_f64().unwrap_or(f64::NAN))
        .sum()
}

fn report(
    name: &str,
    ours: &[(String, serde_json::Value)],
    peers: &[(String, serde_json::Value)],
    ckpt_mib: f64,
) {
    println!("== {name} (checkpoint {ckpt_mib:.0} MiB on disk)");
    for (label, v) in ours.iter().chain(peers) {
        println!(
            "{label:<14} load {:>6.2}s  encode {:>7.3}s  prefill({} pos) {:>7.3}s  decode({} tok) {:>7.3}s  total {:>7.3}s  peak RSS {:>7.0} MiB ({:.2}x checkpoint)",
            v["load_s"].as_f64().unwrap_or(f64::NAN),
            v["encode_s"].as_f64().unwrap_or(f64::NAN),
            v["positions"],
            v["prefill_s"].as_f64().unwrap_or(f64::NAN),
            NEW_TOKENS,
            v["decode_s"].as_f64().unwrap_or(f64::NAN),
            total(v),
            v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
            v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN) / ckpt_mib,
        );
    }
    for (label, o) in ours {
        let dtype = if label.contains("bf16") {
            "torch bf16"
        } else {
            "torch f32"
        };
        if let Some((_, p)) = peers.iter().find(|(l, _)| l == dtype) {
            println!(
                "ratio {label} vs {dtype}: x{:.2} faster (total time), memory x{:.2}",
                total(p) / total(o),
                o["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
                    / p["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
}

fn dir_mib(dir: &Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .sum::<u64>() as f64
                / (1024.0 * 1024.0)
        })
        .unwrap_or(f64::NAN)
}

fn main() {
    // As the CLI does (candle otherwise re-reads /proc/cpuinfo on every matmul).
    deepsynth::configure_threads();
    if let Ok(spec) = std::env::var("DEEPSYNTH_BENCH_CHILD") {
        let (dir, mode) = spec.split_once('|').expect("dir|mode");
        child(Path::new(dir), mode);
        return;
    }
    let exe = std::env::current_exe().expect("exe");
    let python = std::env::var("DEEPSYNTH_PYTHON").unwrap_or_else(|_| "python3".into());
    let tiny = PathBuf::from("tests/fixtures/deepseek-ocr-tiny");
    let mut ours = Vec::new();
    for mode in ["f32", "nf4"] {
        if let Some(v) = run_child(&exe, &tiny, mode) {
            ours.push((format!("ours {mode}"), v));
        }
    }
    let peers: Vec<(String, serde_json::Value)> = run_torch(&python, &tiny, "f32")
        .map(|v| vec![("torch f32".to_string(), v)])
        .unwrap_or_default();
    report("tiny config, 1024 px page", &ours, &peers, dir_mib(&tiny));

    if std::env::var("DEEPSYNTH_BENCH_SKIP_FULL").is_ok() {
        return;
    }
    let full = full_size_checkpoint();
    let mut ours = Vec::new();
    for mode in ["f32", "bf16", "nf4"] {
        if let Some(v) = run_child(&exe, &full, mode) {
            ours.push((format!("ours {mode}"), v));
        }
    }
    let mut peers = Vec::new();
    for dt in ["f32", "bf16"] {
        if let Some(v) = run_torch(&python, &full, dt) {
            peers.push((format!("torch {dt}"), v));
        }
    }
    report(
        "full-size config (3.34B, random weights), 1024 px page",
        &ours,
        &peers,
        dir_mib(&full),
    );
}
