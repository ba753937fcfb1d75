//! NF4 with double quantisation byte-identical to bitsandbytes 0.50.2 on the CPU (torch 2.15.0),
//! issue 21. Goldens: `tests/fixtures/qlora/nf4_dq_golden.safetensors`, made by
//! `tests/fixtures/qlora/make_nf4_dq_goldens.py` (its docstring and the fixture README list
//! every case). Checked here:
//! - torch's float32 `sum`/`mean` order (the double-quantisation offset) on 510 seeded vectors
//!   for 1 to 16 threads;
//! - bitsandbytes' CPU 8-bit `quantize_blockwise` (the second stage) on crafted values;
//! - every tensor of the HF quantisation state (packed codes, 8-bit absmax codes,
//!   `nested_absmax`, `quant_map`, `nested_quant_map`, the quant-state JSON bytes with
//!   `nested_offset`) of 114 weights: the bundled tiny model's 71 decoder linears, one layer of
//!   each full-size DeepSeek-OCR decoder shape (for torch thread counts 1, 2 and 16 where the
//!   layer has 32,768 blocks or more), odd sizes, blocksizes 32 to 4096, zero and constant
//!   blocks, ties with NF4 midpoints, bf16 and f16 inputs;
//! - `deepsynth quantize`'s writer (`hf::quantize_checkpoint`) on the tiny model.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{DType, Tensor};
use deepsynth::quant::{hf, nf4, torch_reduce, Nf4Tensor, QuantDtype, QuantizeSpec};
use deepsynth::rng::Rng;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_bytes() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        std::fs::read(root().join("tests/fixtures/qlora/nf4_dq_golden.safetensors")).unwrap()
    })
}

fn golden() -> SafeTensors<'static> {
    SafeTensors::deserialize(golden_bytes()).unwrap()
}

fn metadata() -> BTreeMap<String, String> {
    let (_, m) = SafeTensors::read_metadata(golden_bytes()).unwrap();
    m.metadata()
        .clone()
        .unwrap()
        .into_iter()
        .collect::<BTreeMap<_, _>>()
}

fn tiny_bytes() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        std::fs::read(root().join("models/deepsynth-ocr-tiny/model.safetensors")).unwrap()
    })
}

/// Little-endian float32 values of a tensor stored as F32, BF16 or F16.
fn floats(st: &SafeTensors, key: &str) -> (Vec<f32>, Vec<usize>, QuantDtype) {
    let t = st.tensor(key).unwrap();
    let d = t.data();
    let (v, dt) = match t.dtype() {
        Dtype::F32 => (
            d.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            QuantDtype::F32,
        ),
        Dtype::BF16 => (
            d.chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            QuantDtype::Bf16,
        ),
        Dtype::F16 => (
            d.chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            QuantDtype::F16,
        ),
        other => panic!("{key}: {other:?}"),
    };
    (v, t.shape().to_vec(), dt)
}

/// The seeded generator of the goldens: per 65,536 values one `Rng` seeded with
/// `seed ^ chunk * 0x9E3779B97F4A7C15`, each value from one `next_f64` `u`:
/// `["uniform", lo, hi]`: `lo + (hi - lo) * u`; `["cubic", s]`: `s * t^3` with `t = 2u - 1`;
/// computed in f64 and rounded to f32.
fn gen(seed: u64, n: usize, kind: &Value) -> Vec<f32> {
    const CHUNK: usize = 1 << 16;
    let k = kind.as_array().unwrap();
    let f = |i: usize| k[i].as_f64().unwrap();
    let transform: Box<dyn Fn(f64) -> f32> = match k[0].as_str().unwrap() {
        "uniform" => {
            let (lo, hi) = (f(1), f(2));
            Box::new(move |u| (lo + (hi - lo) * u) as f32)
        }
        "cubic" => {
            let s = f(1);
            Box::new(move |u| {
                let t = 2.0 * u - 1.0;
                (s * (t * t * t)) as f32
            })
        }
        other => panic!("kind {other}"),
    };
    let mut out = Vec::with_capacity(n);
    for c in 0..n.div_ceil(CHUNK) {
        let mut rng = Rng::new(seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for _ in 0..CHUNK.min(n - c * CHUNK) {
            out.push(transform(rng.next_f64()));
        }
    }
    out
}

fn round_to(v: Vec<f32>, then: Option<&str>) -> Vec<f32> {
    match then {
        None => v,
        Some("bf16") => v.iter().map(|&x| QuantDtype::Bf16.round(x)).collect(),
        Some("f16") => v.iter().map(|&x| QuantDtype::F16.round(x)).collect(),
        Some(other) => panic!("then {other}"),
    }
}

/// The weight of a golden case, rebuilt as the generator made it.
fn case_input(case: &Value) -> (Vec<f32>, Vec<usize>, QuantDtype) {
    let shape: Vec<usize> = case["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let n: usize = shape.iter().product();
    let dtype = match case["dtype"].as_str().unwrap() {
        "float32" => QuantDtype::F32,
        "bfloat16" => QuantDtype::Bf16,
        "float16" => QuantDtype::F16,
        other => panic!("dtype {other}"),
    };
    let src = &case["source"];
    let then = src["then"].as_str();
    let data = if let Some(key) = src["tiny"].as_str() {
        let st = SafeTensors::deserialize(tiny_bytes()).unwrap();
        let (v, s, dt) = floats(&st, key);
        assert_eq!((s, dt), (shape.clone(), QuantDtype::F32));
        round_to(v, then)
    } else if let Some(seed) = src["seed"].as_u64() {
        round_to(gen(seed, n, &src["kind"]), then)
    } else if let Some(v) = src["fill"].as_f64() {
        vec![v as f32; n]
    } else if let Some(s) = src["blocks_of_7"].as_f64() {
        (0..n)
            .map(|j| ((j / 64 % 7) as f32 - 3.0) * s as f32)
            .collect()
    } else if let Some(key) = src["stored"].as_str() {
        let (v, s, dt) = floats(&golden(), key);
        assert_eq!((s, dt), (shape.clone(), dtype));
        v
    } else {
        panic!("source {src}")
    };
    assert_eq!(data.len(), n);
    (data, shape, dtype)
}

fn tensor_bytes(t: &Tensor) -> (Dtype, Vec<u8>) {
    let t = t.flatten_all().unwrap();
    match t.dtype() {
        DType::U8 => (Dtype::U8, t.to_vec1::<u8>().unwrap()),
        DType::F32 => (
            Dtype::F32,
            t.to_vec1::<f32>()
                .unwrap()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        other => panic!("{other:?}"),
    }
}

/// Compares our HF tensors of `q` with the golden tensors under `prefix`; returns the names of
/// those that differ (empty: byte-identical) and the number compared.
fn compare_state(st: &SafeTensors, prefix: &str, q: &Nf4Tensor) -> (Vec<String>, usize) {
    let ours = hf::nf4_tensors(q, "x").unwrap();
    let mut bad = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (k, t) in &ours {
        let suffix = k.strip_prefix("x.").unwrap();
        names.push(suffix.to_string());
        let (dtype, bytes) = tensor_bytes(t);
        let key = format!("{prefix}.{suffix}");
        let same = if let Ok(g) = st.tensor(&key) {
            g.dtype() == dtype && g.shape() == t.dims() && g.data() == bytes.as_slice()
        } else if let Ok(g) = st.tensor(&format!("{key}.sha256")) {
            // Tensors over 64 KiB are stored as their SHA-256.
            g.data() == Sha256::digest(&bytes).as_slice()
        } else {
            false
        };
        if !same {
            bad.push(suffix.to_string());
        }
    }
    // The golden holds exactly these tensors for the case.
    let mut theirs: Vec<String> = st
        .names()
        .into_iter()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}.")))
        .filter(|k| k.starts_with("weight"))
        .map(|k| k.trim_end_matches(".sha256").to_string())
        .collect();
    theirs.sort();
    names.sort();
    if theirs != names {
        bad.push(format!("tensor names {names:?} vs {theirs:?}"));
    }
    (bad, ours.len())
}

fn cases() -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(&metadata()["cases"]).unwrap()
}

#[test]
fn torch_float32_sum_and_mean_are_bit_identical() {
    let st = golden();
    let ints = |k: &str| -> Vec<i64> {
        st.tensor(k)
            .unwrap()
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let bits = |k: &str| -> Vec<u32> {
        st.tensor(k)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let meta = metadata();
    let kinds: Vec<Value> = serde_json::from_str(&meta["mean_kinds"]).unwrap();
    let threads: Vec<usize> = serde_json::from_str(&meta["mean_threads"]).unwrap();
    let (lengths, seeds, kind) = (ints("mean.lengths"), ints("mean.seeds"), ints("mean.kind"));
    assert_eq!(lengths.len(), 510);
    let mut bad = Vec::new();
    let mut thread_dependent = 0;
    for t in &threads {
        let (sums, means) = (
            bits(&format!("mean.sum.t{t}")),
            bits(&format!("mean.mean.t{t}")),
        );
        for i in 0..lengths.len() {
            let x = gen(
                seeds[i] as u64,
                lengths[i] as usize,
                &kinds[kind[i] as usize],
            );
            let (s, m) = (
                torch_reduce::sum_f32(&x, *t),
                torch_reduce::mean_f32(&x, *t),
            );
            if s.to_bits() != sums[i] || m.to_bits() != means[i] {
                bad.push((lengths[i], *t, s, f32::from_bits(sums[i])));
            }
            if *t == 16 && m != torch_reduce::mean_f32(&x, 1) {
                thread_dependent += 1;
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} differ: {:?}",
        bad.len(),
        510 * threads.len(),
        &bad[..bad.len().min(10)]
    );
    // The thread count matters (only) from 32,768 values on.
    assert!(thread_dependent > 10, "{thread_dependent}");
}

#[test]
fn blockwise_8bit_codes_are_bitsandbytes_cpu_table_lookups() {
    let st = golden();
    let (x, _, _) = floats(&st, "q8.input");
    let (code, _, _) = floats(&st, "q8.code");
    let map = nf4::dynamic_map();
    assert!(code
        .iter()
        .zip(&map)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    let (q, absmax) = nf4::quantize_blockwise(&x, &map, 256);
    let want = st.tensor("q8.codes").unwrap().data().to_vec();
    let (want_absmax, _, _) = floats(&st, "q8.absmax");
    let diff = q.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(diff, 0, "{diff} of {} codes differ", x.len());
    assert_eq!(q.len(), want.len());
    assert!(absmax
        .iter()
        .zip(&want_absmax)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(absmax.len(), 37);
}

#[test]
fn every_tensor_of_the_quantisation_state_is_byte_identical() {
    let st = golden();
    let cases = cases();
    assert_eq!(cases.len(), 114);
    let mut bad = Vec::new();
    let (mut states, mut tensors) = (0, 0);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let blocksize = case["blocksize"].as_u64().unwrap() as usize;
        let (data, shape, dtype) = case_input(case);
        // (golden prefix, torch thread count): small cases are thread-independent (the generator
        // checked 1, 2 and 16); test them with 1 and 16.
        let runs: Vec<(String, usize)> = match &case["threads"] {
            Value::String(s) if s == "any" => {
                vec![(format!("nf4.{name}"), 1), (format!("nf4.{name}"), 16)]
            }
            Value::Array(ts) => ts
                .iter()
                .map(|t| {
                    let t = t.as_u64().unwrap() as usize;
                    (format!("nf4.{name}@t{t}"), t)
                })
                .collect(),
            other => panic!("threads {other}"),
        };
        for (prefix, threads) in runs {
            let q =
                Nf4Tensor::quantize_with_threads(&data, &shape, blocksize, true, dtype, threads);
            let (b, n) = compare_state(&st, &prefix, &q);
            states += 1;
            tensors += n;
            bad.extend(
                b.into_iter()
                    .map(|k| format!("{prefix} (threads {threads}): {k}")),
            );
        }
    }
    assert!(bad.is_empty(), "{} differ:\n{}", bad.len(), bad.join("\n"));
    // 109 thread-independent cases run with 1 and 16 threads, the 5 layers of 32,768 blocks or
    // more with 1, 2 and 16.
    assert_eq!(states, 109 * 2 + 5 * 3);
    assert_eq!(tensors, 6 * states);
}

#[test]
fn quantize_command_writes_the_bitsandbytes_state_of_the_tiny_model() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = QuantizeSpec {
        kind: Default::default(),
        blocksize: 64,
        double_quant: true,
        include: vec!["model.layers.".into()],
        skip: vec!["lm_head".into()],
        compact_frozen: false,
    };
    let n = hf::quantize_checkpoint(
        &root().join("models/deepsynth-ocr-tiny"),
        tmp.path(),
        &spec,
        2,
    )
    .unwrap();
    // The bundled model's 71 decoder matrices less its 2 MoE routers, which stay dense as in
    // transformers (they are not `nn.Linear` modules).
    assert_eq!(n, 69);
    let bytes = std::fs::read(tmp.path().join("model.safetensors")).unwrap();
    let ours = SafeTensors::deserialize(&bytes).unwrap();
    let st = golden();
    let mut identical = 0;
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let Some(layer) = name.strip_prefix("tiny.") else {
            continue;
        };
        let layer = layer.trim_end_matches(".weight");
        if layer.ends_with(".mlp.gate") {
            let t = ours.tensor(&format!("{layer}.weight")).unwrap();
            assert_eq!(t.dtype(), Dtype::F32, "{layer}: router kept dense");
            continue;
        }
        let mut same = true;
        for g in st.names() {
            let Some(suffix) = g.strip_prefix(&format!("nf4.{name}.")) else {
                continue;
            };
            let t = ours.tensor(&format!("{layer}.{suffix}")).unwrap();
            let gt = st.tensor(g).unwrap();
            same &= t.dtype() == gt.dtype() && t.shape() == gt.shape() && t.data() == gt.data();
        }
        identical += same as usize;
    }
    assert_eq!(identical, 69, "layers byte-identical to bitsandbytes");
}
