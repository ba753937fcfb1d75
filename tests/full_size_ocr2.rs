//! DeepSeek-OCR 2 at full size (`Config::deepseek_ocr2()`, the real `config.json`): the tensor
//! names, count and parameter total of the real checkpoint (its index's 2,707 tensors and name
//! patterns, transformers 5.24.0's parameter count from `count_params.py`), the trainable count
//! at r=16, and, ignored by default (~8 GB of RAM, ~7 GB of disk), a random bf16 checkpoint that
//! loads and runs a crop-mode page: `cargo test --release --test full_size_ocr2 -- --ignored`.

use std::collections::BTreeSet;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use deepsynth::lora::LoraConfig;
use deepsynth::model::synthetic::{tensor_specs, write_random_checkpoint};
use deepsynth::model::{Config, DeepseekOcr, ImageInput};

#[path = "common/ocr2_fixture.rs"]
mod ocr2_fixture;
#[path = "common/page_logits.rs"]
mod page_logits;
use page_logits::last_logits_after_page;

/// A tensor name with every index replaced by `N` (as in `real_index_patterns.json`).
fn pattern(name: &str) -> String {
    name.split('.')
        .map(|p| if p.parse::<u64>().is_ok() { "N" } else { p })
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
fn full_size_tensors_are_the_real_checkpoints() {
    let specs = tensor_specs(&Config::deepseek_ocr2());
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ocr2_fixture::ocr2_fixture().join("real_index_patterns.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(specs.len() as u64, index["n_tensors"].as_u64().unwrap());
    let want: BTreeSet<String> = index["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let got: BTreeSet<String> = specs.iter().map(|(n, _)| pattern(n)).collect();
    assert_eq!(got, want);
    let total: usize = specs.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    // transformers 5.24.0's count of its native model at these sizes (SPEC.md).
    assert_eq!(total, 3_389_119_360);
    let shape = |n: &str| specs.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(shape("model.sam_model.net_3.weight"), [896, 512, 3, 3]);
    assert_eq!(shape("model.qwen2_model.query_1024.weight"), [256, 896]);
    assert_eq!(shape("model.qwen2_model.query_768.weight"), [144, 896]);
    assert_eq!(shape("model.projector.layers.weight"), [1280, 896]);
    assert_eq!(
        shape("model.qwen2_model.model.model.layers.23.self_attn.k_proj.weight"),
        [128, 896]
    );
}

/// r=16 on the default targets adapts the decoder only (the Qwen2 encoder's same-named
/// linears stay frozen): Unsloth's published 77,509,632, as for DeepSeek-OCR.
#[test]
fn trainable_parameters_at_r16_are_the_decoders() {
    let cfg = LoraConfig::new(16, 16.0);
    let mut adapted = 0;
    let trainable: usize = tensor_specs(&Config::deepseek_ocr2())
        .iter()
        .filter_map(|(n, s)| {
            let path = n.strip_suffix(".weight")?;
            let decoder = path.starts_with("model.layers.");
            (s.len() == 2 && decoder && cfg.targets(path).unwrap()).then(|| {
                adapted += 1;
                16 * (s[0] + s[1])
            })
        })
        .sum();
    assert_eq!(trainable, 77_509_632);
    // 12 layers x 4 attention + 3 dense + 11 x (64 + 1) x 3 expert linears.
    assert_eq!(adapted, 48 + 3 + 11 * 65 * 3);
}

#[test]
#[ignore = "needs ~8 GB of RAM and ~7 GB of disk; run with --ignored"]
fn full_size_random_checkpoint_loads_and_reads_a_crop_mode_page_in_bf16() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config::deepseek_ocr2();
    let t = Instant::now();
    let params = write_random_checkpoint(&cfg, tmp.path(), DType::BF16, 3, 1 << 30).unwrap();
    assert_eq!(params, 3_389_119_360);
    eprintln!(
        "wrote {params} parameters in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let m = DeepseekOcr::from_dir(tmp.path(), DType::BF16, &Device::Cpu).unwrap();
    eprintln!("loaded in {:.1} s", t.elapsed().as_secs_f64());
    // The OCR 2 crop mode of a wide page: a 1024 global view and a 2 x 1 grid of 768 tiles.
    let global = Tensor::zeros((3, 1024, 1024), DType::F32, &Device::Cpu).unwrap();
    let tiles = Tensor::zeros((2, 3, 768, 768), DType::F32, &Device::Cpu).unwrap();
    let t = Instant::now();
    let feats = m
        .encode_images(&[vec![ImageInput {
            global,
            tiles: Some((tiles, (2, 1))),
        }]])
        .unwrap();
    // 2 x 144 tile queries + 256 global queries + the separator.
    assert_eq!(feats[0].as_ref().unwrap().dims(), &[545, 1280]);
    eprintln!("encoded in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let logits = last_logits_after_page(&m, &feats, 545);
    eprintln!(
        "decoded 549 positions in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(logits.dims(), &[1, 1, 129280]);
    let v: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| x.is_finite()), "non-finite logits");
}
