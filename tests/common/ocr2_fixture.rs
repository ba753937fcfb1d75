//! The DeepSeek-OCR 2 test fixture `tests/fixtures/deepseek-ocr2-tiny` (shared via `#[path]`):
//! the model (dense or with an NF4 decoder), its goldens and its golden batch.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use deepsynth::model::{Batch, Config, DeepseekOcr, ImageInput};
use deepsynth::weights::{QuantizeSpec, Weights};

/// The fixture folder.
pub fn ocr2_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deepseek-ocr2-tiny")
}

/// The fixture's golden tensors.
pub fn ocr2_goldens() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(ocr2_fixture().join("goldens.safetensors"), &Device::Cpu)
        .unwrap()
}

/// The fixture model in f32, its decoder quantised to NF4 at load with `quantize`.
pub fn tiny_ocr2(quantize: bool) -> DeepseekOcr {
    let w = Weights::from_dir(&ocr2_fixture(), DType::F32, &Device::Cpu)
        .unwrap()
        .with_quantize(quantize.then(QuantizeSpec::nf4_decoder));
    let cfg = Config::from_file(ocr2_fixture().join("config.json")).unwrap();
    DeepseekOcr::new(&cfg, &w).unwrap()
}

/// The fixture page's views: the global view and the tiles with their grid.
pub fn ocr2_image(g: &HashMap<String, Tensor>) -> ImageInput {
    let grid: Vec<i64> = g["tile_grid_cols_rows"].to_vec1().unwrap();
    ImageInput {
        global: g["pixel_values_global"].i(0).unwrap(),
        tiles: Some((
            g["pixel_values_local"].clone(),
            (grid[0] as usize, grid[1] as usize),
        )),
    }
}

/// The fixture's golden batch: the page, prompt and target with the fixture's labels.
pub fn ocr2_batch() -> Batch {
    let g = ocr2_goldens();
    Batch {
        input_ids: g["full_input_ids"].to_dtype(DType::U32).unwrap(),
        image_mask: g["full_images_seq_mask"].clone(),
        images: vec![vec![ocr2_image(&g)]],
        attention_mask: None,
        labels: Some(vec![g["labels"].i(0).unwrap().to_vec1().unwrap()]),
    }
}

/// max |a - b| over two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}
