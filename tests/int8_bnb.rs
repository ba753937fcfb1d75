//! 8-bit QLoRA (LLM.int8) against bitsandbytes 0.50.2 on the CPU (torch 2.15.0, transformers
//! 5.24.0), issue 17 item 3. Goldens: `tests/fixtures/qlora/int8_golden.safetensors`, made by
//! `tests/fixtures/qlora/make_int8_goldens.py` (its docstring lists every case). Checked here:
//! - weight quantisation (`Int8Params`: codes `CB`, scales `SCB`) and both dequantisations bit
//!   for bit, on crafted, random, bf16, f16 and odd-sized weights and the bundled tiny model's
//!   71 decoder linears;
//! - activation quantisation with the 6.0 outlier threshold (codes, scales, outlier columns);
//! - `Linear8bitLt`'s forward and input gradient, within a bound derived from the one step
//!   bitsandbytes leaves to BLAS;
//! - gradients reaching every LoRA parameter of the tiny DeepSeek-OCR over an int8 decoder;
//! - transformers' `load_in_8bit` checkpoint layout: read, written (`quantize_checkpoint`), and
//!   read back into a model.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor, Var};
use deepsynth::lora::{self, LoraConfig, LoraModel};
use deepsynth::model::{Config, DeepseekOcr};
use deepsynth::model::{Decoder, DecoderConfig, ForwardOptions};
use deepsynth::quant::int8::{quantize_rows, INT8_THRESHOLD};
use deepsynth::quant::{hf, hf8, Int8Tensor, QLinear, QWeight};
use deepsynth::rng::Rng;
use deepsynth::weights::{QuantKind, QuantizeSpec, Weights};
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

#[path = "common/ocr_fixture.rs"]
mod ocr_fixture;
use ocr_fixture::{ocr_batch, ocr_fixture, tiny_ocr};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_path() -> PathBuf {
    root().join("tests/fixtures/qlora/int8_golden.safetensors")
}

fn golden_bytes() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| std::fs::read(golden_path()).unwrap())
}

fn golden() -> SafeTensors<'static> {
    SafeTensors::deserialize(golden_bytes()).unwrap()
}

fn metadata() -> BTreeMap<String, String> {
    let (_, m) = SafeTensors::read_metadata(golden_bytes()).unwrap();
    m.metadata().clone().unwrap().into_iter().collect()
}

/// Values of an F32, BF16 or F16 tensor as f32, with its shape.
fn floats(st: &SafeTensors, key: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st.tensor(key).unwrap_or_else(|_| panic!("no {key}"));
    let d = t.data();
    let v = match t.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => panic!("{key}: {other:?}"),
    };
    (v, t.shape().to_vec())
}

fn codes(st: &SafeTensors, key: &str) -> Vec<i8> {
    st.tensor(key)
        .unwrap()
        .data()
        .iter()
        .map(|&b| b as i8)
        .collect()
}

fn diff_bits(a: &[f32], b: &[f32]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

fn sha(codes: &[i8]) -> Vec<u8> {
    let bytes: Vec<u8> = codes.iter().map(|&c| c as u8).collect();
    Sha256::digest(&bytes).to_vec()
}

#[test]
fn weight_quantisation_is_bit_exact_with_bitsandbytes() {
    let st = golden();
    let mut cases = 0;
    let mut values = 0;
    for name in ["crafted", "rand", "bf16", "f16", "odd", "one_row"] {
        let (w, shape) = floats(&st, &format!("q.{name}.input"));
        let q = Int8Tensor::quantize(&w, [shape[0], shape[1]]);
        assert_eq!(
            q.codes,
            codes(&st, &format!("q.{name}.CB_u8")),
            "{name}: CB"
        );
        let (scb, _) = floats(&st, &format!("q.{name}.SCB"));
        assert_eq!(diff_bits(&q.scb, &scb), 0, "{name}: SCB");
        if st.tensor(&format!("q.{name}.dequant")).is_ok() {
            let (deq, _) = floats(&st, &format!("q.{name}.dequant"));
            assert_eq!(diff_bits(&q.dequantize(), &deq), 0, "{name}: dequant");
            let (wfp, _) = floats(&st, &format!("q.{name}.wfp"));
            assert_eq!(diff_bits(&q.decode(), &wfp), 0, "{name}: backward weight");
        }
        cases += 1;
        values += w.len();
    }
    // The bundled model's decoder linears (their codes as SHA-256 digests).
    let tiny = std::fs::read(root().join("models/deepsynth-ocr-tiny/model.safetensors")).unwrap();
    let tiny = SafeTensors::deserialize(&tiny).unwrap();
    let mut layers = 0;
    for key in st.names() {
        let Some(k) = key
            .strip_prefix("tiny.")
            .and_then(|k| k.strip_suffix(".CB.sha256"))
        else {
            continue;
        };
        let (w, shape) = floats(&tiny, k);
        let q = Int8Tensor::quantize(&w, [shape[0], shape[1]]);
        assert_eq!(
            sha(&q.codes),
            st.tensor(key).unwrap().data(),
            "{k}: CB digest"
        );
        let (scb, _) = floats(&st, &format!("tiny.{k}.SCB"));
        assert_eq!(diff_bits(&q.scb, &scb), 0, "{k}: SCB");
        layers += 1;
        values += w.len();
    }
    assert_eq!(layers, 71);
    eprintln!(
        "bit-exact: {cases} crafted/random weights and {layers} tiny-model layers, {values} codes"
    );
}

#[test]
fn activation_quantisation_with_outliers_is_bit_exact() {
    let st = golden();
    for name in ["outliers", "none", "one_row", "zero_rows", "many"] {
        let (a, shape) = floats(&st, &format!("aq.{name}.input"));
        let q = quantize_rows(&a, shape[0], shape[1], INT8_THRESHOLD);
        assert_eq!(
            q.codes,
            codes(&st, &format!("aq.{name}.CA_u8")),
            "{name}: CA"
        );
        let (sca, _) = floats(&st, &format!("aq.{name}.SCA"));
        assert_eq!(diff_bits(&q.scales, &sca), 0, "{name}: SCA");
        let cols: Vec<usize> = st
            .tensor(&format!("aq.{name}.cols"))
            .unwrap()
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize)
            .collect();
        assert_eq!(q.outlier_cols, cols, "{name}: outlier columns");
    }
}

/// `gamma(n) = n u / (1 - n u)` for f32 (u = 2^-24): the relative bound of any order of `n`
/// rounded f32 operations on a sum (Higham, Accuracy and Stability of Numerical Algorithms, 3.1).
fn gamma(n: usize) -> f64 {
    let u = 2f64.powi(-24);
    n as f64 * u / (1.0 - n as f64 * u)
}

fn lin(st: &SafeTensors, name: &str) -> (QLinear, Vec<f32>, Vec<f32>, usize, usize, usize) {
    let (w, ws) = floats(st, &format!("fwd.{name}.w"));
    let (x, xs) = floats(st, &format!("fwd.{name}.x"));
    let bias = st
        .tensor(&format!("fwd.{name}.bias"))
        .is_ok()
        .then(|| Tensor::new(floats(st, &format!("fwd.{name}.bias")).0, &Device::Cpu).unwrap());
    let q = Int8Tensor::quantize(&w, [ws[0], ws[1]]);
    (QLinear::int8(q, bias), w, x, xs[0], ws[1], ws[0])
}

/// The tolerance: bitsandbytes' CPU forward is elementwise f32 arithmetic and an exact int32
/// product (reproduced bit for bit) except `output.addmm(subA, subB)`, the f32 product of the
/// `t` outlier columns added to the int8 result `y0`, whose order of additions is BLAS's. Any
/// two orders of those `t + 1` rounded products and sums differ from the exact value, hence from
/// each other, by at most `2 gamma(t + 2) (|y0| + sum |a_c b_c|)`; without outliers the bound is
/// 0 (bit-exact). The input gradient `g W` (a BLAS `matmul` of `out` products) is bounded the
/// same way by `2 gamma(out + 1) sum |g_j w_jk|`.
#[test]
fn linear8bitlt_forward_and_input_gradient_within_the_derived_bound() {
    let st = golden();
    for name in ["outliers", "none", "nobias", "wide"] {
        let (layer, _, x, m, k, n) = lin(&st, name);
        let QWeight::Int8(q) = layer.weight() else {
            unreachable!()
        };
        let q = q.clone();
        let xv =
            Var::from_tensor(&Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).unwrap()).unwrap();
        let y = layer.forward(xv.as_tensor()).unwrap();
        let got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let (want, _) = floats(&st, &format!("fwd.{name}.y"));
        let (exact, _) = floats(&st, &format!("fwd.{name}.y_exact"));
        let cols = quantize_rows(&x, m, k, INT8_THRESHOLD).outlier_cols;
        let deq = q.dequantize();
        let (mut worst, mut exact_bits, mut bnb_err, mut max_abs) = (0f64, 0usize, 0f64, 0f64);
        for i in 0..m {
            for j in 0..n {
                let (g, b) = (got[i * n + j] as f64, want[i * n + j] as f64);
                let mag: f64 = g.abs()
                    + cols
                        .iter()
                        .map(|&c| (x[i * k + c] as f64 * deq[j * k + c] as f64).abs())
                        .sum::<f64>();
                let bound = if cols.is_empty() {
                    0.0
                } else {
                    2.0 * gamma(cols.len() + 2) * mag
                };
                let d = (g - b).abs();
                max_abs = max_abs.max(d);
                assert!(
                    d <= bound,
                    "{name}[{i},{j}]: ours {g}, bitsandbytes {b}, bound {bound}"
                );
                worst = worst.max(if bound > 0.0 { d / bound } else { 0.0 });
                exact_bits += usize::from(g.to_bits() == b.to_bits());
                bnb_err = bnb_err.max((b - exact[i * n + j] as f64).abs());
            }
        }
        if cols.is_empty() {
            assert_eq!(exact_bits, m * n, "{name}: no outliers, so bit-exact");
        }
        // Input gradient of sum(y * dy).
        let (dy, _) = floats(&st, &format!("fwd.{name}.dy"));
        let dyt = Tensor::from_vec(dy.clone(), (m, n), &Device::Cpu).unwrap();
        let grads = (y * dyt).unwrap().sum_all().unwrap().backward().unwrap();
        let dx: Vec<f32> = grads
            .get(xv.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let (want_dx, _) = floats(&st, &format!("fwd.{name}.dx"));
        let wfp = q.decode();
        let mut worst_dx = 0f64;
        for i in 0..m {
            for c in 0..k {
                let mag: f64 = (0..n)
                    .map(|j| (dy[i * n + j] as f64 * wfp[j * k + c] as f64).abs())
                    .sum();
                let bound = 2.0 * gamma(n + 1) * mag;
                let d = (dx[i * k + c] as f64 - want_dx[i * k + c] as f64).abs();
                assert!(d <= bound, "{name} dx[{i},{c}]: {d} > {bound}");
                worst_dx = worst_dx.max(d / bound.max(f64::MIN_POSITIVE));
            }
        }
        eprintln!(
            "{name}: {m}x{k} -> {n}, {} outlier columns; y: {exact_bits}/{} bit-exact, max |diff| {max_abs:.3e}, worst {:.3} of its bound; dx worst {:.3} of its bound; bitsandbytes' own error vs the unquantised product {bnb_err:.3e}",
            cols.len(),
            m * n,
            worst,
            worst_dx
        );
    }
}

#[test]
fn hf_8bit_layout_reads_as_transformers_wrote_it() {
    let st = golden();
    let meta = metadata();
    let w = Weights::from_safetensors(&[golden_path()], DType::F32, &Device::Cpu).unwrap();
    let layer = w.pp("hf8.model.layers.0.self_attn.q_proj");
    assert!(hf8::is_prequantized(&layer));
    let q = hf8::load_int8(&layer).unwrap();
    // transformers quantised the bf16 source exactly as we do, for all 14 linears.
    let src_path = root().join("tests/fixtures/qlora/tiny_llama_bf16/model.safetensors");
    let src_bytes = std::fs::read(&src_path).unwrap();
    let src = SafeTensors::deserialize(&src_bytes).unwrap();
    let (wq, shape) = floats(&src, "model.layers.0.self_attn.q_proj.weight");
    assert_eq!(q, Int8Tensor::quantize(&wq, [shape[0], shape[1]]));
    let mut n = 0;
    for key in st.names() {
        let Some(k) = key
            .strip_prefix("hf8.")
            .and_then(|k| k.strip_suffix(".CB.sha256"))
        else {
            continue;
        };
        let (wk, s) = floats(&src, &format!("{k}.weight"));
        let ours = Int8Tensor::quantize(&wk, [s[0], s[1]]);
        assert_eq!(sha(&ours.codes), st.tensor(key).unwrap().data(), "{k}");
        assert_eq!(
            diff_bits(&ours.scb, &floats(&st, &format!("hf8.{k}.SCB")).0),
            0
        );
        n += 1;
    }
    assert_eq!(n.to_string(), meta["hf8_layers"]);
    assert_eq!(n, 14);
    // A missing SCB and a float weight are refused with errors naming the tensor.
    let mut map = std::collections::HashMap::new();
    map.insert(
        "l.weight".to_string(),
        Tensor::zeros((2, 3), DType::U8, &Device::Cpu).unwrap(),
    );
    let e = hf8::load_int8(&Weights::from_tensors(map.clone(), DType::F32, &Device::Cpu).pp("l"))
        .unwrap_err();
    assert!(e.to_string().contains("l.SCB"), "{e}");
    map.insert(
        "l.SCB".to_string(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let e = hf8::load_int8(&Weights::from_tensors(map.clone(), DType::F32, &Device::Cpu).pp("l"))
        .unwrap_err();
    assert!(e.to_string().contains("SCB must be f32 [2]"), "{e}");
    map.insert(
        "l.weight".to_string(),
        Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let e =
        hf8::load_int8(&Weights::from_tensors(map, DType::F32, &Device::Cpu).pp("l")).unwrap_err();
    assert!(e.to_string().contains("int8 codes"), "{e}");
}

fn llama_config() -> DecoderConfig {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/qlora/tiny_llama_bf16/config.json"))
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn checkpoint_written_in_transformers_layout_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let src = root().join("tests/fixtures/qlora/tiny_llama_bf16");
    let dst = tmp.path().join("bnb8");
    let spec = QuantizeSpec::int8_decoder();
    assert_eq!(spec.kind, QuantKind::Int8);
    let n = hf::quantize_checkpoint(&src, &dst, &spec, 1).unwrap();
    assert_eq!(n, 14);
    // Every key, dtype and shape as transformers' save_pretrained wrote them.
    let bytes = std::fs::read(dst.join("model.safetensors")).unwrap();
    let ours = SafeTensors::deserialize(&bytes).unwrap();
    let want: serde_json::Value = serde_json::from_str(&metadata()["hf8_keys"]).unwrap();
    let want = want.as_object().unwrap();
    assert_eq!(ours.len(), want.len());
    for (k, v) in want {
        let t = ours.tensor(k).unwrap_or_else(|_| panic!("missing {k}"));
        let dtype = match t.dtype() {
            Dtype::I8 => "torch.int8",
            Dtype::U8 => "torch.uint8",
            Dtype::F32 => "torch.float32",
            Dtype::BF16 => "torch.bfloat16",
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(dtype, v["dtype"], "{k}");
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).unwrap();
        assert_eq!(t.shape(), shape.as_slice(), "{k}");
    }
    // The q_proj tensors are byte-identical to transformers'.
    let st = golden();
    for s in ["weight", "SCB", "weight_format"] {
        let k = format!("model.layers.0.self_attn.q_proj.{s}");
        assert_eq!(
            ours.tensor(&k).unwrap().data(),
            st.tensor(&format!("hf8.{k}")).unwrap().data(),
            "{k}"
        );
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dst.join("config.json")).unwrap()).unwrap();
    let want_qc: serde_json::Value =
        serde_json::from_str(&metadata()["hf8_quantization_config"]).unwrap();
    assert_eq!(cfg["quantization_config"], want_qc);
    // Read back: the decoder loads every linear as int8 and stays close to the bf16 model.
    let dense = Weights::from_dir(&src, DType::F32, &Device::Cpu).unwrap();
    let w8 = Weights::from_dir(&dst, DType::F32, &Device::Cpu).unwrap();
    let d8 = Decoder::new(&llama_config(), &w8.pp("model"), &w8).unwrap();
    let dd = Decoder::new(&llama_config(), &dense.pp("model"), &dense).unwrap();
    let ids = Tensor::new(&[[1u32, 5, 9, 77, 200, 3, 14, 15]], &Device::Cpu).unwrap();
    let run = |d: &Decoder| -> Vec<f32> {
        let e = d.embed(&ids).unwrap();
        let p = d.positions(1, 0, 8).unwrap();
        d.forward(&e, &p, None, None, ForwardOptions::default())
            .unwrap()
            .logits
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (a, b) = (run(&d8), run(&dd));
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    eprintln!("8-bit tiny Llama logits vs bf16: max |diff| {err:.3e} (max |logit| {scale:.3e})");
    assert!(err < 0.05 * scale, "{err} vs {scale}");
    // Layers load as int8 and equal a fresh quantisation of the source.
    let l = QLinear::load(&w8.pp("model.layers.1.mlp.down_proj"), 320, 128, false).unwrap();
    let QWeight::Int8(q) = l.weight() else {
        panic!("not int8")
    };
    let (wd, _) = floats(
        &SafeTensors::deserialize(&std::fs::read(src.join("model.safetensors")).unwrap()).unwrap(),
        "model.layers.1.mlp.down_proj.weight",
    );
    assert_eq!(**q, Int8Tensor::quantize(&wd, [128, 320]));
    // A dense load of an int8 tensor is refused.
    let e = w8
        .get(&[128, 320], "model.layers.1.mlp.down_proj.weight")
        .unwrap_err();
    assert!(e.to_string().contains("int8"), "{e}");
}

/// QLoRA over an int8 decoder: every decoder linear loads as int8, the loss stays close to the
/// dense model's, and every adapter whose layer sees a token gets a finite, non-zero gradient.
#[test]
fn every_lora_parameter_gets_a_gradient_over_an_int8_base() {
    let b = ocr_batch();
    let loss = |m: &DeepseekOcr| -> f32 {
        m.forward(&b, ForwardOptions::default())
            .unwrap()
            .loss
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    let ld = loss(&tiny_ocr(None));
    let mut m = tiny_ocr(Some(QuantizeSpec::int8_decoder()));
    let l8 = loss(&m);
    eprintln!("loss dense {ld:.6}, int8 {l8:.6}");
    assert!((ld - l8).abs() < 0.02 * ld, "{ld} vs {l8}");
    let mut cfg = LoraConfig::new(4, 8.0).with_dropout(0.0);
    // Random B so that gradients reach A too (with B = 0 only B gets one at step 0).
    cfg.init_lora_weights = lora::InitLora::Bool(false);
    let s = lora::apply_lora(&mut m, &cfg, &mut Rng::new(1)).unwrap();
    let int8 = m
        .lora_layers()
        .iter()
        .filter(|(_, l)| matches!(l.base.weight(), QWeight::Int8(_)))
        .count();
    assert_eq!(int8, s.adapted_layers);
    // Score every position, so that every routed token of every layer reaches the loss.
    let mut b = ocr_batch();
    let ids: Vec<u32> = b.input_ids.flatten_all().unwrap().to_vec1().unwrap();
    b.labels = Some(vec![ids.iter().map(|&i| i as i64).collect()]);
    let out = m
        .forward(
            &b,
            ForwardOptions {
                train: true,
                trace: true,
                ..Default::default()
            },
        )
        .unwrap();
    let grads = out
        .training_objective()
        .unwrap()
        .unwrap()
        .backward()
        .unwrap();
    let vars = lora::trainable_vars(&m);
    assert_eq!(vars.len(), 2 * s.adapted_layers);
    let routed: Vec<String> = out
        .decoder
        .routing
        .iter()
        .flat_map(|(l, r)| {
            let mut used: Vec<u32> = r.experts.iter().flatten().copied().collect();
            used.sort_unstable();
            used.dedup();
            (0..8u32)
                .filter(move |e| !used.contains(e))
                .map(move |e| format!("model.layers.{l}.mlp.experts.{e}."))
        })
        .collect();
    let mut zero = 0;
    for (name, v) in &vars {
        let n: f32 = match grads.get(v.as_tensor()) {
            Some(g) => g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap(),
            None => 0.0,
        };
        assert!(n.is_finite(), "{name}");
        if n == 0.0 {
            // Experts that no token is routed to get no gradient, exactly as in PyTorch.
            assert!(
                routed.iter().any(|p| name.contains(p.as_str())),
                "{name} got a zero gradient"
            );
            zero += 1;
        }
    }
    eprintln!(
        "{} adapters over int8 bases, {zero} on unrouted experts",
        vars.len()
    );
}

/// The full-size DeepSeek-OCR decoder's linears (what `QuantizeSpec::int8_decoder` quantises:
/// the `_proj` weights under `model.layers.`, as the NF4 figure in the README counts them), from
/// the real config: one byte per weight plus a 4-byte scale per row. One layer of each shape
/// is quantised to check that `Int8Tensor::storage_bytes` is that formula.
#[test]
fn full_size_int8_decoder_memory_from_the_real_config() {
    let cfg = Config::deepseek_ocr();
    let (mut params, mut bytes, mut rows, mut layers) = (0usize, 0usize, 0usize, 0usize);
    let mut shapes = std::collections::BTreeSet::new();
    for (name, shape) in deepsynth::model::synthetic::tensor_specs(&cfg) {
        if !(name.starts_with("model.layers.") && name.ends_with("_proj.weight")) {
            continue;
        }
        params += shape[0] * shape[1];
        rows += shape[0];
        layers += 1;
        bytes += shape[0] * shape[1] + 4 * shape[0];
        shapes.insert((shape[0], shape[1]));
    }
    for &(r, c) in &shapes {
        let w: Vec<f32> = (0..r * c)
            .map(|i| ((i % 255) as f32 - 127.0) * 1e-3)
            .collect();
        assert_eq!(
            Int8Tensor::quantize(&w, [r, c]).storage_bytes(),
            r * c + 4 * r
        );
    }
    let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
    let bits = bytes as f64 * 8.0 / params as f64;
    eprintln!(
        "full-size decoder linears: {params} parameters in {layers} layers ({rows} rows); int8 + f32 row scales {bits:.4} bits/param, {:.3} GiB (bf16 {:.3} GiB); on disk +1 byte weight_format per layer",
        gib(bytes),
        gib(2 * params)
    );
    assert!(
        params > 2_500_000_000 && bits > 8.0 && bits < 8.1,
        "{params} {bits}"
    );
}

/// `deepsynth quantize --bits 8` on the bundled model: the 69 decoder linears as bitsandbytes
/// quantises them (CB digests and SCB of the goldens; the 2 MoE routers stay dense), and the
/// written checkpoint loads into DeepSeek-OCR with the same loss as quantising at load.
#[test]
fn quantize_command_writes_an_8bit_model_that_loads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ocr8");
    let src = root().join("models/deepsynth-ocr-tiny");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_deepsynth"))
        .args(["quantize", "--bits", "8", "--input"])
        .arg(&src)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("quantised 69 linear layers to int8"), "{log}");
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let ours = SafeTensors::deserialize(&bytes).unwrap();
    let st = golden();
    let (mut layers, mut routers) = (0, 0);
    for key in st.names() {
        let Some(k) = key
            .strip_prefix("tiny.")
            .and_then(|k| k.strip_suffix(".weight.CB.sha256"))
        else {
            continue;
        };
        let w = ours.tensor(&format!("{k}.weight")).unwrap();
        if k.ends_with(".mlp.gate") {
            // MoE routers are no nn.Linear: transformers keeps them dense, and so do we.
            assert_eq!(w.dtype(), Dtype::F32, "{k}");
            routers += 1;
            continue;
        }
        assert_eq!(w.dtype(), Dtype::I8, "{k}");
        assert_eq!(
            Sha256::digest(w.data()).as_slice(),
            st.tensor(key).unwrap().data(),
            "{k}"
        );
        let scb: Vec<u8> = ours.tensor(&format!("{k}.SCB")).unwrap().data().to_vec();
        assert_eq!(
            scb,
            st.tensor(&format!("tiny.{k}.weight.SCB")).unwrap().data()
        );
        layers += 1;
    }
    assert_eq!((layers, routers), (69, 2));
    // Loaded back (the DeepSeek-OCR test fixture, whose batch goldens we have).
    let (a, q) = written_and_at_load_loss("8", QuantizeSpec::int8_decoder(), tmp.path());
    eprintln!("8-bit checkpoint loss {a}, quantised at load {q}");
    assert_eq!(a.to_bits(), q.to_bits());
}

/// `deepsynth quantize --bits BITS` of the DeepSeek-OCR test fixture into `tmp`, loaded back:
/// the loss of its golden batch, and the loss with `spec` applied at load instead.
fn written_and_at_load_loss(bits: &str, spec: QuantizeSpec, tmp: &std::path::Path) -> (f32, f32) {
    let out = tmp.join(format!("fixture{bits}"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_deepsynth"))
        .args(["quantize", "--bits", bits, "--input"])
        .arg(ocr_fixture())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = Config::from_file(out.join("config.json")).unwrap();
    let w = Weights::from_dir(&out, DType::F32, &Device::Cpu).unwrap();
    let loaded = DeepseekOcr::new(&cfg, &w).unwrap();
    let at_load = tiny_ocr(Some(spec));
    let b = ocr_batch();
    let loss = |m: &DeepseekOcr| -> f32 {
        m.forward(&b, ForwardOptions::default())
            .unwrap()
            .loss
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    (loss(&loaded), loss(&at_load))
}

/// The same for `deepsynth quantize` at 4 bits (NF4): the written DeepSeek-OCR checkpoint (MoE
/// routers kept dense, as transformers keeps them) loads and gives the loss of quantising at
/// load, bit for bit.
#[test]
fn quantize_command_writes_a_4bit_model_that_loads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, q) = written_and_at_load_loss("4", QuantizeSpec::nf4_decoder(), tmp.path());
    assert!(a.is_finite());
    assert_eq!(
        a.to_bits(),
        q.to_bits(),
        "4-bit checkpoint {a}, at load {q}"
    );
}
