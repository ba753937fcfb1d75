//! Training the vision tower (SAM and CLIP): with their weights as variables the encoder takes
//! its differentiable path, which reproduces the PyTorch reference's stages on the tiny fixture,
//! gradients of the loss reach every SAM and CLIP tensor, and they equal central finite
//! differences in f64, for the whole tower at once and for single tensors of each kind.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use deepsynth::model::vision::EncoderTrace;
use deepsynth::model::{Config, DeepseekOcr, ForwardOptions, ImageInput};
use deepsynth::train::pretrain::VISION_PREFIXES;
use deepsynth::weights::Weights;

#[path = "common/fd.rs"]
mod fd;
use fd::{direction, max_abs_diff_f64, scalar};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deepseek-ocr-tiny")
}

fn goldens() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture().join("goldens.safetensors"), &Device::Cpu).unwrap()
}

/// The fixture model with SAM and CLIP as variables.
fn trainable(dtype: DType) -> (DeepseekOcr, Vec<(String, Var)>) {
    let base = Weights::from_dir(&fixture(), dtype, &Device::Cpu).unwrap();
    let (w, set) = base.with_trainable(&VISION_PREFIXES);
    let cfg = Config::from_file(fixture().join("config.json")).unwrap();
    let model = DeepseekOcr::new(&cfg, &w).unwrap();
    (model, set.vars())
}

/// The fixture's loss: its page encoded, merged with its prompt, scored on its labels.
fn loss(model: &DeepseekOcr, g: &HashMap<String, Tensor>) -> Tensor {
    let img = ImageInput {
        global: g["pixel_values_global"].i(0).unwrap(),
        tiles: None,
    };
    let feats = model.encode_images_t(&[vec![img]], true).unwrap();
    let ids = g["full_input_ids"].to_dtype(DType::U32).unwrap();
    let embeds = model
        .merge_embeddings(&ids, &g["full_images_seq_mask"], &feats)
        .unwrap();
    let labels = vec![g["labels"].i(0).unwrap().to_vec1::<i64>().unwrap()];
    model
        .forward_embeds(&embeds, None, Some(&labels), ForwardOptions::default())
        .unwrap()
        .loss
        .unwrap()
}

#[test]
fn the_trainable_vision_path_reproduces_the_reference_stages() {
    let g = goldens();
    let (model, vars) = trainable(DType::F32);
    assert!(vars.iter().any(|(k, _)| k.contains("sam_model")));
    assert!(vars.iter().any(|(k, _)| k.contains("vision_model")));
    let t = model
        .vision
        .encode_views_traced(&g["pixel_values_global"])
        .unwrap();
    // The differentiable path is the one taken (the output is part of the graph).
    assert!(t.sam.track_op() && t.projected.track_op());
    let EncoderTrace::Clip { embeddings, output } = &t.encoder else {
        panic!("DeepSeek-OCR runs CLIP after SAM");
    };
    // The frozen path's tolerance (tests/model_tiny.rs), on the differentiable one.
    for (name, got) in [
        ("sam_net2_out_global", &t.sam_net2),
        ("sam_out_global", &t.sam),
        ("clip_embeddings_global", embeddings),
        ("clip_out_global", output),
        ("projector_out_global", &t.projected),
    ] {
        let d = max_abs_diff_f64(got, &g[name]);
        eprintln!("{name}: max |diff| {d:.3e}");
        assert!(d <= 4e-6, "{name}: {d:.3e} over 4e-6");
    }
}

#[test]
fn gradients_reach_every_vision_tensor_and_match_finite_differences() {
    let g = goldens();
    let (model, vars) = trainable(DType::F64);
    let n_sam = vars.iter().filter(|(k, _)| k.contains("sam_model")).count();
    let n_clip = vars.len() - n_sam;
    eprintln!("{n_sam} SAM tensors, {n_clip} CLIP tensors");
    assert!(n_sam > 30 && n_clip > 8, "{n_sam} SAM, {n_clip} CLIP");
    let grads = loss(&model, &g).backward().unwrap();
    let mut analytic = 0.0;
    let dirs: Vec<Tensor> = vars
        .iter()
        .enumerate()
        .map(|(i, (_, v))| direction(v.dims(), 101 + i as u64))
        .collect();
    let mut single = vec![];
    for ((k, v), d) in vars.iter().zip(&dirs) {
        let gk = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {k}"));
        let norm = scalar(&gk.sqr().unwrap().sum_all().unwrap());
        assert!(norm > 0.0 && norm.is_finite(), "{k}: |grad|^2 = {norm}");
        let a = scalar(&(gk * d).unwrap().sum_all().unwrap());
        analytic += a;
        single.push((k.clone(), a));
    }
    // Central differences: w +- h D for every tensor at once, then for single tensors of
    // each kind (patch embedding, absolute and relative positions, a windowed and a global
    // block's attention, the neck's LayerNorm2d, the compressor, CLIP's class token, fused
    // qkv and MLP).
    // h = 1e-5 leaves a truncation error of 1.4e-6 on the whole-tower direction (measured:
    // 1e-3, 1e-4, 1e-6 give 3.07595, 3.10578, 3.1059275 against 3.1059275 analytic).
    let h = 1e-6;
    let originals: Vec<Tensor> = vars
        .iter()
        .map(|(_, v)| v.as_tensor().copy().unwrap())
        .collect();
    let shifted = |which: &dyn Fn(usize) -> bool, sign: f64| {
        for (i, (_, v)) in vars.iter().enumerate() {
            let w = if which(i) {
                (&originals[i] + (&dirs[i] * (sign * h)).unwrap()).unwrap()
            } else {
                originals[i].clone()
            };
            v.set(&w).unwrap();
        }
        scalar(&loss(&model, &g))
    };
    let numeric_for =
        |which: &dyn Fn(usize) -> bool| (shifted(which, 1.0) - shifted(which, -1.0)) / (2.0 * h);
    let all = numeric_for(&|_| true);
    eprintln!("whole tower: analytic {analytic:.10}, numeric {all:.10}");
    assert!(
        (analytic - all).abs() < 1e-7 * (1.0 + all.abs()),
        "whole tower: analytic {analytic} vs numeric {all}"
    );
    let picks = [
        "sam_model.patch_embed.proj.weight",
        "sam_model.pos_embed",
        "sam_model.blocks.0.attn.rel_pos_h",
        "sam_model.blocks.0.attn.qkv.weight",
        "sam_model.blocks.1.attn.rel_pos_w",
        "sam_model.blocks.1.mlp.lin1.weight",
        "sam_model.neck.1.weight",
        "sam_model.net_3.weight",
        "vision_model.embeddings.class_embedding",
        "vision_model.pre_layrnorm.bias",
        "vision_model.transformer.layers.0.self_attn.qkv_proj.weight",
        "vision_model.transformer.layers.0.mlp.fc2.weight",
    ];
    for pick in picks {
        let i = vars
            .iter()
            .position(|(k, _)| k.ends_with(pick))
            .unwrap_or_else(|| panic!("no trainable tensor {pick}"));
        let numeric = numeric_for(&|j| j == i);
        let a = single[i].1;
        eprintln!("{pick}: analytic {a:.10}, numeric {numeric:.10}");
        assert!(
            (a - numeric).abs() < 1e-7 * (1.0 + numeric.abs()),
            "{pick}: analytic {a} vs numeric {numeric}"
        );
    }
}

/// A page at twice the native size: the absolute position tables of SAM and CLIP and the
/// relative tables of SAM's global blocks are resized, and the trained ones still get their
/// gradients (through the resampling's matrix), equal to finite differences; the values equal
/// the frozen model's direct resampling.
#[test]
fn resized_position_tables_get_their_gradients() {
    let page = goldens()["pixel_values_global"]
        .upsample_nearest2d(512, 512)
        .unwrap()
        .i(0)
        .unwrap();
    let (model, vars) = trainable(DType::F64);
    let frozen = DeepseekOcr::from_dir(fixture(), DType::F64, &Device::Cpu).unwrap();
    let feats = |m: &DeepseekOcr| {
        let img = ImageInput {
            global: page.clone(),
            tiles: None,
        };
        m.encode_images_t(&[vec![img]], true).unwrap()[0]
            .clone()
            .unwrap()
    };
    let d = max_abs_diff_f64(&feats(&model), &feats(&frozen));
    eprintln!("512 px: trainable vs frozen features, max |diff| {d:.3e}");
    // The frozen model resamples in f32 (PyTorch's float kernels); the matrix form multiplies
    // f32 weights into the f64 table: measured 4.8e-8.
    assert!(d < 1e-6, "{d:e}");
    // The fixture's prompt has 21 image positions (256 px); at 512 px there are 73, so score
    // the page's features directly: a fixed random readout of them.
    let readout = direction(feats(&frozen).dims(), 5);
    let objective = |m: &DeepseekOcr| (feats(m) * &readout).unwrap().sum_all().unwrap();
    let grads = objective(&model).backward().unwrap();
    let h = 1e-6;
    for pick in [
        "sam_model.pos_embed",
        "sam_model.blocks.1.attn.rel_pos_h",
        "sam_model.blocks.3.attn.rel_pos_w",
        "vision_model.embeddings.position_embedding.weight",
    ] {
        let (_, v) = vars
            .iter()
            .find(|(k, _)| k.ends_with(pick))
            .unwrap_or_else(|| panic!("no trainable tensor {pick}"));
        let gk = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {pick}"));
        let dir = direction(v.dims(), 17);
        let analytic = scalar(&(gk * &dir).unwrap().sum_all().unwrap());
        let original = v.as_tensor().copy().unwrap();
        let at = |sign: f64| {
            v.set(&(&original + (&dir * (sign * h)).unwrap()).unwrap())
                .unwrap();
            scalar(&objective(&model))
        };
        let numeric = (at(1.0) - at(-1.0)) / (2.0 * h);
        v.set(&original).unwrap();
        eprintln!("{pick} at 512 px: analytic {analytic:.10}, numeric {numeric:.10}");
        assert!(analytic != 0.0, "{pick}: zero gradient");
        assert!(
            (analytic - numeric).abs() < 1e-6 * (1.0 + numeric.abs()),
            "{pick}: analytic {analytic} vs numeric {numeric}"
        );
    }
}
