//! `deepsynth pretrain`: builds the bundled tiny DeepSeek-OCR from nothing: a byte-level BPE
//! tokenizer trained on the corpus, a random tiny model, and decoder training on reading the
//! rendered pages (target: the page's opening text).

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use candle_core::DType;
use clap::Args;
use deepsynth::data::{train_bpe, ImageMode, SpecialIds, TextCodec};
use deepsynth::infer::GenerationConfig;
use deepsynth::model::synthetic::write_random_checkpoint;
use deepsynth::model::{Config, DeepseekOcr};
use deepsynth::prelude::*;
use deepsynth::train::bundled::load_examples;
use deepsynth::train::pretrain::{
    line_words, reading_example, synthetic_lines, PRETRAIN_PREFIXES, VISION_PREFIXES,
};
use deepsynth::train::{
    evaluate, held_out_loss, pretrain, save_model, EvalReport, Example, ExampleEncoder,
    PretrainConfig, TrainConfig,
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
    #[command(flatten)]
    device: crate::common::DeviceArg,
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
    /// Synthetic lines of a first curriculum stage (random corpus words, which a language
    /// model cannot guess, rendered large; 0: no such stage).
    #[arg(long, default_value_t = 0)]
    lines: usize,
    /// Characters per synthetic line.
    #[arg(long, default_value_t = 24)]
    line_chars: usize,
    /// Font size of the synthetic lines, in pixels.
    #[arg(long, default_value_t = 28.0)]
    line_font_size: f32,
    /// Page and view size of the synthetic lines, in pixels (a square page).
    #[arg(long, default_value_t = 256)]
    line_image_size: u32,
    /// Epochs over the synthetic lines.
    #[arg(long, default_value_t = 1)]
    line_epochs: usize,
    /// Start from this model folder (an earlier `pretrain` output: config.json,
    /// model.safetensors, tokenizer.json) instead of a random initialisation, for the next
    /// stage of a curriculum; `--vocab-size` and `--seed`'s initialisation are then unused.
    #[arg(long)]
    init: Option<PathBuf>,
}

/// Held-out reading: the loss, the loss of the same targets under another example's page,
/// and (when `pages > 0`) greedy transcripts of the first `pages` scored by CER.
fn reading_check(
    model: &DeepseekOcr,
    enc: &ExampleEncoder,
    held: &[Example],
    pages: usize,
    max_tokens: usize,
    what: &str,
) -> deepsynth::Result<(f64, f64, Option<EvalReport>)> {
    let loss = held_out_loss(model, enc, held, 8)?;
    let swapped: Vec<Example> = held
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let other = &held[(i + 1) % held.len()];
            Example {
                id: other.id.clone(),
                text: other.text.clone(),
                summary: e.summary.clone(),
            }
        })
        .collect();
    let swapped_loss = held_out_loss(model, enc, &swapped, 8)?;
    eprintln!("{what}: held-out loss {loss:.4}; with another example's page: {swapped_loss:.4}");
    if pages == 0 {
        return Ok((loss, swapped_loss, None));
    }
    let mut generation = GenerationConfig::greedy();
    generation.max_new_tokens = max_tokens;
    let r = evaluate(model, enc, &held[..pages.min(held.len())], &generation)?;
    let cer = r.metrics.get("cer").copied().unwrap_or(f64::NAN);
    eprintln!(
        "{what}: reading {} held-out examples, CER {cer:.4}",
        r.samples.len()
    );
    for s in r.samples.iter().take(3) {
        eprintln!(
            "  {}: read {:?}\n      text {:?}",
            s.id, s.generated, s.reference
        );
    }
    Ok((loss, swapped_loss, Some(r)))
}

pub fn run(args: PretrainArgs) -> deepsynth::Result<ExitCode> {
    let start = Instant::now();
    let train_docs = load_examples(&args.corpus)?;
    let held_docs = load_examples(&args.held_out)?;
    if train_docs.is_empty() {
        eprintln!("error: no documents in {}", args.corpus.display());
        return Ok(ExitCode::from(2));
    }
    let (tok, config) = match &args.init {
        Some(dir) => (
            Tokenizer::from_file(dir.join("tokenizer.json"))?,
            Config::from_file(dir.join("config.json"))?,
        ),
        None => {
            let texts: Vec<&str> = train_docs
                .iter()
                .flat_map(|d| [d.text.as_str(), d.summary.as_str()])
                .collect();
            let tok = train_bpe(texts.into_iter(), args.vocab_size)?;
            let mut config = Config::tiny();
            config.decoder.vocab_size = tok.vocab_size();
            config.decoder.bos_token_id = Some(0);
            config.decoder.eos_token_id = Some(1);
            config.image_token_id = 2;
            (tok, config)
        }
    };
    let tok_json =
        tok.inner()
            .to_string(false)
            .map_err(|e| deepsynth::data::DataError::Invalid {
                what: "tokenizer".into(),
                reason: e.to_string(),
            })?;
    let random_init = args.output_dir.with_extension("init");
    let device = args.device.open()?;
    let base = match &args.init {
        Some(dir) => Weights::from_dir(dir, DType::F32, &device)?,
        None => {
            write_random_checkpoint(&config, &random_init, DType::F32, args.seed, usize::MAX)?;
            Weights::from_dir(&random_init, DType::F32, &device)?
        }
    };
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
    let ids = SpecialIds {
        bos: 0,
        eos: 1,
        image: 2,
    };
    let mut tc = TrainConfig::new(args.learning_rate, 1);
    tc.adamw.weight_decay = 0.0;
    tc.seed = args.seed;
    // A stage's settings: `epochs` over `n` examples, the first 5% of its steps warming up.
    let stage = |epochs: usize, n: usize| {
        let mut c = PretrainConfig {
            train: tc.clone(),
            batch_size: args.batch_size.max(1),
            epochs,
            log_every: 10,
        };
        c.train.total_steps = c.steps_for(n).max(1);
        c.train.warmup_steps = c.train.total_steps / 20;
        c
    };
    // Stage 1 (optional): synthetic lines, rendered large on small pages.
    let mut line_report = serde_json::Value::Null;
    if args.lines > 0 {
        let words = line_words(train_docs.iter().map(|d| d.text.as_str()));
        let lines = synthetic_lines(&words, args.lines, args.line_chars, args.seed);
        let held_lines = synthetic_lines(&words, 64, args.line_chars, args.seed + 1);
        let mut rc = RenderConfig::preset(Preset::Tiny);
        rc.font_size = args.line_font_size;
        rc.margins = Margins::uniform(8);
        rc.page = PageMode::Grow {
            width: args.line_image_size,
            max_height: args.line_image_size,
            fit_width: false,
        };
        let line_enc = ExampleEncoder::new(
            Renderer::new(rc)?,
            ImageMode::from_name(&args.line_image_size.to_string())?,
            codec.clone(),
            args.prompt.clone(),
            ids,
            &device,
        );
        let lc = stage(args.line_epochs.max(1), lines.len());
        eprintln!(
            "stage 1: {} synthetic lines of {} chars from {} words, {} px pages, font {} px ({} steps)",
            lines.len(),
            args.line_chars,
            words.len(),
            args.line_image_size,
            args.line_font_size,
            lc.train.total_steps
        );
        let out = pretrain(
            &model,
            params.clone(),
            &line_enc,
            &lines,
            &held_lines,
            &lc,
            &mut |l| eprintln!("{l}"),
        )?;
        let (loss, swapped, r) = reading_check(
            &model,
            &line_enc,
            &held_lines,
            args.read_pages,
            args.line_chars + 16,
            "stage 1 (lines)",
        )?;
        line_report = serde_json::json!({
            "lines": lines.len(), "line_chars": args.line_chars, "words": words.len(),
            "font_size": args.line_font_size, "image_size": args.line_image_size,
            "config": lc, "train_losses": out.train_losses,
            "held_out_losses": out.held_out_losses, "held_out_loss": loss,
            "held_out_loss_swapped_pages": swapped,
            "reading_cer": r.as_ref().and_then(|r| r.metrics.get("cer")),
            "reading_samples": r.as_ref().map(|r| &r.samples),
        });
    }
    let enc = ExampleEncoder::new(
        Renderer::from_preset(Preset::from_name(&args.render_preset)?)?,
        ImageMode::from_name(&args.image_size.to_string())?,
        codec,
        args.prompt.clone(),
        ids,
        &device,
    );
    let read = |d: &[Example]| -> Vec<Example> {
        d.iter()
            .map(|e| reading_example(e, args.read_chars))
            .collect()
    };
    let (train, held) = (read(&train_docs), read(&held_docs));
    let cfg = stage(args.epochs, train.len());
    // Without a page stage the model is unchanged: the loss after (below) is the loss before.
    let before = if args.epochs > 0 {
        let before = held_out_loss(&model, &enc, &held, 8)?;
        eprintln!(
            "held-out reading loss before: {before:.4} ({} steps to go)",
            cfg.train.total_steps
        );
        Some(before)
    } else {
        None
    };
    let outcome = if args.epochs > 0 {
        pretrain(
            &model,
            params.clone(),
            &enc,
            &train,
            &held,
            &cfg,
            &mut |l| eprintln!("{l}"),
        )?
    } else {
        Default::default()
    };
    let (after, after_swapped, reading) = reading_check(
        &model,
        &enc,
        &held,
        args.read_pages,
        args.read_chars + 16,
        "pages",
    )?;
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
        "held_out_loss_before": before.unwrap_or(after), "held_out_loss_after": after,
        "held_out_loss_after_swapped_pages": after_swapped,
        "train_vision": args.train_vision,
        "init": args.init,
        "reading_cer": reading.as_ref().and_then(|r| r.metrics.get("cer")),
        "reading_samples": reading.as_ref().map(|r| &r.samples),
        "line_stage": line_report,
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
    if args.init.is_none() {
        let _ = std::fs::remove_dir_all(&random_init);
    }
    eprintln!("wrote {} ({n} tensors)", args.output_dir.display());
    Ok(ExitCode::SUCCESS)
}
