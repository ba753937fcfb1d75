//! QLoRA parity with bitsandbytes 0.50.2, transformers 5.24 and PEFT 0.21.2
//! (`tests/fixtures/qlora`, see its README): NF4 codes and dequantisation bit for bit, the
//! HF 4-bit layout, a LoRA-NF4 linear's outputs and gradients, and a tiny Llama with a PEFT
//! adapter (logits, loss and all 28 LoRA gradients).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use deepsynth::lora::{self, LoraAdapter, LoraLinear, LoraModel};
use deepsynth::model::loss::causal_lm_loss;
use deepsynth::model::{Decoder, DecoderConfig, ForwardOptions};
use deepsynth::quant::{hf, Absmax, Nf4Tensor, QLinear, QWeight, QuantDtype};
use deepsynth::weights::{QuantizeSpec, Weights};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qlora")
}

fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir().join(name), &Device::Cpu).unwrap()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn u8s(t: &Tensor) -> Vec<u8> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn bits_equal(a: &[f32], b: &[f32]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

fn golden_weights() -> Weights {
    Weights::from_tensors(load("nf4_golden.safetensors"), DType::F32, &Device::Cpu)
}

fn npy_u8(name: &str) -> Vec<u8> {
    let bytes = std::fs::read(dir().join(name)).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header_len..].to_vec()
}

#[test]
fn single_quantisation_is_bit_exact() {
    let g = load("nf4_golden.safetensors");
    let input = f32s(&g["input.f32"]);
    let q = Nf4Tensor::quantize(&input, &[128, 320], 64, false, QuantDtype::F32);
    assert_eq!(q.codes, u8s(&g["single.weight"]), "NF4 codes");
    let Absmax::Single(a) = &q.absmax else {
        panic!()
    };
    assert_eq!(
        bits_equal(a, &f32s(&g["single.weight.absmax"])),
        0,
        "absmax"
    );
    // Block 35 is all zeros: 0x77.
    assert!(q.codes[35 * 32..36 * 32].iter().all(|&b| b == 0x77));
    let stored = hf::load_nf4(&golden_weights().pp("single")).unwrap();
    assert_eq!(
        bits_equal(&stored.dequantize(), &f32s(&g["single.dequant.f32"])),
        0
    );
    assert_eq!(
        bits_equal(&q.dequantize(), &f32s(&g["single.dequant.f32"])),
        0
    );
}

#[test]
fn double_quantisation_is_bit_exact_with_bitsandbytes_cpu() {
    let g = load("nf4_golden.safetensors");
    let stored = hf::load_nf4(&golden_weights().pp("double")).unwrap();
    assert_eq!(
        bits_equal(&stored.dequantize(), &f32s(&g["double.dequant.f32"])),
        0
    );
    let input = f32s(&g["input.f32"]);
    let q = Nf4Tensor::quantize(&input, &[128, 320], 64, true, QuantDtype::F32);
    assert_eq!(q.codes, u8s(&g["double.weight"]), "NF4 codes");
    assert_eq!(
        q.absmax, stored.absmax,
        "absmax codes, nested scales, offset"
    );
    let Absmax::Double {
        codes,
        nested_absmax,
        offset,
        nested_map,
        ..
    } = &q.absmax
    else {
        panic!()
    };
    assert_eq!(
        *offset as f64, 0.053481023758649826,
        "offset = mean(absmax)"
    );
    assert_eq!(
        bits_equal(nested_absmax, &f32s(&g["double.weight.nested_absmax"])),
        0
    );
    assert_eq!(bits_equal(nested_map, &f32s(&g["dynamic_map_256.f32"])), 0);
    // The 8-bit scale codes are bitsandbytes' CPU table lookups; its CUDA kernel's
    // nearest-value search (emulated in the fixture) differs in 8 of them.
    assert_eq!(
        codes,
        &u8s(&g["double.weight.absmax"]),
        "absmax codes (CPU)"
    );
    let cuda_diff = codes
        .iter()
        .zip(npy_u8("double.qabsmax_cuda_emulated.npy"))
        .filter(|(a, b)| **a != *b)
        .count();
    assert_eq!(
        cuda_diff, 8,
        "the fixture documents 8/640 CPU-vs-CUDA differences"
    );
    assert!(
        (q.bits_per_param() - 4.127).abs() < 0.01,
        "{}",
        q.bits_per_param()
    );
}

#[test]
fn bf16_and_odd_lengths() {
    let g = load("nf4_golden.safetensors");
    let stored = hf::load_nf4(&golden_weights().pp("bf16double")).unwrap();
    assert_eq!(stored.dtype, QuantDtype::Bf16);
    assert_eq!(
        bits_equal(&stored.dequantize(), &f32s(&g["bf16double.dequant.bf16"])),
        0
    );
    let q = Nf4Tensor::quantize(
        &f32s(&g["input.bf16"]),
        &[128, 320],
        64,
        true,
        QuantDtype::Bf16,
    );
    assert_eq!(q.codes, u8s(&g["bf16double.weight"]));
    assert_eq!(q.absmax, stored.absmax);
    assert_eq!(
        bits_equal(&q.dequantize(), &f32s(&g["bf16double.dequant.bf16"])),
        0
    );

    let odd = Nf4Tensor::quantize(
        &f32s(&g["odd.input.f32"]),
        &[135],
        64,
        false,
        QuantDtype::F32,
    );
    assert_eq!(odd.codes, u8s(&g["odd.weight"]));
    assert_eq!(odd.codes[67] & 0x0f, 7, "pad nibble");
    let Absmax::Single(a) = &odd.absmax else {
        panic!()
    };
    assert_eq!(bits_equal(a, &f32s(&g["odd.weight.absmax"])), 0);
    assert_eq!(
        bits_equal(&odd.dequantize(), &f32s(&g["odd.dequant.f32"])),
        0
    );
}

#[test]
fn hf_layout_round_trips_byte_for_byte() {
    let g = load("nf4_golden.safetensors");
    for prefix in ["single", "double", "bf16double"] {
        let q = hf::load_nf4(&golden_weights().pp(prefix)).unwrap();
        for (k, t) in hf::nf4_tensors(&q, prefix).unwrap() {
            let want = &g[&k];
            assert_eq!(t.dims(), want.dims(), "{k} shape");
            assert_eq!(t.dtype(), want.dtype(), "{k} dtype");
            let same = match t.dtype() {
                DType::U8 => u8s(&t) == u8s(want),
                _ => bits_equal(&f32s(&t), &f32s(want)) == 0,
            };
            assert!(same, "{k} differs");
        }
    }
}

#[test]
fn lora_nf4_linear_outputs_and_gradients() {
    let g = load("lora_nf4_linear_golden.safetensors");
    let q = hf::load_nf4(&golden_weights().pp("double")).unwrap();
    let layer = LoraLinear {
        base: QLinear::nf4(q, None).unwrap(),
        adapter: Some(LoraAdapter {
            a: Var::from_tensor(&g["A"]).unwrap(),
            b: Var::from_tensor(&g["B"]).unwrap(),
            scale: 2.0,
            dropout: 0.0,
        }),
        merged: false,
    };
    let x = Var::from_tensor(&g["x"]).unwrap();
    let y = layer.forward_t(x.as_tensor(), true).unwrap();
    let close = |name: &str, got: &Tensor, want: &Tensor| {
        let (a, b) = (f32s(got), f32s(want));
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let max = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        eprintln!("{name}: max |diff| {max:.3e} (max |value| {scale:.3e})");
        assert!(max <= 1e-5 * scale, "{name}: {max} vs scale {scale}");
    };
    close("y", &y, &g["y.f64"]);
    let loss = (y * &g["dY"]).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let ad = layer.adapter.as_ref().unwrap();
    close("dX", grads.get(x.as_tensor()).unwrap(), &g["dX.f64"]);
    close("dA", grads.get(ad.a.as_tensor()).unwrap(), &g["dA.f64"]);
    close("dB", grads.get(ad.b.as_tensor()).unwrap(), &g["dB.f64"]);
}

fn llama_config() -> DecoderConfig {
    let text = std::fs::read_to_string(dir().join("tiny_llama_bnb4/config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn llama(folder: &str, dtype: DType, quantize: Option<QuantizeSpec>) -> Decoder {
    let w = Weights::from_dir(&dir().join(folder), dtype, &Device::Cpu)
        .unwrap()
        .with_quantize(quantize);
    Decoder::new(&llama_config(), &w.pp("model"), &w).unwrap()
}

#[test]
fn tiny_llama_with_peft_adapter_matches_logits_loss_and_all_gradients() {
    let g = load("tiny_llama_qlora_golden.safetensors");
    let mut model = llama("tiny_llama_bnb4", DType::F32, None);
    let cfg = lora::load_adapter(&mut model, &dir().join("tiny_llama_qlora_adapter")).unwrap();
    assert_eq!((cfg.r, cfg.lora_alpha), (8, 16.0));
    let ids = g["input_ids"].to_dtype(DType::U32).unwrap();
    let (b, l) = ids.dims2().unwrap();
    let embeds = model.embed(&ids).unwrap();
    let positions = model.positions(b, 0, l).unwrap();
    let opts = ForwardOptions {
        train: true,
        ..Default::default()
    };
    let out = model
        .forward(&embeds, &positions, None, None, opts)
        .unwrap();
    let labels: Vec<Vec<i64>> = g["input_ids"].to_vec2().unwrap();
    let (loss, _) = causal_lm_loss(&out.logits, &labels).unwrap();
    let max = f32s(&out.logits)
        .iter()
        .zip(f32s(&g["logits"]))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("logits max |diff| {max:.3e}");
    assert!(max < 1e-4, "logits differ by {max}");
    let lv: f32 = loss.to_scalar().unwrap();
    let want = f32s(&g["loss"])[0];
    assert!((lv - want).abs() < 1e-5, "loss {lv} vs {want}");
    let grads = loss.backward().unwrap();
    let vars = lora::trainable_vars(&model);
    assert_eq!(vars.len(), 28);
    let mut worst = 0f32;
    for (name, var) in &vars {
        let got = f32s(
            grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}")),
        );
        let want = f32s(&g[&format!("grad.{name}")]);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let max = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{name}: rel {:.3e}", max / scale.max(1e-12));
        worst = worst.max(max / scale.max(1e-12));
    }
    assert!(worst <= 1e-4, "worst relative gradient error {worst}");
    if worst > 0.0 {}
}

#[test]
fn dense_checkpoint_quantised_at_load_matches_bitsandbytes_codes() {
    let dense = llama(
        "tiny_llama_bf16",
        DType::BF16,
        Some(QuantizeSpec::nf4_decoder()),
    );
    let pre = llama("tiny_llama_bnb4", DType::BF16, None);
    let mut checked = 0;
    for ((pa, la), (pb, lb)) in dense.lora_layers().iter().zip(pre.lora_layers().iter()) {
        assert_eq!(pa, pb);
        let (QWeight::Nf4(a), QWeight::Nf4(b)) = (la.base.weight(), lb.base.weight()) else {
            panic!("{pa} is not quantised");
        };
        assert_eq!(a.codes, b.codes, "{pa}: NF4 codes differ from bitsandbytes");
        assert_eq!(a.dtype, QuantDtype::Bf16);
        checked += 1;
    }
    assert_eq!(checked, 14);
    // Embeddings, norms and lm_head stay dense.
    assert!(matches!(dense.lm_head.weight(), QWeight::Dense(_)));
}

#[test]
fn adapter_save_load_round_trip_is_exact() {
    let mut model = llama("tiny_llama_bnb4", DType::F32, None);
    let src = dir().join("tiny_llama_qlora_adapter");
    let cfg = lora::load_adapter(&mut model, &src).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("adapter");
    lora::save_adapter(&model, &cfg, &out).unwrap();
    let a = candle_core::safetensors::load(src.join(lora::ADAPTER_WEIGHTS), &Device::Cpu).unwrap();
    let b = candle_core::safetensors::load(out.join(lora::ADAPTER_WEIGHTS), &Device::Cpu).unwrap();
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        assert_eq!(bits_equal(&f32s(t), &f32s(&b[k])), 0, "{k}");
    }
    // Every key of PEFT's config survives (unknown ones included).
    let orig: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join(lora::ADAPTER_CONFIG)).unwrap())
            .unwrap();
    let back: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(lora::ADAPTER_CONFIG)).unwrap())
            .unwrap();
    for (k, v) in orig.as_object().unwrap() {
        assert_eq!(back.get(k), Some(v), "{k}");
    }
    // The saved file carries PEFT's metadata.
    let bytes = std::fs::read(out.join(lora::ADAPTER_WEIGHTS)).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(
        meta.metadata()
            .as_ref()
            .unwrap()
            .get("format")
            .map(String::as_str),
        Some("pt")
    );
}

#[test]
fn merge_matches_peft_and_unmerge_restores_outputs() {
    let gm = load("tiny_llama_qlora_merge_q_proj_l0.safetensors");
    let mut model = llama("tiny_llama_bnb4", DType::F32, None);
    lora::load_adapter(&mut model, &dir().join("tiny_llama_qlora_adapter")).unwrap();
    let q = &model.layers[0].self_attn.q_proj;
    let w = q.base.dense_weight().unwrap();
    assert_eq!(
        bits_equal(&f32s(&w), &f32s(&gm["W_dequant"])),
        0,
        "dequantised q_proj"
    );
    let delta = q.adapter.as_ref().unwrap().delta().unwrap();
    let dmax = f32s(&delta)
        .iter()
        .zip(f32s(&gm["delta"]))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(dmax < 1e-7, "delta differs by {dmax}");
    let merged = f32s(&(w + delta).unwrap());
    let mmax = merged
        .iter()
        .zip(f32s(&gm["merged_f32"]))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(mmax < 1e-7, "merged differs by {mmax}");

    let ids = Tensor::new(&[[3u32, 17, 99, 4, 250, 7]], &Device::Cpu).unwrap();
    let run = |m: &Decoder| {
        let e = m.embed(&ids).unwrap();
        let p = m.positions(1, 0, 6).unwrap();
        f32s(
            &m.forward(&e, &p, None, None, ForwardOptions::default())
                .unwrap()
                .logits,
        )
    };
    let before = run(&model);
    assert_eq!(lora::merge(&mut model).unwrap(), 14);
    let after_merge = run(&model);
    assert_eq!(lora::unmerge(&mut model).unwrap(), 14);
    let after_unmerge = run(&model);
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let scale = before.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!(
        "merge: max |diff| {:.3e}, unmerge: {:.3e} (logit scale {scale:.3})",
        diff(&before, &after_merge),
        diff(&before, &after_unmerge)
    );
    // Requantising after adding the update costs about what quantising the bf16 base did.
    let dense = llama("tiny_llama_bf16", DType::F32, None);
    let quant_error = diff(
        &run(&dense),
        &run(&llama("tiny_llama_bnb4", DType::F32, None)),
    );
    eprintln!("NF4 base error {quant_error:.3e}");
    assert!(diff(&before, &after_merge) < 2.0 * quant_error);
    assert!(diff(&before, &after_unmerge) < 2.0 * quant_error);
}

#[test]
fn quantised_checkpoint_matches_transformers_layout_and_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("bnb4");
    let n = hf::quantize_checkpoint(
        &dir().join("tiny_llama_bf16"),
        &dst,
        &QuantizeSpec::nf4_decoder(),
        1,
    )
    .unwrap();
    assert_eq!(n, 14);
    let ours = candle_core::safetensors::load(dst.join("model.safetensors"), &Device::Cpu).unwrap();
    let theirs = load("tiny_llama_bnb4/model.safetensors");
    let mut a: Vec<&String> = ours.keys().collect();
    let mut b: Vec<&String> = theirs.keys().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "same tensor names as transformers' save_pretrained");
    let mut compared = 0;
    for (k, t) in &theirs {
        let o = &ours[k];
        assert_eq!((o.dims(), o.dtype()), (t.dims(), t.dtype()), "{k}");
        let same = match t.dtype() {
            DType::U8 => u8s(o) == u8s(t),
            _ => bits_equal(&f32s(o), &f32s(t)) == 0,
        };
        assert!(same, "{k} differs from transformers' file");
        compared += 1;
    }
    assert_eq!(compared, theirs.len());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dst.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["quantization_config"]["bnb_4bit_quant_type"], "nf4");
    assert_eq!(
        cfg["quantization_config"]["bnb_4bit_use_double_quant"],
        true
    );
    // It loads back through the pre-quantised path.
    let w = Weights::from_dir(&dst, DType::F32, &Device::Cpu).unwrap();
    let m = Decoder::new(&llama_config(), &w.pp("model"), &w).unwrap();
    assert!(matches!(
        m.layers[1].self_attn.v_proj.base.weight(),
        QWeight::Nf4(_)
    ));
}
