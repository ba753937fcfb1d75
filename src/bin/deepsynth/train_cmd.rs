//! `deepsynth train`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use candle_core::Device;
use clap::Args;
use deepsynth::data::{load_pairs_from, ImageMode, PairFields, SpecialIds, TextCodec, Tokenizer};
use deepsynth::lora::{self, LoraConfig};
use deepsynth::model::hub::{offline_from_env, resolve, ModelSource};
use deepsynth::model::DeepseekOcr;
use deepsynth::prelude::*;
use deepsynth::rng::Rng;
use deepsynth::track::RunTracker;
use deepsynth::train::{
    run, Decay, EarlyStopping, Example, ExampleEncoder, RunConfig, TrainConfig,
};
use deepsynth::weights::QuantizeSpec;

use crate::infer_cmd::parse_dtype;
use crate::progress::Progress;

/// Arguments of `deepsynth train` (defaults follow the original DeepSynth plan).
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Base model: a Hub id (`org/name[@revision]`) or a local folder.
    #[arg(long, default_value = "deepseek-ai/DeepSeek-OCR")]
    model: String,
    /// A tokenizer.json to use instead of the model's.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Training data: .jsonl, .parquet or .csv with a text and a summary column, or a Hub
    /// split `hf://owner/name[@revision][/config]/split` (e.g. hf://ccdv/cnn_dailymail/3.0.0/train
    /// with --text-field article --summary-field highlights).
    #[arg(long)]
    dataset: String,
    /// Held-out data (same forms); without it, --eval-fraction of the training data.
    #[arg(long)]
    eval_dataset: Option<String>,
    /// Fraction of the training data held out when there is no --eval-dataset.
    #[arg(long, default_value_t = 0.1)]
    eval_fraction: f64,
    /// Column with the document text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Column with the reference summary.
    #[arg(long, default_value = "summary")]
    summary_field: String,
    /// Use at most this many training examples (after shuffling with the seed).
    #[arg(long)]
    max_samples: Option<usize>,
    /// Run folder: checkpoints, best/, TensorBoard events, metrics.jsonl.
    #[arg(long, default_value = "runs/deepsynth")]
    output_dir: PathBuf,
    /// Examples per micro-batch.
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    /// Epochs.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    learning_rate: f64,
    /// Learning-rate decay: cosine, linear, constant.
    #[arg(long, default_value = "cosine")]
    lr_scheduler: String,
    /// Warm-up as a fraction of all steps.
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,
    /// Micro-batches per optimiser step.
    #[arg(long, default_value_t = 4)]
    gradient_accumulation_steps: usize,
    /// Gradient clipping norm (0 = off).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    lora_rank: usize,
    /// LoRA alpha.
    #[arg(long, default_value_t = 32.0)]
    lora_alpha: f64,
    /// LoRA dropout.
    #[arg(long, default_value_t = 0.05)]
    lora_dropout: f32,
    /// LoRA target modules (PEFT names).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    )]
    lora_targets: Vec<String>,
    /// Base weights: 4 (NF4 + double quantisation, QLoRA) or 16 (dense in --dtype).
    #[arg(long, default_value_t = 4)]
    bits: u8,
    /// Compute dtype: f32, bf16, f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Evaluate and checkpoint every this many optimiser steps (0 = at the end).
    #[arg(long, default_value_t = 100)]
    eval_steps: u64,
    /// Held-out examples per evaluation.
    #[arg(long, default_value_t = 32)]
    max_eval_samples: usize,
    /// MiB of vision-tower features kept per page, so later epochs and evaluations skip the
    /// frozen encoder (0 = off; results are the same either way).
    #[arg(long, default_value_t = 1024)]
    feature_cache_mib: usize,
    /// Stop after this many evaluations without improvement (0 = never).
    #[arg(long, default_value_t = 3)]
    early_stopping_patience: usize,
    /// Metric watched for early stopping and best/: rougeL, rouge1, rouge2, loss, cer, wer.
    #[arg(long, default_value = "rougeL")]
    early_stopping_metric: String,
    /// Checkpoints kept besides best/.
    #[arg(long, default_value_t = 2)]
    save_total_limit: usize,
    /// Seed (adapter init, dropout, data order).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Continue from a checkpoint folder of this run.
    #[arg(long)]
    resume_from_checkpoint: Option<PathBuf>,
    /// Vision mode: tiny, small, base, large, gundam, or a square size in pixels.
    #[arg(long, default_value = "base")]
    mode: String,
    /// Render preset for the documents.
    #[arg(long, default_value = "base")]
    render_preset: String,
    /// Prompt (one `<image>`).
    #[arg(long, default_value = "<image>\nSummarize this document.")]
    prompt: String,
    /// Most tokens of an evaluation summary.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Settings for a memory budget: cpu, 8gb, 16gb, 24gb, 80gb (override batch size and
    /// accumulation; 4-bit below 24 GB).
    #[arg(long)]
    memory_preset: Option<String>,
    /// Never touch the network (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
}

fn examples(spec: &str, args: &TrainArgs) -> deepsynth::Result<Vec<Example>> {
    let fields = PairFields {
        reference: args.summary_field.clone(),
        prediction: args.text_field.clone(),
        id: "id".into(),
    };
    let loaded = load_pairs_from(spec, &fields, args.offline || offline_from_env())?;
    for b in &loaded.bad {
        eprintln!("warning: {spec}:{}: skipped: {}", b.line, b.reason);
    }
    Ok(loaded.pairs.into_iter().map(Example::from).collect())
}

pub fn run_cmd(mut args: TrainArgs) -> deepsynth::Result<ExitCode> {
    if let Some(p) = args.memory_preset.clone() {
        let (bs, ga, bits) = match p.as_str() {
            "cpu" => (1, 8, 4),
            "8gb" => (1, 8, 4),
            "16gb" => (2, 4, 4),
            "24gb" => (4, 2, 16),
            "80gb" => (8, 1, 16),
            other => {
                eprintln!("error: unknown --memory-preset `{other}` (cpu, 8gb, 16gb, 24gb, 80gb)");
                return Ok(ExitCode::from(2));
            }
        };
        (args.batch_size, args.gradient_accumulation_steps, args.bits) = (bs, ga, bits);
    }
    if args.bits != 4 && args.bits != 16 {
        eprintln!("error: --bits must be 4 or 16 (8-bit is not supported)");
        return Ok(ExitCode::from(2));
    }
    let mut rng = Rng::new(args.seed);
    let mut all = examples(&args.dataset, &args)?;
    rng.shuffle(&mut all);
    let held = match &args.eval_dataset {
        Some(p) => examples(p, &args)?,
        None => {
            let n = ((all.len() as f64) * args.eval_fraction).round() as usize;
            all.split_off(all.len() - n.min(all.len().saturating_sub(1)))
        }
    };
    if let Some(m) = args.max_samples {
        all.truncate(m);
    }
    if all.is_empty() {
        eprintln!("error: no training examples in {}", args.dataset);
        return Ok(ExitCode::from(2));
    }
    let files = resolve(
        &ModelSource::parse(&args.model),
        args.offline || offline_from_env(),
    )?;
    let tok_path = args
        .tokenizer
        .clone()
        .or(files.tokenizer.clone())
        .ok_or_else(|| deepsynth::model::ModelError::Hub {
            model: args.model.clone(),
            reason: "the model has no tokenizer.json (pass --tokenizer)".into(),
        })?;
    let codec: Rc<dyn TextCodec> = Rc::new(Tokenizer::from_file(&tok_path)?);
    let quantize = (args.bits == 4).then(QuantizeSpec::nf4_decoder);
    let mut model =
        DeepseekOcr::from_files(&files, parse_dtype(&args.dtype)?, &Device::Cpu, quantize)?;
    let targets: Vec<&str> = args.lora_targets.iter().map(String::as_str).collect();
    let mut lora_cfg = LoraConfig::new(args.lora_rank, args.lora_alpha)
        .with_dropout(args.lora_dropout)
        .with_targets(&targets);
    lora_cfg.base_model_name_or_path = Some(args.model.clone());
    if args.resume_from_checkpoint.is_none() {
        let s = lora::apply_lora(&mut model, &lora_cfg, &mut rng)?;
        eprintln!(
            "LoRA r={} on {} layers: {} trainable parameters ({:.2}% of the adapted linears)",
            args.lora_rank,
            s.adapted_layers,
            s.trainable_params,
            100.0 * s.trainable_params as f64 / s.frozen_linear_params.max(1) as f64
        );
    }
    let d = &model.config().decoder;
    let ids = SpecialIds {
        bos: d.bos_token_id.unwrap_or(0),
        eos: d.eos_token_id.unwrap_or(1),
        image: model.config().image_token_id,
    };
    let enc = ExampleEncoder::new(
        Renderer::from_preset(Preset::from_name(&args.render_preset)?)?,
        ImageMode::from_name(&args.mode)?,
        codec,
        args.prompt.clone(),
        ids,
        &Device::Cpu,
    );
    let decay = match args.lr_scheduler.as_str() {
        "cosine" => Decay::Cosine,
        "linear" => Decay::Linear,
        "constant" => Decay::Constant,
        other => {
            eprintln!("error: unknown --lr-scheduler `{other}` (cosine, linear, constant)");
            return Ok(ExitCode::from(2));
        }
    };
    let mut tc = TrainConfig::new(args.learning_rate, 1);
    tc.decay = decay;
    tc.grad_accum = args.gradient_accumulation_steps.max(1);
    tc.max_grad_norm = args.max_grad_norm;
    tc.adamw.weight_decay = args.weight_decay;
    tc.seed = args.seed;
    let mut cfg = RunConfig::new(tc);
    cfg.batch_size = args.batch_size.max(1);
    cfg.epochs = args.epochs.max(1);
    cfg.eval_every = args.eval_steps;
    cfg.keep_last = args.save_total_limit.max(1);
    cfg.max_eval_examples = args.max_eval_samples;
    cfg.feature_cache_mib = args.feature_cache_mib;
    cfg.generation.max_new_tokens = args.max_new_tokens;
    cfg.train.total_steps = cfg.steps_for(all.len()).max(1);
    cfg.train.warmup_steps = (cfg.train.total_steps as f64 * args.warmup_ratio).round() as u64;
    let higher = !matches!(args.early_stopping_metric.as_str(), "loss" | "cer" | "wer");
    cfg.early_stopping = (args.early_stopping_patience > 0).then(|| EarlyStopping {
        metric: args.early_stopping_metric.clone(),
        patience: args.early_stopping_patience,
        higher_is_better: higher,
    });
    eprintln!(
        "{} training / {} held-out examples, {} optimiser steps ({} epochs x batch {} x accumulation {})",
        all.len(),
        held.len(),
        cfg.train.total_steps,
        cfg.epochs,
        cfg.batch_size,
        cfg.train.grad_accum
    );
    let mut tracker = RunTracker::open(&args.output_dir)?;
    let progress = Progress::new("train");
    let total = cfg.train.total_steps as usize;
    let mut log = |line: &str| {
        eprintln!("{line}");
        if let Some(step) = line
            .strip_prefix("step ")
            .and_then(|r| r.split(' ').next())
            .and_then(|s| s.parse::<usize>().ok())
        {
            progress.update(step, total);
        }
    };
    let outcome = run(
        &mut model,
        &lora_cfg,
        &enc,
        &all,
        &held,
        &cfg,
        &args.output_dir,
        &mut tracker,
        args.resume_from_checkpoint.as_deref(),
        &mut log,
    )?;
    let summary = serde_json::to_string_pretty(&outcome).expect("outcome serialises");
    deepsynth::fsutil::atomic_write(&args.output_dir.join("outcome.json"), summary.as_bytes())?;
    match outcome.best {
        Some((step, v)) => eprintln!(
            "done: {} steps{}; best {} {v:.4} at step {step} (adapter in {})",
            outcome.steps,
            if outcome.stopped_early {
                " (stopped early)"
            } else {
                ""
            },
            cfg.early_stopping
                .as_ref()
                .map_or("loss", |e| e.metric.as_str()),
            args.output_dir.join("best").display()
        ),
        None => eprintln!("done: {} steps", outcome.steps),
    }
    Ok(ExitCode::SUCCESS)
}
