//! Shared by the model benchmarks: peak memory of this process, the random full-size
//! checkpoint (written once under the target folder), settings from the environment.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::DType;
use deepsynth::model::synthetic::write_random_checkpoint;
use deepsynth::model::Config;

#[allow(dead_code)]
pub mod cpu;
#[allow(dead_code)]
pub mod gpu;

/// `name` from the environment as a number, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether `mode` is among `DEEPSYNTH_BENCH_MODES` (comma-separated; unset: every mode).
pub fn wanted(mode: &str) -> bool {
    std::env::var("DEEPSYNTH_BENCH_MODES")
        .map(|v| v.split(',').any(|m| m.trim() == mode))
        .unwrap_or(true)
}

/// The line naming a PyTorch peer from its JSON report: its backend, the versions of
/// `packages` (`torch`, `transformers`, ...), whether the official code was run, its builders.
#[allow(dead_code)]
pub fn peer_line(p: &serde_json::Value, packages: &[&str]) -> String {
    let versions: Vec<String> = packages
        .iter()
        .map(|k| format!("{k} {}", p[*k].as_str().unwrap_or("?")))
        .collect();
    format!(
        "   PyTorch peer: {} ({}){}; {}",
        p["backend"].as_str().unwrap_or("?"),
        versions.join(", "),
        p["official_missing"]
            .as_str()
            .map(|w| format!(" — official code not run: {w}"))
            .unwrap_or_default(),
        p["builders"].as_str().unwrap_or("")
    )
}

/// Peak resident memory of this process (`VmHWM`), MiB.
pub fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The random bf16 full-size DeepSeek-OCR checkpoint in the real layout, written if missing
/// (~7 GB) under `$CARGO_TARGET_DIR/deepsynth-bench/`.
pub fn full_size_checkpoint() -> PathBuf {
    full_size_checkpoint_of(&Config::deepseek_ocr(), "full-size-random-bf16")
}

/// [`full_size_checkpoint`] for another configuration, under `deepsynth-bench/NAME`.
pub fn full_size_checkpoint_of(cfg: &Config, name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target"));
    let full = target.join("deepsynth-bench").join(name);
    if !full.join("model.safetensors.index.json").exists() {
        let t = Instant::now();
        let n = write_random_checkpoint(cfg, &full, DType::BF16, 1, 1 << 30).expect("checkpoint");
        println!(
            "wrote a random full-size checkpoint ({n} parameters, bf16) in {:.0}s",
            t.elapsed().as_secs_f64()
        );
    }
    full
}
