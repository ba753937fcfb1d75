//! Training the tiny DeepSeek-OCR's own weights from scratch: gradients reach every trainable
//! tensor (and no vision-tower one is trainable), a few steps of reading fit two pages, and the
//! saved model reloads to the same losses; a truncated save is refused.

use std::path::PathBuf;
use std::rc::Rc;

use candle_core::{DType, Device, Tensor};
use deepsynth::data::{ImageMode, SpecialIds, TextCodec, Tokenizer};
use deepsynth::model::{Config, DeepseekOcr, ForwardOptions};
use deepsynth::render::{Preset, Renderer};
use deepsynth::train::pretrain::{reading_example, PRETRAIN_PREFIXES, VISION_PREFIXES};
use deepsynth::train::{
    collate, held_out_loss, pretrain, save_model, Example, ExampleEncoder, PretrainConfig,
    TrainConfig,
};
use deepsynth::weights::Weights;

#[path = "common/fd.rs"]
mod fd;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn encoder() -> ExampleEncoder {
    let codec: Rc<dyn TextCodec> =
        Rc::new(Tokenizer::from_file(root().join("tiny-char-tokenizer/tokenizer.json")).unwrap());
    ExampleEncoder::new(
        Renderer::from_preset(Preset::Tiny).unwrap(),
        ImageMode::plain(256),
        codec,
        "<image>\nRead:",
        SpecialIds {
            bos: 0,
            eos: 1,
            image: 500,
        },
        &Device::Cpu,
    )
}

fn docs() -> Vec<Example> {
    let ex = |id: &str, text: &str| {
        reading_example(
            &Example {
                id: id.into(),
                text: text.into(),
                summary: String::new(),
            },
            24,
        )
    };
    vec![
        ex(
            "a",
            "Fast parsing of numbers in pure Rust, with no allocation.",
        ),
        ex(
            "b",
            "Colours for terminal output on every platform we know of.",
        ),
    ]
}

fn base() -> Weights {
    Weights::from_dir(&root().join("deepseek-ocr-tiny"), DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn reading_targets_are_cut_at_a_word_boundary() {
    let d = docs();
    assert_eq!(d[0].summary, "Fast parsing of numbers");
    let short = reading_example(&d[0], 1000);
    assert_eq!(short.summary, d[0].text);
}

#[test]
fn gradients_reach_every_trainable_tensor_and_no_vision_tensor_is_trainable() {
    let (w, set) = base().with_trainable(&PRETRAIN_PREFIXES);
    let model = DeepseekOcr::new(&Config::tiny(), &w).unwrap();
    let vars = set.vars();
    assert!(vars
        .iter()
        .all(|(k, _)| !k.contains("sam_model") && !k.contains("vision_model")));
    assert!(vars
        .iter()
        .any(|(k, _)| k == "model.projector.layers.weight"));
    assert!(vars.iter().any(|(k, _)| k == "lm_head.weight"));
    let enc = encoder();
    let mut prompts = vec![];
    let mut pages = vec![];
    for d in docs() {
        let (p, page) = enc.training(&d).unwrap();
        prompts.push(p);
        pages.push(vec![page]);
    }
    let batch = collate(&prompts, pages, 1, &Device::Cpu).unwrap();
    let out = model
        .forward(
            &batch,
            ForwardOptions {
                train: true,
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
    let mut routed_with_grad = 0;
    for (k, v) in &vars {
        let g = grads.get(v.as_tensor());
        if k.contains(".mlp.experts.") {
            // Routed experts only learn from the tokens routed to them.
            routed_with_grad += g.is_some() as usize;
            continue;
        }
        let g = g.unwrap_or_else(|| panic!("no gradient for {k}"));
        let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(norm > 0.0 && norm.is_finite(), "{k}: gradient norm² {norm}");
    }
    assert!(
        routed_with_grad >= 4,
        "{routed_with_grad} routed experts had a gradient"
    );
}

#[test]
fn pretraining_fits_two_pages_and_the_saved_model_reloads_to_the_same_loss() {
    let base = base();
    let (w, set) = base.with_trainable(&PRETRAIN_PREFIXES);
    let model = DeepseekOcr::new(&Config::tiny(), &w).unwrap();
    let enc = encoder();
    let d = docs();
    let before = held_out_loss(&model, &enc, &d, 2).unwrap();
    let mut tc = TrainConfig::new(3e-3, 1);
    tc.adamw.weight_decay = 0.0;
    let mut cfg = PretrainConfig {
        train: tc,
        batch_size: 2,
        epochs: 40,
        log_every: 0,
    };
    cfg.train.total_steps = cfg.steps_for(d.len());
    cfg.train.warmup_steps = 2;
    let out = pretrain(&model, set.vars(), &enc, &d, &d[..1], &cfg, &mut |_| {}).unwrap();
    assert_eq!(out.train_losses.len(), 40);
    assert_eq!(out.held_out_losses.len(), 40);
    assert!(out.held_out_losses[39].1 < out.held_out_losses[0].1);
    let after = held_out_loss(&model, &enc, &d, 2).unwrap();
    assert!(after < 0.3 * before, "loss {before} -> {after}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    let n = save_model(
        &base,
        &set.vars(),
        &Config::tiny(),
        &[("note.txt", b"hi")],
        &dir,
    )
    .unwrap();
    assert_eq!(n, base.keys().len());
    assert_eq!(std::fs::read(dir.join("note.txt")).unwrap(), b"hi");
    let reloaded = DeepseekOcr::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let again = held_out_loss(&reloaded, &enc, &d, 2).unwrap();
    assert_eq!(again, after);
    // Saving again over it replaces it whole; a truncated weights file is refused on load.
    save_model(&base, &set.vars(), &Config::tiny(), &[], &dir).unwrap();
    assert!(!dir.join("note.txt").exists());
    let f = dir.join("model.safetensors");
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let Err(err) = DeepseekOcr::from_dir(&dir, DType::F32, &Device::Cpu) else {
        panic!("a truncated checkpoint loaded");
    };
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

/// `deepsynth pretrain --train-vision`: with SAM and CLIP among the variables every one of
/// their tensors moves and the held-out loss falls (that the optimiser keeps no graph between
/// steps is `train::optim`'s unit test).
#[test]
fn pretraining_with_the_vision_tower_moves_every_vision_tensor() {
    let mut prefixes = PRETRAIN_PREFIXES.to_vec();
    prefixes.extend(VISION_PREFIXES);
    let (w, set) = base().with_trainable(&prefixes);
    let model = DeepseekOcr::new(&Config::tiny(), &w).unwrap();
    let params = set.vars();
    let vision: Vec<usize> = (0..params.len())
        .filter(|&i| VISION_PREFIXES.iter().any(|p| params[i].0.starts_with(p)))
        .collect();
    assert!(vision.len() > 60, "{} vision tensors", vision.len());
    let initial: Vec<Tensor> = params
        .iter()
        .map(|(_, v)| v.as_tensor().copy().unwrap())
        .collect();
    let enc = encoder();
    let d = docs();
    let mut tc = TrainConfig::new(3e-3, 1);
    tc.adamw.weight_decay = 0.0;
    let mut cfg = PretrainConfig {
        train: tc,
        batch_size: 2,
        epochs: 6,
        log_every: 0,
    };
    cfg.train.total_steps = cfg.steps_for(d.len());
    cfg.train.warmup_steps = 1;
    let out = pretrain(&model, params.clone(), &enc, &d, &d, &cfg, &mut |_| {}).unwrap();
    for &i in &vision {
        let (k, v) = &params[i];
        let moved = fd::max_abs_diff_f64(v.as_tensor(), &initial[i]);
        assert!(moved > 0.0, "{k} did not move");
    }
    let (first, last) = (out.held_out_losses[0].1, out.held_out_losses[5].1);
    assert!(last < first, "held-out loss {first} -> {last}");
}
