//! One Base-mode page through DeepSeek-OCR: image encoder (1024 px page) + prefill + 32 greedily
//! decoded tokens with the KV cache, on the tiny fixture config and on the full-size config
//! (random weights in the real layout, generated once under the target folder), ours and
//! PyTorch in the same run, each in its own process so that memory is per run.
//!
//! Fair by construction:
//! - both sides read the same pixels and ids from one safetensors file this bench writes
//!   (`pixels` [3, 1024, 1024] f32 in [-1, 1], `input_ids` [L] i64, `image_mask` [L] u8);
//! - both compute logits only where they are used (the last prefill position, then each new
//!   position), and run 31 decoder passes after the prefill for 32 tokens;
//! - the same warm-up runs (untimed) and the best of the same number of timed runs (by total);
//! - the same dtypes per mode: `f32` everything f32; `bf16` everything bf16; `nf4`
//!   (`QuantizeSpec::nf4_decoder()`) decoder linears NF4 with f32 compute, the other frozen
//!   linears and `embed_tokens` in the checkpoint's 16-bit dtype widened at use, the rest f32
//!   (`benches/peer_model.py` applies the same rules with bitsandbytes `Linear4bit`);
//! - memory is reported gross (peak RSS) and net of each runtime's idle baseline (ours: the
//!   process's peak RSS before loading anything; PyTorch's: after importing torch,
//!   transformers, bitsandbytes and the model code, before loading).
//!
//! The PyTorch peer (`benches/ocr_peer.py`) is the official DeepSeek-OCR code when
//! `DEEPSYNTH_OCR_CODE` names a folder holding its files (`modeling_deepseekocr.py`,
//! `deepencoder.py`, `modeling_deepseekv2.py`, `configuration_deepseek_v2.py`,
//! `conversation.py`, from the Hugging Face repository `deepseek-ai/DeepSeek-OCR`; nothing of
//! it is in this repository, see README "Benchmarks"); its builders hard-code the full sizes, so
//! for the tiny config the peer passes the config's sizes to the same official classes.
//! Without it the peer is `benches/torch_ocr.py` (this repository's own torch implementation),
//! and the bench says so.
//!
//! `cargo bench --bench ocr_forward` (Python from `DEEPSYNTH_PYTHON`, else `python3`, with
//! `environment/requirements-bench-models.txt`). Environment: `DEEPSYNTH_BENCH_SKIP_FULL=1`
//! skips the full-size config (~14 GB of RAM in f32, ~7 GB of disk); `DEEPSYNTH_BENCH_WARMUP`
//! (default 1) and `DEEPSYNTH_BENCH_REPS` (default 3 tiny, 1 full size) set the runs;
//! `DEEPSYNTH_BENCH_MODES` (e.g. `f32,nf4`) keeps only those modes.
//!
//! DeepSeek-OCR 2 follows (`DEEPSYNTH_BENCH_SKIP_OCR2=1` skips it, `DEEPSYNTH_BENCH_SKIP_OCR1=1`
//! runs it alone): a page in its crop mode (a
//! global view and two tiles: 1024 + 2 x 768 px at full size, 128 + 2 x 96 on the tiny fixture
//! `tests/fixtures/deepseek-ocr2-tiny`; 545 image positions either way), f32 and bf16, against
//! transformers' native `deepseek_ocr2` (`benches/ocr2_peer.py`, run by `DEEPSYNTH_PYTHON_OCR2`,
//! else the same Python; it needs transformers >= 5.10, see the fixture's README).

mod common;

use common::{env_usize, full_size_checkpoint, peak_rss_mib, wanted};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use deepsynth::infer::{generate, GenerationConfig, PromptInput};
use deepsynth::model::{Config, DeepseekOcr, ImageInput};
use deepsynth::weights::QuantizeSpec;

const NEW_TOKENS: usize = 32;

/// The views of the benchmarked page and the image positions they fill.
#[derive(Clone, Copy)]
struct Page {
    /// Global view side (px).
    global: usize,
    /// Tile side (px) and tile count (a row of tiles).
    tiles: Option<(usize, usize)>,
    /// Image positions in the prompt.
    positions: usize,
}

/// DeepSeek-OCR's Base mode: one 1024 px view, 16 x 16 tokens with newlines and a separator.
const BASE_PAGE: Page = Page {
    global: 1024,
    tiles: None,
    positions: 16 * 17 + 1,
};

/// Deterministic pixels in [-1, 1].
fn pixels(n: usize, salt: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| ((i + salt).wrapping_mul(2654435761) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// Writes the page and prompt both sides read: deterministic views in [-1, 1], BOS, the image
/// slots, six prompt ids.
fn write_inputs(cfg: &Config, page: Page, path: &Path) -> usize {
    let n = page.positions;
    let side = page.global;
    let mut ids = vec![0i64];
    ids.extend(std::iter::repeat_n(cfg.image_token_id as i64, n));
    ids.extend([10, 11, 12, 13, 14, 15]);
    let mut mask = vec![0u8];
    mask.extend(std::iter::repeat_n(1u8, n));
    mask.extend([0u8; 6]);
    let dev = Device::Cpu;
    let len = ids.len();
    let mut t: HashMap<&str, Tensor> = [
        (
            "pixels",
            Tensor::from_vec(pixels(3 * side * side, 0), (3, side, side), &dev).unwrap(),
        ),
        ("input_ids", Tensor::from_vec(ids, len, &dev).unwrap()),
        ("image_mask", Tensor::from_vec(mask, len, &dev).unwrap()),
    ]
    .into_iter()
    .collect();
    if let Some((s, k)) = page.tiles {
        let v = pixels(k * 3 * s * s, 7);
        t.insert("tiles", Tensor::from_vec(v, (k, 3, s, s), &dev).unwrap());
    }
    candle_core::safetensors::save(&t, path).expect("write inputs");
    len
}

/// Runs one measurement in this process and prints a JSON line.
fn child(dir: &Path, mode: &str, inputs: &Path, warmup: usize, reps: usize) {
    let idle = peak_rss_mib();
    let (dtype, quant) = match mode {
        "f32" => (DType::F32, None),
        "bf16" => (DType::BF16, None),
        "nf4" => (DType::F32, Some(QuantizeSpec::nf4_decoder())),
        other => panic!("unknown mode {other}"),
    };
    let t0 = Instant::now();
    let files = deepsynth::model::hub::resolve(
        &deepsynth::model::ModelSource::Dir(dir.to_path_buf()),
        true,
    )
    .expect("files");
    let m = DeepseekOcr::from_files(&files, dtype, &Device::Cpu, quant).expect("model");
    let load_s = t0.elapsed().as_secs_f64();
    let load_peak = peak_rss_mib();
    let inp = candle_core::safetensors::load(inputs, &Device::Cpu).expect("inputs");
    let global = inp["pixels"].clone();
    let tiles = inp.get("tiles").map(|t| {
        let k = t.dim(0).unwrap();
        (t.clone(), (k, 1))
    });
    let ids: Vec<u32> = inp["input_ids"]
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mask = &inp["image_mask"];
    let len = ids.len();
    let run = || {
        let t1 = Instant::now();
        let feats = m
            .encode_images(&[vec![ImageInput {
                global: global.clone(),
                tiles: tiles.clone(),
            }]])
            .expect("encode");
        let encode_s = t1.elapsed().as_secs_f64();
        let idt = Tensor::from_slice(&ids, (1, len), &Device::Cpu).unwrap();
        let mt = mask.reshape((1, len)).unwrap();
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
        (encode_s, out.prefill_s, out.decode_s, out.tokens)
    };
    for _ in 0..warmup {
        run();
    }
    let best = (0..reps)
        .map(|_| run())
        .min_by(|a, b| (a.0 + a.1 + a.2).total_cmp(&(b.0 + b.1 + b.2)))
        .expect("reps >= 1");
    let line = serde_json::json!({
        "load_s": load_s, "encode_s": best.0, "prefill_s": best.1, "decode_s": best.2,
        "tokens": best.3, "positions": len, "idle_rss_mib": idle, "load_peak_rss_mib": load_peak,
        "peak_rss_mib": peak_rss_mib(), "warmup": warmup, "reps": reps,
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

struct Run<'a> {
    exe: &'a Path,
    python: &'a str,
    /// The peer's script under `benches/`.
    peer: &'a str,
    dir: &'a Path,
    inputs: &'a Path,
    warmup: usize,
    reps: usize,
}

impl Run<'_> {
    fn ours(&self, mode: &str) -> Option<serde_json::Value> {
        let out = Command::new(self.exe)
            .env(
                "DEEPSYNTH_BENCH_CHILD",
                format!(
                    "{}|{mode}|{}|{}|{}",
                    self.dir.display(),
                    self.inputs.display(),
                    self.warmup,
                    self.reps
                ),
            )
            .output();
        last_json(out, "ours")
    }

    fn torch(&self, mode: &str) -> Option<serde_json::Value> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let out = Command::new(self.python)
            .arg(format!("benches/{}", self.peer))
            .arg("forward")
            .arg(self.dir)
            .arg(self.inputs)
            .args([
                mode.to_string(),
                NEW_TOKENS.to_string(),
                self.warmup.to_string(),
                self.reps.to_string(),
                threads.to_string(),
            ])
            .output();
        last_json(out, "PyTorch peer")
    }
}

fn total(v: &serde_json::Value) -> f64 {
    ["encode_s", "prefill_s", "decode_s"]
        .iter()
        .map(|k| v[k].as_f64().unwrap_or(f64::NAN))
        .sum()
}

fn f(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

fn compare(name: &str, run: &Run, modes: &[&str]) {
    println!(
        "== {name}: checkpoint {:.0} MiB on disk; {} warm-up + best of {} (by total)",
        dir_mib(run.dir),
        run.warmup,
        run.reps
    );
    for mode in modes.iter().filter(|m| wanted(m)) {
        let ours = run.ours(mode);
        let peer = run.torch(mode);
        if let Some(p) = &peer {
            println!("{}", common::peer_line(p, &["torch", "transformers"]));
        }
        for (who, v) in [("ours", &ours), ("PyTorch", &peer)] {
            if let Some(v) = v {
                eprintln!("raw {mode} {who}: {v}");
                println!(
                    "{mode:<5} {who:<8} load {:>6.2}s  encode {:>7.3}s  prefill({} pos) {:>7.3}s  decode({NEW_TOKENS} tok) {:>7.3}s  total {:>7.3}s  peak RSS {:>7.0} MiB (idle {:>5.0}, net {:>7.0})",
                    f(v, "load_s"),
                    f(v, "encode_s"),
                    v["positions"],
                    f(v, "prefill_s"),
                    f(v, "decode_s"),
                    total(v),
                    f(v, "peak_rss_mib"),
                    f(v, "idle_rss_mib"),
                    f(v, "peak_rss_mib") - f(v, "idle_rss_mib"),
                );
            }
        }
        if let (Some(o), Some(p)) = (&ours, &peer) {
            println!(
                "ratio {mode}: x{:.2} faster (total time); memory ours/PyTorch x{:.2} gross, x{:.2} net; greedy tokens equal: the first {} of {NEW_TOKENS}",
                total(p) / total(o),
                f(o, "peak_rss_mib") / f(p, "peak_rss_mib"),
                (f(o, "peak_rss_mib") - f(o, "idle_rss_mib"))
                    / (f(p, "peak_rss_mib") - f(p, "idle_rss_mib")),
                common_prefix(&o["tokens"], &p["tokens"])
            );
        }
    }
}

/// How many leading tokens two JSON arrays share.
fn common_prefix(a: &serde_json::Value, b: &serde_json::Value) -> usize {
    match (a.as_array(), b.as_array()) {
        (Some(a), Some(b)) => a.iter().zip(b).take_while(|(x, y)| x == y).count(),
        _ => 0,
    }
}

fn dir_mib(dir: &Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.ends_with(".safetensors") && name.starts_with("model")
                })
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
        let p: Vec<&str> = spec.split('|').collect();
        child(
            Path::new(p[0]),
            p[1],
            Path::new(p[2]),
            p[3].parse().expect("warmup"),
            p[4].parse().expect("reps"),
        );
        return;
    }
    let exe = std::env::current_exe().expect("exe");
    let python = common::cpu::python();
    let tmp = tempfile::tempdir().expect("tempdir");
    let warmup = env_usize("DEEPSYNTH_BENCH_WARMUP", 1);

    let tiny = PathBuf::from("tests/fixtures/deepseek-ocr-tiny");
    let inputs = tmp.path().join("tiny-inputs.safetensors");
    let skip_ocr1 = std::env::var("DEEPSYNTH_BENCH_SKIP_OCR1").is_ok();
    write_inputs(
        &Config::from_file(tiny.join("config.json")).expect("config"),
        BASE_PAGE,
        &inputs,
    );
    let run = Run {
        exe: &exe,
        python: &python,
        peer: "ocr_peer.py",
        dir: &tiny,
        inputs: &inputs,
        warmup,
        reps: env_usize("DEEPSYNTH_BENCH_REPS", 3),
    };
    if !skip_ocr1 {
        compare("tiny config, 1024 px page", &run, &["f32", "nf4"]);
    }

    let skip_full = std::env::var("DEEPSYNTH_BENCH_SKIP_FULL").is_ok();
    if !skip_full && !skip_ocr1 {
        let full = full_size_checkpoint();
        let inputs = tmp.path().join("full-inputs.safetensors");
        write_inputs(
            &Config::from_file(full.join("config.json")).expect("config"),
            BASE_PAGE,
            &inputs,
        );
        let run = Run {
            dir: &full,
            inputs: &inputs,
            reps: env_usize("DEEPSYNTH_BENCH_REPS", 1),
            ..run
        };
        compare(
            "full-size config (3.34B, random weights), 1024 px page",
            &run,
            &["f32", "bf16", "nf4"],
        );
    }
    if std::env::var("DEEPSYNTH_BENCH_SKIP_OCR2").is_ok() {
        return;
    }
    ocr2(&run, tmp.path(), skip_full);
}

/// The DeepSeek-OCR 2 rows: the tiny fixture, then the full-size configuration.
fn ocr2(base: &Run, tmp: &Path, skip_full: bool) {
    let python = std::env::var("DEEPSYNTH_PYTHON_OCR2").unwrap_or_else(|_| base.python.into());
    let tiny = PathBuf::from("tests/fixtures/deepseek-ocr2-tiny");
    let inputs = tmp.join("ocr2-tiny-inputs.safetensors");
    let page = Page {
        global: 128,
        tiles: Some((96, 2)),
        positions: 2 * 144 + 256 + 1,
    };
    write_inputs(
        &Config::from_file(tiny.join("config.json")).expect("config"),
        page,
        &inputs,
    );
    let run = Run {
        python: &python,
        peer: "ocr2_peer.py",
        dir: &tiny,
        inputs: &inputs,
        ..*base
    };
    compare(
        "DeepSeek-OCR 2 tiny fixture, 128 px global view + 2 x 96 px tiles",
        &run,
        &["f32"],
    );
    if skip_full {
        return;
    }
    let full =
        common::full_size_checkpoint_of(&Config::deepseek_ocr2(), "ocr2-full-size-random-bf16");
    let inputs = tmp.join("ocr2-full-inputs.safetensors");
    let page = Page {
        global: 1024,
        tiles: Some((768, 2)),
        ..page
    };
    write_inputs(&Config::deepseek_ocr2(), page, &inputs);
    let run = Run {
        dir: &full,
        inputs: &inputs,
        reps: env_usize("DEEPSYNTH_BENCH_REPS", 1),
        ..run
    };
    compare(
        "DeepSeek-OCR 2 full-size config (3.39B, random weights), 1024 px + 2 x 768 px tiles",
        &run,
        &["bf16", "f32"],
    );
}
