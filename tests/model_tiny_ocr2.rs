//! Parity of the DeepSeek-OCR 2 port with transformers 5.24.0's native `deepseek_ocr2` on the
//! tiny fixture (`tests/fixtures/deepseek-ocr2-tiny`, see its README and SPEC): every stage
//! within atol 1e-4 + rtol 1e-4 (SAM on tiles and global view with the interpolated position
//! table, Qwen2 encoder, projector, image features, decoder hidden states, logits), the loss
//! within 1e-5, MoE expert sets and the 16 greedy tokens (with and without KV cache) exactly.

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor};
use deepsynth::data::{prepare_image, ImageMode};
use deepsynth::model::vision::EncoderTrace;
use deepsynth::model::{
    Architecture, Batch, Config, DeepseekOcr, ForwardOptions, KvCache, Qwen2EncoderConfig,
    ViewTrace,
};
use deepsynth::weights::Weights;

#[path = "common/ocr2_fixture.rs"]
mod ocr2_fixture;
use ocr2_fixture::{max_abs_diff, ocr2_fixture, ocr2_goldens, ocr2_image};

const ATOL: f64 = 1e-4;
const RTOL: f64 = 1e-4;

fn model() -> DeepseekOcr {
    model_in(DType::F32)
}

fn model_in(dtype: DType) -> DeepseekOcr {
    DeepseekOcr::from_dir(ocr2_fixture(), dtype, &Device::Cpu).unwrap()
}

/// Asserts `|got - want| <= atol + rtol |want|` everywhere; returns max |got - want|.
fn assert_close(name: &str, got: &Tensor, want: &Tensor) -> f64 {
    let got = got.to_dtype(DType::F64).unwrap();
    let want = want.to_dtype(DType::F64).unwrap();
    assert_eq!(got.dims(), want.dims(), "{name}: shape");
    let diff = (&got - &want).unwrap().abs().unwrap();
    let tol = (want.abs().unwrap() * RTOL)
        .unwrap()
        .affine(1.0, ATOL)
        .unwrap();
    let excess: f64 = (diff.clone() - tol)
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    let max_diff: f64 = diff.max_all().unwrap().to_scalar().unwrap();
    eprintln!("{name}: max |diff| {max_diff:.3e}");
    assert!(
        excess <= 0.0,
        "{name}: max |diff| {max_diff:.3e} over tolerance"
    );
    max_diff
}

#[test]
fn config_is_read_as_deepseek_ocr2_with_full_size_defaults() {
    let c = Config::from_file(ocr2_fixture().join("config.json")).unwrap();
    let Architecture::Ocr2(q) = c.vision_config.architecture().unwrap() else {
        panic!("the fixture is DeepSeek-OCR 2");
    };
    assert_eq!((q.dim, q.layers, q.heads, q.kv_heads), (32, 2, 4, 2));
    assert_eq!((q.queries_global, q.queries_tile), (256, 144));
    assert_eq!(c.vision_config.sam_output_channels(), 32);
    // The real config carries only `dim`; the rest defaults to deepencoderv2.py's constants.
    let q: Qwen2EncoderConfig = serde_json::from_str(r#"{"dim": 896}"#).unwrap();
    assert_eq!(
        (q.layers, q.heads, q.kv_heads, q.intermediate_size),
        (24, 14, 2, 4864)
    );
    assert_eq!((q.rope_theta, q.rms_norm_eps), (1e6, 1e-6));
    assert_eq!(
        (q.queries_global, q.queries_tile, q.head_dim()),
        (256, 144, 64)
    );
}

/// `source.png` through the OCR 2 crop mode at the fixture's sizes (96 tiles, 128 global view,
/// 2..6 tiles, tiling over 96 px): the reference's pixels bit for bit. (The mode's position
/// count assumes 16-px patches; the tiny model's are 2 px, so it is checked in the unit tests.)
#[test]
fn preprocessing_reproduces_the_reference_pixels() {
    let g = ocr2_goldens();
    let img = image::open(ocr2_fixture().join("source.png"))
        .unwrap()
        .to_rgb8();
    let p = prepare_image(&img, &ImageMode::ocr2(128, 96), &Device::Cpu).unwrap();
    let grid: Vec<i64> = g["tile_grid_cols_rows"].to_vec1().unwrap();
    assert_eq!(p.grid, (grid[0] as usize, grid[1] as usize));
    assert_eq!(
        max_abs_diff(&p.global, &g["pixel_values_global"].i(0).unwrap()),
        0.0
    );
    let (tiles, tile_grid) = p.tiles.unwrap();
    assert_eq!(tile_grid, p.grid);
    assert_eq!(max_abs_diff(&tiles, &g["pixel_values_local"]), 0.0);
}

/// The config written back reads the same and names the OCR 2 architecture as the real file;
/// the synthetic checkpoint layout is exactly the fixture's (names and shapes, i.e. the real
/// checkpoint's names).
#[test]
fn config_round_trips_and_synthetic_specs_match_the_checkpoint() {
    let c = Config::from_file(ocr2_fixture().join("config.json")).unwrap();
    let json = c.to_json_string();
    assert_eq!(Config::from_json_str(&json).unwrap(), c);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["architectures"][0], "DeepseekOCR2ForCausalLM");
    assert!(v.get("auto_map").is_none());
    assert!(v["vision_config"]["width"].get("clip-l-14-224").is_none());
    let mut want: Vec<(String, Vec<usize>)> =
        candle_core::safetensors::load(ocr2_fixture().join("model.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.dims().to_vec()))
            .collect();
    want.sort();
    let mut got = deepsynth::model::synthetic::tensor_specs(&c);
    got.sort();
    assert_eq!(got, want);
}

fn check_view(g: &HashMap<String, Tensor>, view: &str, t: &ViewTrace) {
    assert_close(
        &format!("sam_net2_out_{view}"),
        &t.sam_net2,
        &g[&format!("sam_net2_out_{view}")],
    );
    assert_close(
        &format!("sam_out_{view}"),
        &t.sam,
        &g[&format!("sam_out_{view}")],
    );
    let EncoderTrace::Qwen2(e) = &t.encoder else {
        panic!("DeepSeek-OCR 2 runs the Qwen2 encoder after SAM");
    };
    assert_close(
        &format!("encoder_layer0_out_{view}"),
        &e.layer0,
        &g[&format!("encoder_layer0_out_{view}")],
    );
    assert_close(
        &format!("encoder_out_{view}"),
        &e.output,
        &g[&format!("encoder_out_{view}")],
    );
    assert_close(
        &format!("projector_out_{view}"),
        &t.projected,
        &g[&format!("projector_out_{view}")],
    );
}

#[test]
fn vision_stages_match_the_reference() {
    let g = ocr2_goldens();
    let m = model();
    let pos = m.vision.sam().pos_for(48).unwrap();
    assert_close("sam_pos_embed_local", &pos, &g["sam_pos_embed_local"]);
    let global = m
        .vision
        .encode_views_traced(&g["pixel_values_global"])
        .unwrap();
    check_view(&g, "global", &global);
    let local = m
        .vision
        .encode_views_traced(&g["pixel_values_local"])
        .unwrap();
    assert_close(
        "sam_neck_local",
        &local.sam_neck.i(..1).unwrap(),
        &g["sam_neck_local"],
    );
    check_view(&g, "local", &local);
}

/// Tiles' query outputs in tile order, the global view's, then `view_seperator`: the rows the
/// reference scattered into the image slots of `decoder_hidden_states[0]`.
#[test]
fn image_features_are_tiles_then_global_then_separator() {
    let g = ocr2_goldens();
    let m = model();
    let feats = m.vision.encode_image(&ocr2_image(&g)).unwrap();
    assert_eq!(feats.dims(), &[256 + 2 * 144 + 1, 32]);
    let mask: Vec<u8> = g["full_images_seq_mask"].i(0).unwrap().to_vec1().unwrap();
    let rows: Vec<u32> = (0..mask.len() as u32)
        .filter(|&i| mask[i as usize] != 0)
        .collect();
    let idx = Tensor::new(rows.as_slice(), &Device::Cpu).unwrap();
    let want = g["decoder_hidden_states"]
        .i(0)
        .unwrap()
        .index_select(&idx, 0)
        .unwrap();
    assert_close("image_features", &feats, &want);
}

fn full_batch(g: &HashMap<String, Tensor>) -> Batch {
    let labels: Vec<i64> = g["labels"].i(0).unwrap().to_vec1().unwrap();
    Batch {
        input_ids: g["full_input_ids"].to_dtype(DType::U32).unwrap(),
        image_mask: g["full_images_seq_mask"].clone(),
        images: vec![vec![ocr2_image(g)]],
        attention_mask: None,
        labels: Some(vec![labels]),
    }
}

#[test]
fn decoder_matches_hidden_states_logits_loss_and_routing() {
    let g = ocr2_goldens();
    let m = model();
    let out = m
        .forward(
            &full_batch(&g),
            ForwardOptions {
                trace: true,
                ..Default::default()
            },
        )
        .unwrap();
    let hs: Vec<Tensor> = out
        .decoder
        .hidden_states
        .iter()
        .map(|h| h.i(0).unwrap())
        .collect();
    let hs = Tensor::stack(&hs, 0).unwrap();
    // Ours: the input of each of the 3 layers, then norm(last output); the reference also
    // keeps the last layer's output before the norm (row 3).
    let idx = Tensor::new(&[0u32, 1, 2, 4], &Device::Cpu).unwrap();
    let want = g["decoder_hidden_states"].index_select(&idx, 0).unwrap();
    assert_close("decoder_hidden_states", &hs, &want);
    let start = g["logits_text_start"].to_vec1::<i64>().unwrap()[0] as usize;
    let logits = out.decoder.logits.i(0).unwrap();
    let n = logits.dim(0).unwrap() - start;
    assert_close(
        "logits_text",
        &logits.narrow(0, start, n).unwrap(),
        &g["logits_text"],
    );
    let loss: f32 = out.loss.unwrap().to_scalar().unwrap();
    let want: f32 = g["loss"].to_vec1::<f32>().unwrap()[0];
    eprintln!("loss {loss} vs {want}: |diff| {:.3e}", (loss - want).abs());
    assert!((loss - want).abs() <= 1e-5, "loss {loss} vs {want}");
    assert_eq!(out.loss_tokens, 9);
    assert_eq!(out.decoder.routing.len(), 2);
    for (layer, routing) in &out.decoder.routing {
        let idx: Vec<Vec<i64>> = g[&format!("moe_layer{layer}_topk_idx")].to_vec2().unwrap();
        let got: Vec<Vec<i64>> = routing
            .experts
            .iter()
            .map(|r| r.iter().map(|&e| e as i64).collect())
            .collect();
        assert_eq!(got, idx, "layer {layer} experts");
        let flat: Vec<f32> = routing.weights.iter().flatten().copied().collect();
        let w = Tensor::from_vec(flat, (routing.weights.len(), 3), &Device::Cpu).unwrap();
        assert_close(
            &format!("moe_layer{layer}_topk_weight"),
            &w,
            &g[&format!("moe_layer{layer}_topk_weight")],
        );
    }
}

/// The whole model (encoder included) runs in bf16 and f16 with f32 logits and a loss close to
/// the f32 reference's.
#[test]
fn half_precision_runs_and_stays_close() {
    let g = ocr2_goldens();
    let want: f32 = g["loss"].to_vec1::<f32>().unwrap()[0];
    for dtype in [DType::BF16, DType::F16] {
        let out = model_in(dtype)
            .forward(&full_batch(&g), ForwardOptions::default())
            .unwrap();
        let loss: f32 = out.loss.unwrap().to_scalar().unwrap();
        eprintln!("{dtype:?} loss {loss} vs {want}");
        assert!(
            (loss - want).abs() < 0.05,
            "{dtype:?} loss {loss} vs {want}"
        );
        assert_eq!(out.decoder.logits.dtype(), DType::F32);
    }
}

/// 16 greedy steps from the prompt; returns the tokens and each step's logits.
fn greedy(m: &DeepseekOcr, g: &HashMap<String, Tensor>, use_cache: bool) -> (Vec<i64>, Tensor) {
    let ids = g["input_ids"].to_dtype(DType::U32).unwrap();
    let feats = m.encode_images(&[vec![ocr2_image(g)]]).unwrap();
    let mut embeds = m
        .merge_embeddings(&ids, &g["images_seq_mask"], &feats)
        .unwrap();
    let mut cache = KvCache::new(m.config().decoder.num_hidden_layers);
    let mut step_in = embeds.clone();
    let (mut pos, mut out, mut all) = (0usize, Vec::new(), Vec::new());
    for _ in 0..16 {
        let logits = if use_cache {
            let l = step_in.dim(1).unwrap();
            let positions = m.decoder.positions(1, pos, l).unwrap();
            pos += l;
            m.step(&step_in, &positions, None, &mut cache).unwrap()
        } else {
            let o = m
                .forward_embeds(&embeds, None, None, ForwardOptions::default())
                .unwrap();
            let l = o.decoder.logits.dim(1).unwrap();
            o.decoder.logits.narrow(1, l - 1, 1).unwrap()
        };
        let logits = logits.flatten_all().unwrap();
        let next: u32 = logits.argmax(0).unwrap().to_scalar().unwrap();
        all.push(logits);
        out.push(next as i64);
        let tok = Tensor::new(&[[next]], &Device::Cpu).unwrap();
        step_in = m.decoder.embed(&tok).unwrap();
        embeds = Tensor::cat(&[&embeds, &step_in], 1).unwrap();
    }
    (out, Tensor::stack(&all, 0).unwrap())
}

#[test]
fn greedy_tokens_match_with_and_without_cache() {
    let g = ocr2_goldens();
    let m = model();
    let (ids, logits) = greedy(&m, &g, true);
    assert_eq!(ids, g["generated_ids"].to_vec1::<i64>().unwrap(), "cached");
    assert_close("generate_logits", &logits, &g["generate_logits"]);
    let (ids, logits) = greedy(&m, &g, false);
    assert_eq!(
        ids,
        g["generated_ids_no_cache"].to_vec1::<i64>().unwrap(),
        "without cache"
    );
    assert_close(
        "generate_logits_no_cache",
        &logits,
        &g["generate_logits_no_cache"],
    );
}

/// A checkpoint without the encoder's queries fails by naming the tensor.
#[test]
fn missing_encoder_tensor_is_named() {
    let config = Config::from_file(ocr2_fixture().join("config.json")).unwrap();
    let mut tensors =
        candle_core::safetensors::load(ocr2_fixture().join("model.safetensors"), &Device::Cpu)
            .unwrap();
    tensors.remove("model.qwen2_model.query_768.weight");
    let w = Weights::from_tensors(tensors, DType::F32, &Device::Cpu);
    let err = DeepseekOcr::new(&config, &w).err().unwrap().to_string();
    assert!(err.contains("model.qwen2_model.query_768.weight"), "{err}");
}
