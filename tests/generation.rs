//! Generation against references: transformers 5.23 `generate` on the tiny Llama fixture
//! (greedy and beam search, every early-stopping mode, length penalties, processors; goldens
//! from `tests/fixtures/generation/make_goldens.py`), exhaustive search on a tiny-vocabulary
//! model, the DeepSeek-OCR fixture's 16 greedy tokens, seeded sampling, batching and streaming.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use deepsynth::infer::{generate, FinishReason, GenerationConfig, LanguageModel, PromptInput};
use deepsynth::model::{Decoder, DecoderConfig, DeepseekOcr, ForwardOptions, ImageInput};
use deepsynth::rng::Rng;
use deepsynth::weights::Weights;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny_llama() -> Decoder {
    let dir = root().join("qlora/tiny_llama_bf16");
    let cfg: DecoderConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let w = Weights::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    Decoder::new(&cfg, &w.pp("model"), &w).unwrap()
}

fn config_from_case(case: &serde_json::Value) -> GenerationConfig {
    let mut obj = serde_json::Map::new();
    for key in [
        "num_beams",
        "length_penalty",
        "early_stopping",
        "no_repeat_ngram_size",
        "repetition_penalty",
        "min_new_tokens",
        "max_new_tokens",
    ] {
        if let Some(v) = case.get(key) {
            obj.insert(key.into(), v.clone());
        }
    }
    obj.insert("eos_token_ids".into(), serde_json::json!([case["eos"]]));
    obj.insert("pad_token_id".into(), serde_json::json!(0));
    serde_json::from_value(serde_json::Value::Object(obj)).unwrap()
}

#[test]
fn matches_transformers_generate_greedy_and_beam_search() {
    let m = tiny_llama();
    let g: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("generation/goldens.json")).unwrap(),
    )
    .unwrap();
    let cases = g["cases"].as_array().unwrap();
    let mut beams = 0;
    for (i, case) in cases.iter().enumerate() {
        let cfg = config_from_case(case);
        let prompt: Vec<u32> = serde_json::from_value(case["prompt"].clone()).unwrap();
        let want: Vec<u32> = serde_json::from_value(case["tokens"].clone()).unwrap();
        let p = PromptInput::from_ids(&m, &prompt).unwrap();
        let out = generate(&m, &[p], &cfg, None).unwrap().pop().unwrap();
        assert_eq!(out.tokens, want, "case {i}: {case}");
        if let Some(score) = case.get("sequence_score").and_then(|s| s.as_f64()) {
            let got = out.score.unwrap();
            assert!(
                (got - score).abs() < 1e-4 * (1.0 + score.abs()),
                "case {i}: score {got} vs {score}"
            );
            beams += 1;
        }
        let eos = case["eos"].as_u64().unwrap() as u32;
        let finish = if want.last() == Some(&eos) {
            FinishReason::Eos
        } else {
            FinishReason::MaxTokens
        };
        assert_eq!(out.finish, finish, "case {i}");
    }
    assert_eq!(cases.len(), 129);
    assert_eq!(beams, 117);
}

/// A random one-layer model with a 5-token vocabulary.
fn tiny_vocab_model() -> Decoder {
    let cfg: DecoderConfig = serde_json::from_value(serde_json::json!({
        "vocab_size": 5, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1,
        "num_attention_heads": 2, "max_position_embeddings": 32
    }))
    .unwrap();
    let mut rng = Rng::new(9);
    let mut t = HashMap::new();
    let mut add = |name: &str, shape: &[usize], std: f64, mean: f64| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (mean + std * rng.normal()) as f32).collect();
        t.insert(
            name.to_string(),
            Tensor::from_vec(v, shape, &Device::Cpu).unwrap(),
        );
    };
    add("model.embed_tokens.weight", &[5, 16], 1.0, 0.0);
    for p in ["q_proj", "k_proj", "v_proj", "o_proj"] {
        add(
            &format!("model.layers.0.self_attn.{p}.weight"),
            &[16, 16],
            0.3,
            0.0,
        );
    }
    add("model.layers.0.mlp.gate_proj.weight", &[24, 16], 0.3, 0.0);
    add("model.layers.0.mlp.up_proj.weight", &[24, 16], 0.3, 0.0);
    add("model.layers.0.mlp.down_proj.weight", &[16, 24], 0.3, 0.0);
    add("model.layers.0.input_layernorm.weight", &[16], 0.1, 1.0);
    add(
        "model.layers.0.post_attention_layernorm.weight",
        &[16],
        0.1,
        1.0,
    );
    add("model.norm.weight", &[16], 0.1, 1.0);
    add("lm_head.weight", &[5, 16], 1.0, 0.0);
    let w = Weights::from_tensors(t, DType::F32, &Device::Cpu);
    Decoder::new(&cfg, &w.pp("model"), &w).unwrap()
}

fn sequence_logprob(m: &Decoder, prompt: &[u32], cont: &[u32]) -> f64 {
    let ids: Vec<u32> = prompt.iter().chain(cont).copied().collect();
    let t = Tensor::from_slice(&ids, (1, ids.len()), &Device::Cpu).unwrap();
    let e = m.embed(&t).unwrap();
    let p = m.positions(1, 0, ids.len()).unwrap();
    let logits = m
        .forward(&e, &p, None, None, ForwardOptions::default())
        .unwrap()
        .logits;
    let lp = candle_nn::ops::log_softmax(&logits.i(0).unwrap(), 1).unwrap();
    let lp: Vec<Vec<f32>> = lp.to_vec2().unwrap();
    cont.iter()
        .enumerate()
        .map(|(k, &tok)| lp[prompt.len() - 1 + k][tok as usize] as f64)
        .sum()
}

#[test]
fn wide_beam_search_equals_exhaustive_search() {
    let m = tiny_vocab_model();
    let prompt = [0u32, 3, 1];
    for len in 1..=3usize {
        // Every continuation of `len` tokens.
        let total = 5usize.pow(len as u32);
        let mut best = (f64::NEG_INFINITY, Vec::new());
        for code in 0..total {
            let cont: Vec<u32> = (0..len)
                .map(|k| ((code / 5usize.pow(k as u32)) % 5) as u32)
                .collect();
            let s = sequence_logprob(&m, &prompt, &cont);
            if s > best.0 {
                best = (s, cont);
            }
        }
        // With num_beams >= 5^(len-1) no prefix is ever pruned; no EOS is reachable (id 99), so
        // every finished beam has `len` tokens and length_penalty 0 leaves raw log-probs.
        let cfg: GenerationConfig = serde_json::from_value(serde_json::json!({
            "num_beams": 5usize.pow(len as u32 - 1).max(2), "max_new_tokens": len,
            "length_penalty": 0.0, "early_stopping": "never", "eos_token_ids": [99]
        }))
        .unwrap();
        let out = generate(
            &m,
            &[PromptInput::from_ids(&m, &prompt).unwrap()],
            &cfg,
            None,
        )
        .unwrap()
        .pop()
        .unwrap();
        assert_eq!(out.tokens, best.1, "length {len}");
        assert!(
            (out.score.unwrap() - best.0).abs() < 1e-4,
            "{} vs {}",
            out.score.unwrap(),
            best.0
        );
    }
}

#[test]
fn deepseek_ocr_fixture_greedy_tokens() {
    let dir = root().join("deepseek-ocr-tiny");
    let g = candle_core::safetensors::load(dir.join("goldens.safetensors"), &Device::Cpu).unwrap();
    let m = DeepseekOcr::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let ids = g["input_ids"].to_dtype(DType::U32).unwrap();
    let img = ImageInput {
        global: g["pixel_values_global"].i(0).unwrap(),
        tiles: None,
    };
    let feats = m.encode_images(&[vec![img]]).unwrap();
    let embeds = m
        .merge_embeddings(&ids, &g["images_seq_mask"], &feats)
        .unwrap();
    let want: Vec<i64> = g["generated_ids"].to_vec1().unwrap();
    let want: Vec<u32> = want.iter().map(|&t| t as u32).collect();
    for ngram in [0, 20] {
        let mut cfg = GenerationConfig::greedy();
        cfg.no_repeat_ngram_size = ngram;
        cfg.max_new_tokens = 16;
        let p = PromptInput {
            embeds: embeds.i(0).unwrap(),
            ids: ids.i(0).unwrap().to_vec1().unwrap(),
        };
        let mut streamed = Vec::new();
        let mut cb = |_: usize, t: u32| streamed.push(t);
        let out = generate(&m, &[p], &cfg, Some(&mut cb))
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(out.tokens, want, "no_repeat_ngram_size {ngram}");
        assert_eq!(streamed, want, "streamed tokens");
        assert_eq!(out.finish, FinishReason::MaxTokens);
    }
}

#[test]
fn batched_greedy_equals_one_by_one_and_sampling_is_seeded() {
    let m = tiny_llama();
    let prompts = [
        vec![1u32, 17, 42, 99, 3],
        vec![1, 250],
        vec![1, 200, 5, 5, 5, 5, 77, 31, 8],
    ];
    let inputs: Vec<PromptInput> = prompts
        .iter()
        .map(|p| PromptInput::from_ids(&m, p).unwrap())
        .collect();
    let mut cfg = GenerationConfig::default();
    cfg.max_new_tokens = 12;
    cfg.eos_token_ids = vec![101];
    let batched = generate(&m, &inputs, &cfg, None).unwrap();
    for (i, inp) in inputs.iter().enumerate() {
        let single = generate(&m, std::slice::from_ref(inp), &cfg, None)
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(batched[i].tokens, single.tokens, "prompt {i}");
    }
    let mut s = GenerationConfig::sampling();
    s.max_new_tokens = 12;
    s.seed = 7;
    let a = generate(&m, &inputs, &s, None).unwrap();
    let b = generate(&m, &inputs, &s, None).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.tokens, y.tokens);
    }
    s.seed = 8;
    let c = generate(&m, &inputs, &s, None).unwrap();
    assert!(
        a.iter().zip(&c).any(|(x, y)| x.tokens != y.tokens),
        "another seed changes samples"
    );
}

#[test]
fn bad_settings_and_inputs_are_refused() {
    let m = tiny_llama();
    let p = PromptInput::from_ids(&m, &[1, 2]).unwrap();
    let mut cfg = GenerationConfig::sampling();
    cfg.temperature = -1.0;
    assert!(generate(&m, &[p], &cfg, None).is_err());
    let empty = PromptInput {
        embeds: m.embed_ids(&[1]).unwrap().squeeze(0).unwrap(),
        ids: vec![],
    };
    assert!(generate(&m, &[empty], &GenerationConfig::default(), None).is_err());
}
