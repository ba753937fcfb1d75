//! Generation speed in one run: tokens/s of greedy and 4-beam search on the tiny Llama fixture,
//! ours against transformers `generate` on the same weights (float32), and ours on the tiny and
//! full-size DeepSeek-OCR configs (one Base-mode page prompt; the PyTorch greedy decode of the
//! same model is in `cargo bench --bench ocr_forward`).
//!
//! Both sides: the same prompt ids, f32 weights, one untimed generation of the same length, then
//! the best of 3; EOS never ends a run (`min_new_tokens` = `max_new_tokens`); `lm_head` at the
//! last prompt position only in the prefill (transformers' `generate` keeps one logit row too).
//!
//! `cargo bench --bench generate_vs_hf` (transformers from `DEEPSYNTH_PYTHON`, else `python3`, and
//! also from `DEEPSYNTH_PYTHON_GENERATE` when set: the model benchmarks pin transformers 4.46.3 for
//! the official DeepSeek-OCR code, and a newer release may generate faster;
//! `DEEPSYNTH_BENCH_SKIP_FULL=1` skips the full-size config). `DEEPSYNTH_BENCH_DEVICE`
//! (`cpu` by default, `cuda` in the GPU check) puts both sides on that device, and
//! `DEEPSYNTH_BENCH_DTYPE` (`f32` by default, or `bf16`) gives both sides that dtype; on a GPU
//! transformers' timings end with `torch.cuda.synchronize()`, ours with the tokens on the host.

#[allow(dead_code)]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use candle_core::Tensor;
use deepsynth::device::device_name;
use deepsynth::infer::{generate, EarlyStopping, GenerationConfig, LanguageModel, PromptInput};
use deepsynth::model::{Decoder, DecoderConfig, DeepseekOcr, ImageInput, ModelSource};
use deepsynth::weights::{QuantizeSpec, Weights};

const NEW: usize = 64;

fn settings(eos: u32) -> Vec<(&'static str, GenerationConfig)> {
    let mut greedy = GenerationConfig::default();
    greedy.max_new_tokens = NEW;
    greedy.min_new_tokens = NEW;
    greedy.eos_token_ids = vec![eos];
    let mut beam = greedy.clone();
    beam.num_beams = 4;
    beam.early_stopping = EarlyStopping::Bool(true);
    vec![("greedy", greedy), ("beam4", beam)]
}

fn tokens_per_s(
    lm: &dyn LanguageModel,
    prompt: &PromptInput,
    cfg: &GenerationConfig,
) -> (f64, usize) {
    generate(lm, std::slice::from_ref(prompt), cfg, None).unwrap();
    let mut best = f64::INFINITY;
    let mut n = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let g = generate(lm, std::slice::from_ref(prompt), cfg, None)
            .unwrap()
            .pop()
            .unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        n = g.tokens.len();
    }
    (n as f64 / best, n)
}

fn page_prompt(m: &DeepseekOcr) -> PromptInput {
    let pixels: Vec<f32> = (0..3 * 1024 * 1024)
        .map(|i| ((i as u64).wrapping_mul(2654435761) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let global = Tensor::from_vec(pixels, (3, 1024, 1024), m.device()).unwrap();
    let feats = m
        .encode_images(&[vec![ImageInput {
            global,
            tiles: None,
        }]])
        .unwrap();
    let n = feats[0].as_ref().unwrap().dims()[0];
    let mut ids = vec![0u32];
    ids.extend(std::iter::repeat_n(m.config().image_token_id, n));
    ids.extend([10, 11, 12]);
    let mut mask = vec![0u8];
    mask.extend(std::iter::repeat_n(1u8, n));
    mask.extend([0u8; 3]);
    let it = Tensor::from_slice(&ids, (1, ids.len()), m.device()).unwrap();
    let mt = Tensor::from_slice(&mask, (1, mask.len()), m.device()).unwrap();
    let e = m.merge_embeddings(&it, &mt, &feats).unwrap();
    PromptInput {
        embeds: e.squeeze(0).unwrap(),
        ids,
    }
}

fn main() {
    // As the CLI does (candle otherwise re-reads /proc/cpuinfo on every matmul).
    deepsynth::configure_threads();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // transformers from DEEPSYNTH_PYTHON (the model benchmarks pin 4.46.3 there for the official
    // DeepSeek-OCR code) and, when set, from DEEPSYNTH_PYTHON_GENERATE (e.g. a newer release).
    let mut pythons = vec![std::env::var("DEEPSYNTH_PYTHON").unwrap_or_else(|_| "python3".into())];
    if let Ok(p) = std::env::var("DEEPSYNTH_PYTHON_GENERATE") {
        if !pythons.contains(&p) {
            pythons.push(p);
        }
    }
    let device = common::gpu::bench_device();
    let dev_name = device_name(&device);
    let (dtype, dtype_name) = common::gpu::bench_dtype();
    let llama = PathBuf::from("tests/fixtures/qlora/tiny_llama_bf16");
    let cfg: DecoderConfig =
        serde_json::from_str(&std::fs::read_to_string(llama.join("config.json")).unwrap()).unwrap();
    let w = Weights::from_dir(&llama, dtype, &device).unwrap();
    let dec = Decoder::new(&cfg, &w.pp("model"), &w).unwrap();
    let prompt = PromptInput::from_ids(&dec, &[1, 17, 42, 99, 3, 200, 5, 77]).unwrap();
    let peers: Vec<Vec<serde_json::Value>> = pythons
        .iter()
        .map(|python| {
            Command::new(python)
                .args([
                    "benches/hf_generate.py",
                    llama.to_str().unwrap(),
                    &threads.to_string(),
                    &NEW.to_string(),
                    &dev_name,
                    &dtype_name,
                ])
                .output()
                .ok()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    println!("== tiny Llama fixture ({dtype_name}), {NEW} new tokens, {threads} threads, device {dev_name}");
    for (name, g) in settings(u32::MAX - 1) {
        let (ours, n) = tokens_per_s(&dec, &prompt, &g);
        println!("{name:<7} ours {ours:9.1} tok/s ({n} tokens)");
        for peer in &peers {
            match peer.iter().find(|p| p["setting"] == name) {
                Some(p) => {
                    let t = p["tokens_per_s"].as_f64().unwrap();
                    println!(
                        "{name:<7}   transformers {} (torch {}) {t:9.1} tok/s ({} tokens)  ratio ours/peer x{:.2}",
                        p["transformers"].as_str().unwrap_or("?"),
                        p["torch"].as_str().unwrap_or("?"),
                        p["tokens"],
                        ours / t
                    );
                }
                None => println!("{name:<7}   (transformers not available)"),
            }
        }
    }
    let mut models = vec![(
        "tiny DeepSeek-OCR",
        PathBuf::from("tests/fixtures/deepseek-ocr-tiny"),
        None,
    )];
    if std::env::var("DEEPSYNTH_BENCH_SKIP_FULL").is_err() {
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("target"));
        let full = target.join("deepsynth-bench/full-size-random-bf16");
        if full.join("model.safetensors.index.json").exists() {
            models.push((
                "full-size DeepSeek-OCR (NF4 decoder)",
                full.clone(),
                Some(QuantizeSpec::nf4_decoder()),
            ));
            models.push(("full-size DeepSeek-OCR", full, None));
        } else {
            println!("(full-size checkpoint missing: run `cargo bench --bench ocr_forward` first)");
        }
    }
    for (label, dir, quant) in models {
        let files = deepsynth::model::hub::resolve(&ModelSource::Dir(dir), true).unwrap();
        let m = DeepseekOcr::from_files(&files, dtype, &device, quant).unwrap();
        let p = page_prompt(&m);
        println!(
            "== {label} ({dtype_name}, {dev_name}), Base page prompt ({} positions), {NEW} new tokens",
            p.ids.len()
        );
        for (name, g) in settings(u32::MAX - 1) {
            let (ours, n) = tokens_per_s(&m, &p, &g);
            println!("{name:<7} ours {ours:9.2} tok/s ({n} tokens, prefill included)");
        }
    }
}
