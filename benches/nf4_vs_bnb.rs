//! NF4 speed and size against bitsandbytes on the CPU, in one run: dequantisation GB/s (f32
//! output bytes), fused NF4 matmul GFLOP/s against our dense f32 matmul and against
//! `bitsandbytes.matmul_4bit` / torch dense on the same shapes, and the bits per parameter of the
//! full-size DeepSeek-OCR decoder quantised with double quantisation.
//!
//! Both sides quantise the same weights and multiply the same inputs, read from one safetensors
//! file this bench writes per shape (`w` [N, K] f32, `x.M` [M, K] f32), with the same schedule:
//! one untimed call, then timed calls until at least 1 s and 3 calls, best call reported.
//!
//! `cargo bench --bench nf4_vs_bnb` (peer from `DEEPSYNTH_PYTHON`, else `python3`, with torch and
//! bitsandbytes installed).

use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Tensor};
use deepsynth::model::synthetic::tensor_specs;
use deepsynth::model::Config;
use deepsynth::quant::{Nf4Tensor, QLinear, QuantDtype};
use deepsynth::rng::Rng;

fn best(min_s: f64, mut f: impl FnMut()) -> f64 {
    f();
    let (mut n, mut spent, mut best) = (0, 0.0, f64::INFINITY);
    while spent < min_s || n < 3 {
        let t = Instant::now();
        f();
        let d = t.elapsed().as_secs_f64();
        spent += d;
        n += 1;
        best = best.min(d);
    }
    best
}

fn main() {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let python = std::env::var("DEEPSYNTH_PYTHON").unwrap_or_else(|_| "python3".into());
    let ms = [1usize, 16, 280];
    println!("threads: {threads}; blocksize 64, double quantisation");
    for (n, k, what) in [
        (1280usize, 1280usize, "q_proj"),
        (896, 1280, "expert up_proj"),
        (6848, 1280, "dense up_proj"),
    ] {
        let mut rng = Rng::new(5);
        let w: Vec<f32> = (0..n * k).map(|_| (rng.normal() * 0.02) as f32).collect();
        let xs: Vec<Vec<f32>> = ms
            .iter()
            .map(|&m| (0..m * k).map(|_| rng.normal() as f32).collect())
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let inputs = dir.path().join("nf4-inputs.safetensors");
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        tensors.insert(
            "w".into(),
            Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap(),
        );
        for (&m, x) in ms.iter().zip(&xs) {
            tensors.insert(
                format!("x.{m}"),
                Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).unwrap(),
            );
        }
        candle_core::safetensors::save(&tensors, &inputs).expect("write inputs");
        let q = Nf4Tensor::quantize(&w, &[n, k], 64, true, QuantDtype::F32);
        let mut out = vec![0f32; n * k];
        let t = best(1.0, || {
            q.dequantize_into_as(0, &mut out, &[QuantDtype::F32])
        });
        println!("== {what} [{n} x {k}]");
        let ours_deq = (n * k * 4) as f64 / t / 1e9;
        let peer = Command::new(&python)
            .arg("benches/nf4_peer.py")
            .arg(&inputs)
            .arg(threads.to_string())
            .args(ms.iter().map(|m| m.to_string()))
            .output();
        let lines: Vec<serde_json::Value> = peer
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default();
        let peer_deq = lines
            .iter()
            .find(|l| l["op"] == "dequant")
            .and_then(|l| l["gbps"].as_f64());
        if let Some(d) = lines.iter().find(|l| l["op"] == "dequant") {
            println!(
                "peer: bitsandbytes {} on torch {}, optimised CPU 4-bit kernel (`kernels` package): {}",
                d["bnb"].as_str().unwrap_or("?"),
                d["torch"].as_str().unwrap_or("?"),
                if d["cpu_kernel"].as_bool() == Some(true) { "yes" } else { "no, its built-in CPU path" }
            );
        }
        match peer_deq {
            Some(p) => println!(
                "dequantise: ours {ours_deq:.2} GB/s, bitsandbytes {p:.2} GB/s, ratio x{:.2}",
                ours_deq / p
            ),
            None => println!("dequantise: ours {ours_deq:.2} GB/s (bitsandbytes not available)"),
        }
        let nf4 = QLinear::nf4(q, None).unwrap();
        let dense = QLinear::dense(
            Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap(),
            None,
        )
        .unwrap();
        for (&m, x) in ms.iter().zip(xs) {
            let x = Tensor::from_vec(x, (m, k), &Device::Cpu).unwrap();
            let tq = best(1.0, || {
                nf4.forward(&x).unwrap();
            });
            let td = best(1.0, || {
                dense.forward(&x).unwrap();
            });
            let fl = (2 * m * n * k) as f64;
            let (gq, gd) = (fl / tq / 1e9, fl / td / 1e9);
            let p = lines.iter().find(|l| l["op"] == "matmul" && l["m"] == m);
            match p {
                Some(p) => {
                    let (pq, pd) = (
                        p["nf4_gflops"].as_f64().unwrap(),
                        p["dense_gflops"].as_f64().unwrap(),
                    );
                    println!(
                        "M={m:<4} NF4 ours {gq:7.2} GFLOP/s vs bnb matmul_4bit {pq:7.2} (x{:.2}); dense ours {gd:7.2} vs torch {pd:7.2}; NF4/dense ours {:.2}",
                        gq / pq,
                        gq / gd
                    );
                }
                None => println!(
                    "M={m:<4} NF4 ours {gq:7.2} GFLOP/s; dense ours {gd:7.2}; NF4/dense {:.2}",
                    gq / gd
                ),
            }
        }
    }
    // Bits per parameter of the full-size decoder linears (what QLoRA quantises).
    let cfg = Config::deepseek_ocr();
    let (mut params, mut bytes, mut books) = (0usize, 0usize, 0usize);
    for (name, shape) in tensor_specs(&cfg) {
        let is_linear = name.starts_with("model.layers.") && name.ends_with("_proj.weight");
        if !is_linear {
            continue;
        }
        let n: usize = shape.iter().product();
        let blocks = n.div_ceil(64);
        params += n;
        // codes + one u8 scale per block + one f32 nested scale per 256 blocks + the offset
        bytes += n.div_ceil(2) + blocks + 4 * blocks.div_ceil(256) + 4;
        books += 4 * 256;
    }
    println!(
        "full-size decoder linears: {params} parameters; NF4 + double quant {:.4} bits/param ({:.4} with the 1 KiB code book bitsandbytes stores per layer); {:.2} GiB vs {:.2} GiB in bf16",
        bytes as f64 * 8.0 / params as f64,
        (bytes + books) as f64 * 8.0 / params as f64,
        (bytes + books) as f64 / (1u64 << 30) as f64,
        (params * 2) as f64 / (1u64 << 30) as f64
    );
}
