//! The tiny fixture model, tokenizer and encoder shared by the run tests (via `#[path]`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::rc::Rc;

use candle_core::{DType, Device};
use deepsynth::data::{ImageMode, SpecialIds, TextCodec, Tokenizer};
use deepsynth::lora::{self, LoraConfig};
use deepsynth::model::{Config, DeepseekOcr};
use deepsynth::render::{Preset, Renderer};
use deepsynth::rng::Rng;
use deepsynth::track::RunTracker;
use deepsynth::train::{
    run, Example, ExampleEncoder, RunConfig, RunOutcome, TrainConfig, TrainError,
};
use deepsynth::weights::{QuantizeSpec, Weights};

/// The fixtures folder (under `$DEEPSYNTH_REPO` when set, as in the GPU check).
pub fn root() -> PathBuf {
    std::env::var_os("DEEPSYNTH_REPO")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/fixtures")
}

/// The fixture model with `cfg`'s sizes, an NF4 decoder and a LoRA r=4 adapter (seed 5).
pub fn model_with(cfg: &Config) -> DeepseekOcr {
    model_on(cfg, &Device::Cpu)
}

/// [`model_with`] loaded on `device`.
pub fn model_on(cfg: &Config, device: &Device) -> DeepseekOcr {
    let w = Weights::from_dir(&root().join("deepseek-ocr-tiny"), DType::F32, device)
        .unwrap()
        .with_quantize(Some(QuantizeSpec::nf4_decoder()));
    let mut m = DeepseekOcr::new(cfg, &w).unwrap();
    lora::apply_lora(&mut m, &LoraConfig::new(4, 8.0), &mut Rng::new(5)).unwrap();
    m
}

/// [`model_with`] the fixture's own configuration.
pub fn model() -> DeepseekOcr {
    model_with(&Config::tiny())
}

/// Tiny pages (512 px, 10 px font) read in a 256 px view, the character tokenizer, prompt
/// `<image>\nSum:`.
pub fn encoder_with(renderer: Renderer) -> ExampleEncoder {
    encoder_on(renderer, &Device::Cpu)
}

/// [`encoder_with`] making its batches on `device`.
pub fn encoder_on(renderer: Renderer, device: &Device) -> ExampleEncoder {
    let codec: Rc<dyn TextCodec> =
        Rc::new(Tokenizer::from_file(root().join("tiny-char-tokenizer/tokenizer.json")).unwrap());
    ExampleEncoder::new(
        renderer,
        ImageMode::plain(256),
        codec,
        "<image>\nSum:",
        SpecialIds {
            bos: 0,
            eos: 1,
            image: 500,
        },
        device,
    )
}

/// [`encoder_with`] the Tiny preset.
pub fn encoder() -> ExampleEncoder {
    encoder_with(Renderer::from_preset(Preset::Tiny).unwrap())
}

pub fn ex(id: &str, text: &str, summary: &str) -> Example {
    Example {
        id: id.into(),
        text: text.into(),
        summary: summary.into(),
    }
}

/// Four short training documents and one held-out one.
pub fn examples() -> (Vec<Example>, Vec<Example>) {
    (
        vec![
            ex(
                "a",
                "The council met on Monday and approved the new park.",
                "Park approved.",
            ),
            ex(
                "b",
                "Heavy rain closed two roads in the north of the city.",
                "Rain closes roads.",
            ),
            ex(
                "c",
                "The museum opens a new wing for modern art next week.",
                "Museum expands.",
            ),
            ex(
                "d",
                "Local team wins the cup after a late goal in the final.",
                "Team wins cup.",
            ),
        ],
        vec![ex(
            "e",
            "The library will stay open late during exam season.",
            "Library hours.",
        )],
    )
}

/// A document of `words` words of synthetic prose.
pub fn long_document(words: usize) -> String {
    const W: [&str; 12] = [
        "council", "budget", "river", "school", "report", "market", "bridge", "season", "local",
        "museum", "weather", "library",
    ];
    (0..words)
        .map(|i| W[(i * 7 + i / 12) % W.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run settings of the tiny runs: `steps` optimiser steps over `epochs`, batch 2, learning
/// rate 5e-3 (seed 9), evaluation every 2 steps with 6-token greedy summaries.
pub fn run_config(steps: u64, epochs: usize) -> RunConfig {
    let mut t = TrainConfig::new(5e-3, steps);
    t.seed = 9;
    let mut c = RunConfig::new(t);
    c.batch_size = 2;
    c.epochs = epochs;
    c.eval_every = 2;
    c.generation.max_new_tokens = 6;
    c
}

/// One run into `out` with a fresh tracker; the outcome and the log lines.
#[allow(clippy::too_many_arguments)]
pub fn try_run(
    m: &mut DeepseekOcr,
    enc: &ExampleEncoder,
    train: &[Example],
    held: &[Example],
    cfg: &RunConfig,
    lora: &LoraConfig,
    out: &Path,
    resume: Option<&Path>,
) -> (Result<RunOutcome, TrainError>, Vec<String>) {
    let mut tracker = RunTracker::open(out).unwrap();
    let mut lines = Vec::new();
    let r = run(
        m,
        lora,
        enc,
        train,
        held,
        cfg,
        out,
        &mut tracker,
        resume,
        &mut |l| lines.push(l.to_string()),
    );
    (r, lines)
}
