//! The full-size configuration (3.34B parameters) from random weights in the real checkpoint's
//! names and shapes, generated here (no download): it loads in f32 and bf16 and one forward pass
//! on a Base page gives finite logits of the right shape. Needs ~14 GB of RAM and ~7 GB of disk,
//! so it is ignored by default: `cargo test --release --test full_size -- --ignored`.
//! (`cargo bench --bench ocr_forward` times the same and reports peak memory.)

use candle_core::{DType, Device, Tensor};
use deepsynth::model::synthetic::write_random_checkpoint;
use deepsynth::model::{Config, DeepseekOcr, ImageInput};

#[path = "common/page_logits.rs"]
mod page_logits;
use page_logits::last_logits_after_page;

#[test]
#[ignore = "needs ~14 GB of RAM; run with --ignored"]
fn full_size_random_checkpoint_loads_and_runs_in_f32_and_bf16() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config::deepseek_ocr();
    let params = write_random_checkpoint(&cfg, tmp.path(), DType::BF16, 3, 1 << 30).unwrap();
    assert_eq!(params, 3_336_106_240);
    let pixels = Tensor::zeros((3, 1024, 1024), DType::F32, &Device::Cpu).unwrap();
    for dtype in [DType::BF16, DType::F32] {
        let m = DeepseekOcr::from_dir(tmp.path(), dtype, &Device::Cpu).unwrap();
        let feats = m
            .encode_images(&[vec![ImageInput {
                global: pixels.clone(),
                tiles: None,
            }]])
            .unwrap();
        assert_eq!(feats[0].as_ref().unwrap().dims(), &[273, 1280]);
        let logits = last_logits_after_page(&m, &feats, 273);
        assert_eq!(logits.dims(), &[1, 1, 129280]);
        let v: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{dtype:?}: non-finite logits"
        );
        eprintln!(
            "{dtype:?}: logits finite, max |logit| {}",
            v.iter().fold(0f32, |a, x| a.max(x.abs()))
        );
    }
}
