//! LoRA / QLoRA training steps of DeepSeek-OCR on CPU, ours (`Trainer::step`) against PyTorch +
//! PEFT (+ bitsandbytes for QLoRA) doing the same computation (`benches/torch_train.py`): pages
//! through the frozen vision tower, LoRA r=16 (alpha 32, dropout 0.05) on every decoder linear,
//! causal-LM loss on the text positions, backward, clipping, AdamW. Each measurement runs in its
//! own process, so memory is per run.
//!
//! Fair by construction:
//! - both sides read the same pages, input ids, image masks and labels from the safetensors files
//!   this bench writes, one per step (`step-S.safetensors`: `pixels`, `input_ids`, `image_mask`,
//!   `labels`), each read just before its step (outside the timed part) and dropped after it;
//! - both compute `lm_head` and the loss only at the positions the labels score (ours:
//!   `ForwardOptions::scored_only`);
//! - the same dtypes: `lora` everything f32; `qlora` the rules of `QuantizeSpec::nf4_decoder()`
//!   (decoder linears NF4 with f32 compute; the other frozen linears and `embed_tokens` in the
//!   checkpoint's 16-bit dtype, widened at use; the rest f32), mirrored in
//!   `benches/peer_model.py` with bitsandbytes `Linear4bit`;
//! - the same warm-up steps (untimed) and timed steps; the median timed step is reported;
//! - memory gross (peak RSS) and net of each runtime's idle baseline (ours: the process's peak
//!   RSS before loading anything; PyTorch's: after importing torch, transformers, peft,
//!   bitsandbytes and the model code, before loading).
//!
//! The PyTorch model is the official DeepSeek-OCR code when `DEEPSYNTH_OCR_CODE` names a folder
//! holding its files (see `benches/ocr_forward.rs` and README "Benchmarks"), else this
//! repository's own `benches/torch_ocr.py`; the bench says which.
//!
//! `cargo bench --bench train_vs_peft` (Python from `DEEPSYNTH_PYTHON`, else `python3`, with
//! `environment/requirements-bench-models.txt`). The full-size config reuses the random bf16
//! checkpoint of the `ocr_forward` bench (written if missing, ~7 GB);
//! `DEEPSYNTH_BENCH_SKIP_FULL=1` skips it. `DEEPSYNTH_BENCH_STEPS` (default 10 tiny, 2 full
//! size), `DEEPSYNTH_BENCH_WARMUP` (default 1) and `DEEPSYNTH_BENCH_BATCH` (default 4 tiny)
//! set the shape; `DEEPSYNTH_BENCH_MODES` (e.g. `qlora`) keeps only those modes.
//! `DEEPSYNTH_BENCH_DEVICE` (e.g. `cuda`) and `DEEPSYNTH_BENCH_DTYPE` (`bf16`) run ours on that
//! device in that compute dtype, and the PyTorch peer too (its independent implementation,
//! `benches/torch_ocr.py`, with bitsandbytes' `compute_dtype` set to it), both synchronised
//! before each clock read and their GPU memory sampled from outside with `nvidia-smi`;
//! `DEEPSYNTH_BENCH_FULL_BATCH`/`_IMAGE`/`_TEXT` set the full-size
//! shape (default 1 x 512 px + 64 tokens). `qlora-gc` is
//! `qlora` with gradient checkpointing of the decoder layers on both sides (ours:
//! `TrainConfig::gradient_checkpointing`; PyTorch: `torch.utils.checkpoint` per decoder layer,
//! non-reentrant, as transformers' `gradient_checkpointing_enable` does).

mod common;

use common::{env_usize, full_size_checkpoint, peak_rss_mib};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use deepsynth::device::DeviceSpec;
use deepsynth::lora::{self, LoraConfig};
use deepsynth::model::{Batch, Config, DeepseekOcr, ImageInput};
use deepsynth::rng::Rng;
use deepsynth::train::{TrainConfig, Trainer};
use deepsynth::weights::QuantizeSpec;

/// The settings of one measurement.
#[derive(Clone, Copy)]
struct Shape {
    warmup: usize,
    steps: usize,
    batch: usize,
    image: usize,
    text: usize,
}

/// Writes every step's batch (pages in [-1, 1], BOS + image slots + random text ids, labels on
/// the text) for both sides: `dir/step-S.safetensors`.
fn write_inputs(cfg: &Config, s: Shape, dir: &Path) {
    let q = (s.image / 16).div_ceil(4);
    let n = q * (q + 1) + 1;
    let positions = 1 + n + s.text;
    let vocab = cfg.decoder.vocab_size as u64;
    let mut rng = Rng::new(1);
    let dev = Device::Cpu;
    for step in 0..s.warmup + s.steps {
        let px: Vec<f32> = (0..s.batch * 3 * s.image * s.image)
            .map(|_| rng.uniform(-1.0, 1.0) as f32)
            .collect();
        let (mut ids, mut mask, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..s.batch {
            let text: Vec<i64> = (0..s.text)
                .map(|_| 2 + (rng.next_u64() % (vocab - 2)) as i64)
                .collect();
            ids.push(0i64);
            ids.extend(std::iter::repeat_n(cfg.image_token_id as i64, n));
            ids.extend(&text);
            mask.push(0u8);
            mask.extend(std::iter::repeat_n(1u8, n));
            mask.extend(std::iter::repeat_n(0u8, s.text));
            labels.extend(std::iter::repeat_n(-100i64, 1 + n));
            labels.extend(&text);
        }
        let shape = (s.batch, positions);
        let t: HashMap<&str, Tensor> = [
            (
                "pixels",
                Tensor::from_vec(px, (s.batch, 3, s.image, s.image), &dev).unwrap(),
            ),
            ("input_ids", Tensor::from_vec(ids, shape, &dev).unwrap()),
            ("image_mask", Tensor::from_vec(mask, shape, &dev).unwrap()),
            ("labels", Tensor::from_vec(labels, shape, &dev).unwrap()),
        ]
        .into_iter()
        .collect();
        candle_core::safetensors::save(&t, dir.join(format!("step-{step}.safetensors")))
            .expect("write inputs");
    }
}

/// The inputs of one step.
fn read_step(dir: &Path, step: usize) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join(format!("step-{step}.safetensors")), &Device::Cpu)
        .expect("inputs")
}

fn child(dir: &Path, mode: &str, inputs: &Path, warmup: usize) {
    let idle = peak_rss_mib();
    let device = common::gpu::bench_device();
    let (dtype, _) = common::gpu::bench_dtype();
    if !device.is_cpu() {
        // The parent samples the GPU memory of the CUDA context alone in this pause.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let quant = mode.starts_with("qlora").then(QuantizeSpec::nf4_decoder);
    let t0 = Instant::now();
    let files = deepsynth::model::hub::resolve(
        &deepsynth::model::ModelSource::Dir(dir.to_path_buf()),
        true,
    )
    .expect("files");
    let mut m = DeepseekOcr::from_files(&files, dtype, &device, quant).expect("model");
    let cfg = LoraConfig::new(16, 32.0);
    let summary = lora::apply_lora(&mut m, &cfg, &mut Rng::new(0)).expect("lora");
    let load_s = t0.elapsed().as_secs_f64();
    let steps = (0..)
        .take_while(|s| inputs.join(format!("step-{s}.safetensors")).exists())
        .count();
    let mut tc = TrainConfig::new(1e-4, steps as u64);
    tc.warmup_steps = 0;
    tc.gradient_checkpointing = mode.ends_with("-gc");
    let mut trainer = Trainer::new(&m, tc).expect("trainer");
    // One page's encoder alone.
    let first = read_step(inputs, 0)["pixels"]
        .get(0)
        .unwrap()
        .to_device(&device)
        .unwrap();
    let t_enc = Instant::now();
    m.encode_images(&[vec![ImageInput {
        global: first,
        tiles: None,
    }]])
    .expect("encode");
    let encode_s = t_enc.elapsed().as_secs_f64();
    let (mut step_s, mut losses) = (Vec::new(), Vec::new());
    let mut positions = 0;
    for step in 0..steps {
        let inp = read_step(inputs, step);
        let on = |t: &Tensor| t.to_device(&device).unwrap();
        let px = &on(&inp["pixels"]);
        let labels: Vec<Vec<i64>> = inp["labels"].to_vec2().unwrap();
        let input_ids = on(&inp["input_ids"].to_dtype(DType::U32).unwrap());
        let image_mask = on(&inp["image_mask"]);
        positions = input_ids.dims()[1];
        let t = Instant::now();
        let images = (0..px.dims()[0])
            .map(|b| {
                vec![ImageInput {
                    global: px.get(b).unwrap(),
                    tiles: None,
                }]
            })
            .collect();
        let batch = Batch {
            input_ids,
            image_mask,
            images,
            attention_mask: None,
            labels: Some(labels),
        };
        let r = trainer.step(&m, &[batch]).expect("step");
        if step >= warmup {
            step_s.push(t.elapsed().as_secs_f64());
            losses.push(r.loss);
        }
    }
    let line = serde_json::json!({
        "load_s": load_s, "encode_s": encode_s, "step_s": step_s, "losses": losses, "positions": positions,
        "trainable": summary.trainable_params, "idle_rss_mib": idle, "peak_rss_mib": peak_rss_mib(),
    });
    println!("{line}");
}

fn last_json(out: std::io::Result<std::process::Output>, who: &str) -> Option<serde_json::Value> {
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            println!("{who} not run: {e}");
            return None;
        }
    };
    if !out.status.success() {
        println!(
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

fn run_ours(
    exe: &Path,
    dir: &Path,
    mode: &str,
    inputs: &Path,
    s: Shape,
) -> Option<serde_json::Value> {
    let mut cmd = Command::new(exe);
    cmd.env(
        "DEEPSYNTH_BENCH_CHILD",
        format!("{}|{mode}|{}|{}", dir.display(), inputs.display(), s.warmup),
    );
    run_measured(cmd, "ours")
}

/// Runs a bench child; on a GPU its memory is sampled from outside while it runs
/// (`gpu_first_mib`: the CUDA context in the child's pause before loading, `gpu_peak_mib`).
fn run_measured(mut cmd: Command, who: &str) -> Option<serde_json::Value> {
    if common::gpu::bench_spec() == DeviceSpec::Cpu {
        return last_json(cmd.output(), who);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    let (out, first, peak) = match cmd.spawn() {
        Ok(c) => common::gpu::wait_sampling(c),
        Err(e) => (Err(e), None, None),
    };
    let mut v = last_json(out, who)?;
    v["gpu_first_mib"] = first.into();
    v["gpu_peak_mib"] = peak.into();
    Some(v)
}

fn run_peer(
    python: &str,
    dir: &Path,
    mode: &str,
    inputs: &Path,
    s: Shape,
) -> Option<serde_json::Value> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut cmd = Command::new(python);
    cmd.arg("benches/torch_train.py")
        .arg(dir)
        .arg(inputs)
        .args([mode.to_string(), s.warmup.to_string(), threads.to_string()]);
    let spec = common::gpu::bench_spec();
    if spec != DeviceSpec::Cpu {
        cmd.args([spec.to_string(), common::gpu::bench_dtype().1]);
    }
    run_measured(cmd, "PyTorch + PEFT")
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
    let h = x.len() / 2;
    if x.len() % 2 == 1 {
        x[h]
    } else {
        (x[h - 1] + x[h]) / 2.0
    }
}

fn f(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

fn compare(name: &str, dir: &Path, modes: &[&str], s: Shape, exe: &Path, python: &str) {
    println!(
        "== {name}: batch {}, {} px pages + {} text tokens, {} warm-up + {} timed steps (median)",
        s.batch, s.image, s.text, s.warmup, s.steps
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = tmp.path().to_path_buf();
    write_inputs(
        &Config::from_file(dir.join("config.json")).expect("config"),
        s,
        &inputs,
    );
    for mode in modes.iter().filter(|m| common::wanted(m)) {
        let ours = run_ours(exe, dir, mode, &inputs, s);
        let peer = run_peer(python, dir, mode, &inputs, s);
        if let Some(p) = &peer {
            println!(
                "{}",
                common::peer_line(p, &["torch", "transformers", "peft", "bitsandbytes"])
            );
        }
        for (who, v) in [("ours", &ours), ("PyTorch", &peer)] {
            if let Some(v) = v {
                eprintln!("raw {mode} {who}: {v}");
                println!(
                    "{mode:<8} {who:<8} {:>4} positions  median step {:>8.3}s ({:>6.3} steps/s, one page's encoder {:.3}s)  peak RSS {:>7.0} MiB (idle {:>5.0}, net {:>7.0})  load {:>6.1}s  trainable {}  losses {:?}",
                    v["positions"],
                    median(v),
                    1.0 / median(v),
                    f(v, "encode_s"),
                    f(v, "peak_rss_mib"),
                    f(v, "idle_rss_mib"),
                    f(v, "peak_rss_mib") - f(v, "idle_rss_mib"),
                    f(v, "load_s"),
                    v["trainable"],
                    v["losses"].as_array().map(|a| a.iter().take(3).filter_map(|x| x.as_f64()).map(|x| (x * 1000.0).round() / 1000.0).collect::<Vec<_>>()).unwrap_or_default(),
                );
                if let Some(peak) = v["gpu_peak_mib"].as_f64() {
                    let ctx = f(v, "gpu_first_mib");
                    println!(
                        "{mode:<8} {who:<8} GPU memory (nvidia-smi) peak {peak:.0} MiB, CUDA context {ctx:.0} MiB, net {:.0} MiB; {:.0} tokens/s",
                        peak - ctx,
                        f(v, "positions") * s.batch as f64 / median(v)
                    );
                }
            }
        }
        if let (Some(o), Some(p)) = (&ours, &peer) {
            println!(
                "ratio {mode}: x{:.2} steps/s; memory ours/PyTorch x{:.2} gross, x{:.2} net",
                median(p) / median(o),
                f(o, "peak_rss_mib") / f(p, "peak_rss_mib"),
                (f(o, "peak_rss_mib") - f(o, "idle_rss_mib"))
                    / (f(p, "peak_rss_mib") - f(p, "idle_rss_mib")),
            );
            if o["gpu_peak_mib"].is_number() && p["gpu_peak_mib"].is_number() {
                let net = |v: &serde_json::Value| f(v, "gpu_peak_mib") - f(v, "gpu_first_mib");
                println!(
                    "ratio {mode} GPU memory ours/PyTorch x{:.2} gross, x{:.2} net",
                    f(o, "gpu_peak_mib") / f(p, "gpu_peak_mib"),
                    net(o) / net(p)
                );
            }
        }
    }
}

fn main() {
    // As the CLI does (candle otherwise re-reads /proc/cpuinfo on every matmul).
    deepsynth::configure_threads();
    if let Ok(spec) = std::env::var("DEEPSYNTH_BENCH_CHILD") {
        let p: Vec<&str> = spec.split('|').collect();
        child(
            Path::new(p[0]),
            p[1],
            Path::new(p[2]),
            p[3].parse().expect("warmup"),
        );
        return;
    }
    let exe = std::env::current_exe().expect("exe");
    let python = common::cpu::python();
    let tiny = PathBuf::from("tests/fixtures/deepseek-ocr-tiny");
    let warmup = env_usize("DEEPSYNTH_BENCH_WARMUP", 1);
    let small = Shape {
        warmup,
        steps: env_usize("DEEPSYNTH_BENCH_STEPS", 10),
        batch: env_usize("DEEPSYNTH_BENCH_BATCH", 4),
        image: 512,
        text: 64,
    };
    compare(
        "tiny config",
        &tiny,
        &["lora", "qlora", "qlora-gc"],
        small,
        &exe,
        &python,
    );
    if std::env::var("DEEPSYNTH_BENCH_SKIP_FULL").is_ok() {
        return;
    }
    let full = full_size_checkpoint();
    let big = Shape {
        warmup,
        steps: env_usize("DEEPSYNTH_BENCH_STEPS", 2),
        batch: env_usize("DEEPSYNTH_BENCH_FULL_BATCH", 1),
        image: env_usize("DEEPSYNTH_BENCH_FULL_IMAGE", 512),
        text: env_usize("DEEPSYNTH_BENCH_FULL_TEXT", 64),
    };
    // On a GPU also 16-bit LoRA (the Unsloth notebook's setting, with DEEPSYNTH_BENCH_DTYPE=bf16);
    // on the CPU its f32 base would not fit beside the rest.
    let modes: &[&str] = if common::gpu::bench_spec() == DeviceSpec::Cpu {
        &["qlora", "qlora-gc"]
    } else {
        &["qlora-gc", "lora-gc"]
    };
    compare(
        "full-size config (3.34B, random weights)",
        &full,
        modes,
        big,
        &exe,
        &python,
    );
}
