//! The DeepSeek-OCR test fixture `tests/fixtures/deepseek-ocr-tiny` (shared via `#[path]`):
//! the model (dense or quantised, with or without a LoRA adapter) and its golden batch.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp};
use deepsynth::lora::{self, LoraConfig};
use deepsynth::model::{Batch, Config, DeepseekOcr, ImageInput};
use deepsynth::rng::Rng;
use deepsynth::weights::{QuantizeSpec, Weights};

/// The fixture folder (under `$DEEPSYNTH_REPO` when set: a test binary run away from the
/// checkout it was built in, as in the GPU check).
pub fn ocr_fixture() -> PathBuf {
    std::env::var_os("DEEPSYNTH_REPO")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/fixtures/deepseek-ocr-tiny")
}

/// The fixture model, its weights quantised by `spec` at load.
pub fn tiny_ocr(spec: Option<QuantizeSpec>) -> DeepseekOcr {
    let w = Weights::from_dir(&ocr_fixture(), DType::F32, &Device::Cpu)
        .unwrap()
        .with_quantize(spec);
    let cfg = Config::from_file(ocr_fixture().join("config.json")).unwrap();
    DeepseekOcr::new(&cfg, &w).unwrap()
}

/// [`tiny_ocr`] with an NF4 decoder and LoRA of rank `r` (alpha 2r) with `dropout` on every
/// linear, B random too (seed 3) so that A gets gradients from the first step.
pub fn nf4_with_random_lora(r: usize, dropout: f32) -> DeepseekOcr {
    let mut m = tiny_ocr(Some(QuantizeSpec::nf4_decoder()));
    let mut cfg = LoraConfig::new(r, 2.0 * r as f64).with_dropout(dropout);
    cfg.init_lora_weights = lora::InitLora::Bool(false);
    lora::apply_lora(&mut m, &cfg, &mut Rng::new(3)).unwrap();
    m
}

/// The fixture's golden batch: one page, the fixture's labels, or every position scored
/// (`labels` = the input ids) with `all_scored`.
pub fn ocr_batch_with(all_scored: bool) -> Batch {
    let g = candle_core::safetensors::load(ocr_fixture().join("goldens.safetensors"), &Device::Cpu)
        .unwrap();
    let ids = g["full_input_ids"].to_dtype(DType::U32).unwrap();
    let labels: Vec<i64> = if all_scored {
        let v: Vec<u32> = ids.flatten_all().unwrap().to_vec1().unwrap();
        v.into_iter().map(i64::from).collect()
    } else {
        g["labels"].i(0).unwrap().to_vec1().unwrap()
    };
    Batch {
        input_ids: ids,
        image_mask: g["full_images_seq_mask"].clone(),
        images: vec![vec![ImageInput {
            global: g["pixel_values_global"].i(0).unwrap(),
            tiles: None,
        }]],
        attention_mask: None,
        labels: Some(vec![labels]),
    }
}

/// [`ocr_batch_with`] the fixture's labels.
pub fn ocr_batch() -> Batch {
    ocr_batch_with(false)
}
