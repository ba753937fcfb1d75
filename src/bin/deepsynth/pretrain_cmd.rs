//! `deepsynth pretrain`: builds the bundled tiny DeepSeek-OCR from nothing: a byte-level BPE
//! tokenizer trained on the corpus, a random tiny model, and decoder training on reading the
//! rendered pages (target: the page's opening text).

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use candle_core::{DType, Device};
use clap::Args;
use deepsynth::data::{train_bpe, ImageMode, SpecialIds, TextCodec};
use deepsynth::infer::GenerationConfig;
use deepsynth::model::synthetic::write_random_checkpoint;
use deepsynth::model::{Config, DeepseekOcr};
use deepsynth::prelude::*;
use deepsynth::train::bundled::load_examples;
use deepsynth::train::pretrain::{reading_example, PRETRAIN_PREFIXES, VISION_PREFIXES};
use deepsynth::train::{
    evaluate, held_out_loss, pretrain, save_model, Example, ExampleEncoder, PretrainConfig,
    TrainConfig,
};
use deepsynth::weights::Weights;

/// Arguments of `deepsynth pretrain`.
#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Training documents (.jsonl, .parquet or .csv with a `text` column).
    #[arg(long, default_value = "data/crates-readme/train.jsonl")]
    corpus: PathBuf,
    /// Held-out documents, for the loss before and after.
    #[arg(long, default_value = "data/crates-readme/test.jsonl")]
    held_out: PathBuf,
    /// Output model folder (config.json, model.safetensors, tokenizer.json, pretrain.json).
    #[arg(long, default_value = "models/deepsynth-ocr-tiny")]
    output_dir: PathBuf,
    /// Tokenizer vocabulary (byte-level BPE trained on the corpus).
    #[arg(long, default_value_t = 2048)]
    vocab_size: usize,
    /// Page view size in pixels (512 = DeepSeek-OCR's Tiny mode, 64 visual tokens).
    #[arg(long, default_value_t = 512)]
    image_size: u32,
    /// Render preset of the pages.
    #[arg(long, default_value = "tiny")]
    render_preset: String,
    /// Characters of page text to read back per example.
    #[arg(long, default_value_t = 200)]
    read_chars: usize,
    /// Prompt of the reading task.
    #[arg(long, default_value = "<image>\nRead:")]
    prompt: String,
    /// Epochs over the corpus.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Examples per micro-batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-3)]
    learning_rate: f64,
    /// Seed (initialisation, data order).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Train the vision tower (SAM and CLIP) too, end to end; without it they stay as
    /// initialised and only the projector and decoder learn.
    #[arg(long)]
    train_vision: bool,
    /// Held-out pages read back greedily at the end, scored by character error rate (0: none).
    #[arg(long, default_value_t = 20)]
    read_pages: usize,
}

pub fn run(args: PretrainArgs) -> deepsynth::Result<ExitCode> {
    let start = Instant::now();
    let train_docs = load_examples(&args.corpus)?;
    let held_docs = load_examples(&args.held_out)?;
    if train_docs.is_empty() {
        eprintln!("error: no documents in {}", args.corpus.display());
        return Ok(ExitCode::from(2));
    }
    let texts: Vec<&str> = train_docs
        .iter()
        .flat_map(|d| [d.text.as_str(), d.summary.as_str()])
        .collect();
    let tok = train_bpe(texts.into_iter(), args.vocab_size)?;
    let tok_json =
        tok.inner()
            .to_string(false)
            .map_err(|e| deepsynth::data::DataError::Invalid {
                what: "tokenizer".into(),
                reason: e.to_string(),
            })?;
    let mut config = Config::tiny();
    config.decoder.vocab_size = tok.vocab_size();
    config.decoder.bos_token_id = Some(0);
    config.decoder.eos_token_id = Some(1);
    config.image_token_id = 2;
    let init = args.output_dir.with_extension("init");
    write_random_checkpoint(&config, &init, DType::F32, args.seed, usize::MAX)?;
    let base = Weights::from_dir(&init, DType::F32, &Device::Cpu)?;
    let mut prefixes = PRETRAIN_PREFIXES.to_vec();
    if args.train_vision {
        prefixes.extend(VISION_PREFIXES);
    }
    let (w, set) = base.with_trainable(&prefixes);
    let model = DeepseekOcr::new(&config, &w)?;
    let params = set.vars();
    let n_params: usize = params.iter().map(|(_, v)| v.elem_count()).sum();
    eprintln!(
        "tokenizer: {} ids; model: {} trainable parameters ({}) in {} tensors",
        tok.vocab_size(),
        n_params,
        if args.train_vision {
            "vision tower + projector + decoder"
        } else {
            "projector + decoder"
        },
        params.len()
    );
    let codec: Rc<dyn TextCodec> = Rc::new(tok);
    let enc = ExampleEncoder::new(
        Renderer::from_preset(Preset::from_name(&args.render_preset)?)?,
        ImageMode::from_name(&args.image_size.to_string())?,
        codec,
        args.prompt.clone(),
        SpecialIds {
            bos: 0,
            eos: 1,
            image: 2,
        },
        &Device::Cpu,
    );
    let read = |d: &[Example]| -> Vec<Example> {
        d.iter()
            .map(|e| reading_example(e, args.read_chars))
            .collect()
    };
    let (train, held) = (read(&train_docs), read(&held_docs));
    let mut tc = TrainConfig::new(args.learning_rate, 1);
    tc.adamw.weight_decay = 0.0;
    tc.seed = args.seed;
    let mut cfg = PretrainConfig {
        train: tc,
        batch_size: args.batch_size.max(1),
        epochs: args.epochs.max(1),
        log_every: 10,
    };
    cfg.train.total_steps = cfg.steps_for(train.len()).max(1);
    cfg.train.warmup_steps = cfg.train.total_steps / 20;
    let before = held_out_loss(&model, &enc, &held, 8)?;
    eprintln!(
        "held-out reading loss before: {before:.4} ({} steps to go)",
        cfg.train.total_steps
    );
    let outcome = pretrain(
        &model,
        params.clone(),
        &enc,
        &train,
        &held,
        &cfg,
        &mut |l| eprintln!("{l}"),
    )?;
    let after = held_out_loss(&model, &enc, &held, 8)?;
    // The same targets under another document's page: how much the page itself helps.
    let mut swapped: Vec<Example> = Vec::with_capacity(held.len());
    for (i, e) in held.iter().enumerate() {
        let other = &held[(i + 1) % held.len()];
        swapped.push(Example {
            id: other.id.clone(),
            text: other.text.clone(),
            summary: e.summary.clone(),
        });
    }
    let after_swapped = held_out_loss(&model, &enc, &swapped, 8)?;
    eprintln!(
        "held-out reading loss after: {after:.4}; with another document's page: {after_swapped:.4}"
    );
    // Reading back: greedy transcripts of held-out pages against their text.
    let reading = if args.read_pages > 0 {
        let pages = &held[..args.read_pages.min(held.len())];
        let mut generation = GenerationConfig::greedy();
        generation.max_new_tokens = args.read_chars + 16;
        let r = evaluate(&model, &enc, pages, &generation)?;
        let cer = r.metrics.get("cer").copied().unwrap_or(f64::NAN);
        eprintln!("reading {} held-out pages: CER {cer:.4}", r.samples.len());
        for s in r.samples.iter().take(3) {
            eprintln!(
                "  page {}: read {:?}\n          text {:?}",
                s.id, s.generated, s.reference
            );
        }
        Some(r)
    } else {
        None
    };
    let secs = start.elapsed().as_secs_f64();
    eprintln!("{secs:.0} s");
    let report = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "corpus": args.corpus, "held_out": args.held_out,
        "train_documents": train.len(), "held_out_documents": held.len(),
        "vocab_size": config.decoder.vocab_size, "image_size": args.image_size,
        "render_preset": args.render_preset, "read_chars": args.read_chars,
        "prompt": args.prompt, "trainable_parameters": n_params,
        "config": cfg, "steps": outcome.train_losses.len(),
        "held_out_loss_before": before, "held_out_loss_after": after,
        "held_out_loss_after_swapped_pages": after_swapped,
        "train_vision": args.train_vision,
        "reading_cer": reading.as_ref().and_then(|r| r.metrics.get("cer")),
        "reading_samples": reading.as_ref().map(|r| &r.samples),
        "seconds": secs, "train_losses": outcome.train_losses,
        "held_out_losses": outcome.held_out_losses,
    });
    let report = serde_json::to_string_pretty(&report).expect("report serialises");
    let n = save_model(
        &base,
        &params,
        &config,
        &[
            ("tokenizer.json", tok_json.as_bytes()),
            ("pretrain.json", report.as_bytes()),
        ],
        &args.output_dir,
    )?;
    let _ = std::fs::remove_dir_all(&init);
    eprintln!("wrote {} ({n} tensors)", args.output_dir.display());
    Ok(ExitCode::SUCCESS)
}
