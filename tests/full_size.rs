//! The full-size configuration (3.34B parameters) from random weights in the real checkpoint's
//! names and shapes, generated here (no download): it loads in f32 and bf16 and one forward pass
//! on a Base page gives finite logits of the right shape. Needs ~14 GB of RAM and ~7 GB of disk,
//! so it is ignored by default: `cargo test --release --test full_size -- --ignored`.
//! (`cargo bench --bench ocr_forward` times the same and reports peak memory.)

use candle_core::{DType, Device, Tensor};
use deepsynth::model::synthetic::write_random_checkpoint;
use deepsynth::model::{Config, DeepseekOcr, ForwardOptions, ImageInput};

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
        let mut ids = vec![0u32];
        ids.extend(std::iter::repeat_n(128815u32, 273));
        ids.extend([10, 11, 12]);
        let mut mask = vec![0u8];
        mask.extend(std::iter::repeat_n(1u8, 273));
        mask.extend([0u8; 3]);
        let it = Tensor::from_slice(&ids, (1, ids.len()), &Device::Cpu).unwrap();
        let mt = Tensor::from_slice(&mask, (1, mask.len()), &Device::Cpu).unwrap();
        let e = m.merge_embeddings(&it, &mt, &feats).unwrap();
        let out = m
            .forward_embeds(
                &e,
                None,
                None,
                ForwardOptions {
                    last_only: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(out.decoder.logits.dims(), &[1, 1, 129280]);
        let v: Vec<f32> = out.decoder.logits.flatten_all().unwrap().to_vec1().unwrap();
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
