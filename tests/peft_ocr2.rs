//! A DeepSeek-OCR 2 adapter trained by DeepSynth opens in PEFT 0.21.2 on transformers 5.24.0's
//! native `deepseek_ocr2` model and generates the same greedy tokens there as here.
//!
//! `tests/fixtures/deepseek-ocr2-tiny/peft/adapter` is what [`train_adapter`] writes (LoRA r=4
//! on the decoder's attention, dense MLP and shared-expert linears, 12 f32 AdamW steps on the
//! fixture page), `adapter_encoder` the same with the Qwen2 encoder's layers adapted too
//! (`--finetune-vision-layers`); `peft_greedy.py` next to them loads each with
//! `model.load_adapter`, through transformers' own renaming of the real checkpoint's keys, and
//! records PEFT's greedy tokens and loss in `peft_golden.json`.
//!
//! Routed experts are left out: transformers fuses them into 3-D parameters, and PEFT 0.21.2
//! converts per-expert adapters only for the model types in its MoE table, which has no
//! `deepseek_ocr2` (its adapters there come back as unexpected keys). The written config also
//! excludes the vision side, so PEFT does not put adapters on the Qwen2 encoder's `q_proj` ...
//! (before, it did: 14 extra modules).

use std::path::{Path, PathBuf};

use candle_core::DType;
use deepsynth::infer::{generate, GenerationConfig, PromptInput};
use deepsynth::lora::{self, LoraConfig, LoraModel, ModuleSelector};
use deepsynth::model::{DeepseekOcr, ForwardOptions};
use deepsynth::rng::Rng;
use deepsynth::train::{TrainConfig, Trainer};

#[path = "common/ocr2_fixture.rs"]
mod ocr2_fixture;
use ocr2_fixture::{max_abs_diff, ocr2_batch, ocr2_fixture, ocr2_goldens, ocr2_image, tiny_ocr2};

fn peft_dir() -> PathBuf {
    ocr2_fixture().join("peft")
}

/// The committed adapters: name, encoder layers adapted, adapted module count.
const ADAPTERS: [(&str, bool, usize); 2] = [
    ("adapter", false, 3 * 4 + 3 + 2 * 3),
    ("adapter_encoder", true, 3 * 4 + 3 + 2 * 3 + 2 * 7),
];

/// Trains a fixture adapter: f32 base, r=4, alpha 8, no dropout, seed 7, 12 steps at 5e-3,
/// routed experts excluded, the encoder's layers adapted with `encoder`.
fn train_adapter(dir: &Path, encoder: bool) -> Vec<f64> {
    let mut m = tiny_ocr2(false);
    m.set_adapt_encoder(encoder).unwrap();
    let mut cfg = LoraConfig::new(4, 8.0).with_dropout(0.0);
    cfg.exclude_modules = Some(ModuleSelector::Regex(r".*\.experts\.\d+\..*".into()));
    lora::apply_lora(&mut m, &cfg, &mut Rng::new(7)).unwrap();
    let mut t = Trainer::new(&m, TrainConfig::new(5e-3, 12)).unwrap();
    let b = ocr2_batch();
    let losses = (0..12)
        .map(|_| t.step(&m, std::slice::from_ref(&b)).unwrap().loss)
        .collect();
    lora::save_adapter(&m, &cfg, dir).unwrap();
    losses
}

/// Greedy decoding (16 new tokens, EOS stops) from the fixture's prompt and page.
fn greedy(m: &DeepseekOcr) -> Vec<u32> {
    let g = ocr2_goldens();
    let ids = g["input_ids"].to_dtype(DType::U32).unwrap();
    let feats = m.encode_images(&[vec![ocr2_image(&g)]]).unwrap();
    let embeds = m
        .merge_embeddings(&ids, &g["images_seq_mask"], &feats)
        .unwrap();
    let prompt = PromptInput {
        embeds: embeds.squeeze(0).unwrap(),
        ids: ids.flatten_all().unwrap().to_vec1().unwrap(),
    };
    let mut cfg = GenerationConfig::greedy();
    cfg.max_new_tokens = 16;
    cfg.eos_token_ids = vec![1];
    generate(m, &[prompt], &cfg, None).unwrap().remove(0).tokens
}

fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(peft_dir().join("peft_golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Training the adapters again gives the committed ones (set `DEEPSYNTH_REGEN_PEFT_OCR2=1` to
/// rewrite them; then rerun `peft_greedy.py`).
#[test]
fn training_reproduces_the_committed_adapters() {
    for (name, encoder, _) in ADAPTERS {
        let tmp = tempfile::tempdir().unwrap();
        let losses = train_adapter(tmp.path(), encoder);
        eprintln!("{name}: loss {:.4} -> {:.4}", losses[0], losses[11]);
        assert!(losses[11] < losses[0] - 1.0, "{losses:?}");
        if std::env::var_os("DEEPSYNTH_REGEN_PEFT_OCR2").is_some() {
            let out = peft_dir().join(name);
            std::fs::create_dir_all(&out).unwrap();
            for f in ["adapter_model.safetensors", "adapter_config.json"] {
                std::fs::copy(tmp.path().join(f), out.join(f)).unwrap();
            }
        }
        let dev = candle_core::Device::Cpu;
        let ours =
            candle_core::safetensors::load(tmp.path().join("adapter_model.safetensors"), &dev)
                .unwrap();
        let committed = candle_core::safetensors::load(
            peft_dir().join(name).join("adapter_model.safetensors"),
            &dev,
        )
        .unwrap();
        let mut keys: Vec<_> = ours.keys().collect();
        keys.sort();
        let mut committed_keys: Vec<_> = committed.keys().collect();
        committed_keys.sort();
        assert_eq!(keys, committed_keys);
        // f32 AdamW on another CPU may round a matmul differently; 12 steps keep it far below
        // 1e-5 (here: 0).
        let worst = keys
            .iter()
            .map(|k| max_abs_diff(&ours[*k], &committed[*k]))
            .fold(0f32, f32::max);
        eprintln!("{name}: max |retrained - committed| {worst:.3e}");
        assert!(worst <= 1e-5, "{worst}");
    }
}

/// PEFT on transformers' model and DeepSynth read the same adapters into the same tokens, and
/// the adapters matter: the base model's tokens differ.
#[test]
fn peft_generates_our_tokens_with_our_adapters() {
    let golden = golden();
    let base_want: Vec<u32> = serde_json::from_value(golden["base_tokens"].clone()).unwrap();
    assert_eq!(greedy(&tiny_ocr2(false)), base_want, "base model");
    for (name, encoder, modules) in ADAPTERS {
        let peft = &golden["adapters"][name];
        let want: Vec<u32> = serde_json::from_value(peft["tokens"].clone()).unwrap();
        let mut m = tiny_ocr2(false);
        let cfg = lora::load_adapter(&mut m, &peft_dir().join(name)).unwrap();
        assert_eq!(cfg.r, 4);
        assert_eq!(m.adapts_encoder(), encoder);
        // PEFT adapted as many modules as we did, and took every tensor we wrote.
        let adapted = m
            .lora_layers()
            .iter()
            .filter(|(_, l)| l.adapter.is_some())
            .count();
        assert_eq!(adapted, modules, "{name}");
        assert_eq!(
            peft["lora_modules"].as_u64().unwrap() as usize,
            modules,
            "{name}"
        );
        assert_eq!(
            peft["unexpected_keys"].as_array().unwrap().len(),
            0,
            "{name}"
        );
        assert_eq!(
            peft["missing_lora_keys"].as_array().unwrap().len(),
            0,
            "{name}"
        );
        let got = greedy(&m);
        assert_eq!(got, want, "{name}");
        assert_ne!(got, base_want, "{name}");
        // The fixture target's loss under the adapter, PEFT's against ours.
        let loss: f32 = m
            .forward(&ocr2_batch(), ForwardOptions::default())
            .unwrap()
            .loss
            .unwrap()
            .to_scalar()
            .unwrap();
        let peft_loss = peft["loss"].as_f64().unwrap();
        eprintln!("{name}: loss ours {loss:.7}, PEFT {peft_loss:.7}; tokens {got:?}");
        assert!(
            (loss as f64 - peft_loss).abs() <= 1e-5,
            "{name}: {loss} vs {peft_loss}"
        );
    }
}
