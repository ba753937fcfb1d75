//! `deepsynth train`: settings from the command line (or, when resuming, from the checkpoint),
//! the datasets, the model with its adapter, the run, and its summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use clap::Args;
use deepsynth::data::{
    load_pairs_from, page_config_for, ImageMode, OnOverflow, PairFields, SpecialIds, TextCodec,
    Tokenizer,
};
use deepsynth::lora::{self, LoraConfig};
use deepsynth::model::hub::{offline_from_env, resolve, ModelSource};
use deepsynth::model::DeepseekOcr;
use deepsynth::prelude::*;
use deepsynth::rng::Rng;
use deepsynth::track::mlflow::KeyValue;
use deepsynth::track::{Fanout, Tracker};
use deepsynth::train::distributed::TcpGroup;
use deepsynth::train::{
    run, run_distributed, watchable_metrics, BadExampleLimit, Decay, EarlyStopping, Example,
    ExampleEncoder, RunConfig, RunOutcome, TrainConfig, SKIPPED_FILE,
};
use deepsynth::weights::QuantizeSpec;

use crate::common::{parse_dtype, usage, DeviceArg, Given};
use crate::hub_args::HubArgs;
use crate::launch::{LaunchArgs, Role};
use crate::progress::Progress;
use crate::report_to::ReportArgs;

/// Arguments of `deepsynth train` (defaults follow the original DeepSynth plan).
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Base model: a Hub id (`org/name[@revision]`) or a local folder.
    #[arg(long, default_value = "deepseek-ai/DeepSeek-OCR", alias = "model-name")]
    model: String,
    /// A tokenizer.json to use instead of the model's.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Training data: .jsonl, .parquet or .csv with a text and a summary column, or a Hub
    /// split `hf://owner/name[@revision][/config]/split` (e.g. hf://ccdv/cnn_dailymail/3.0.0/train
    /// with --text-field article --summary-field highlights).
    #[arg(long, alias = "dataset-name")]
    dataset: String,
    /// Held-out data (same forms); without it, --eval-fraction of the training data.
    #[arg(long)]
    eval_dataset: Option<String>,
    /// Fraction of the training data held out when there is no --eval-dataset (0 to 0.5).
    #[arg(long, default_value_t = 0.1)]
    eval_fraction: f64,
    /// Column with the document text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Column with the reference summary.
    #[arg(long, default_value = "summary")]
    summary_field: String,
    /// Use at most this many training examples (after shuffling with the seed).
    #[arg(long, alias = "max-train-samples")]
    max_samples: Option<usize>,
    /// Run folder: checkpoints, best/, TensorBoard events, metrics.jsonl, skipped.jsonl.
    #[arg(long, default_value = "runs/deepsynth")]
    output_dir: PathBuf,
    /// Examples per micro-batch.
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    /// Epochs.
    #[arg(
        long,
        default_value_t = 1,
        alias = "num-epochs",
        alias = "num-train-epochs"
    )]
    epochs: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    learning_rate: f64,
    /// Learning-rate decay: cosine, linear, constant.
    #[arg(long, default_value = "cosine")]
    lr_scheduler: String,
    /// Warm-up as a fraction of all steps (0 to 1).
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,
    /// Warm-up in optimiser steps; overrides --warmup-ratio when above 0 (as in Hugging Face's
    /// TrainingArguments).
    #[arg(long)]
    warmup_steps: Option<u64>,
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
    /// LoRA dropout (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    lora_dropout: f32,
    /// LoRA target modules (PEFT names).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    )]
    lora_targets: Vec<String>,
    /// Base weights: 4 (NF4 + double quantisation, QLoRA), 8 (bitsandbytes LLM.int8, outlier
    /// threshold 6.0) or 16 (dense in --dtype).
    #[arg(long, default_value_t = 4, alias = "qlora-bits")]
    bits: u8,
    /// Compute dtype: f32, bf16, f16. Frozen weights and products take it; LoRA matrices and
    /// optimiser moments stay f32, softmax, norms and the loss accumulate in f32 (PEFT +
    /// bitsandbytes with `compute_dtype`).
    #[arg(long, default_value = "f32", alias = "compute-dtype")]
    dtype: String,
    #[command(flatten)]
    device: DeviceArg,
    /// Evaluate (and, without --save-steps, checkpoint) every this many optimiser steps (0 =
    /// at the end).
    #[arg(long, default_value_t = 100)]
    eval_steps: u64,
    /// Checkpoint every this many optimiser steps [default: with every evaluation]. `best/` is
    /// written by the evaluation that improves the watched metric either way, and the last
    /// step is always checkpointed.
    #[arg(long)]
    save_steps: Option<u64>,
    /// Track and print the training loss every this many optimiser steps (the mean since the
    /// last log, as Hugging Face's logging_steps; the plan's log_interval).
    #[arg(long, default_value_t = 1, alias = "log-interval")]
    logging_steps: u64,
    /// Held-out examples per evaluation.
    #[arg(long, default_value_t = 32)]
    max_eval_samples: usize,
    /// MiB of rendered pages and vision-tower features kept across epochs and evaluations,
    /// least recently used dropped first (0 = off; results are the same either way).
    #[arg(long, default_value_t = 1024, alias = "feature-cache-mib")]
    cache_mib: usize,
    /// Stop after this many evaluations without improvement (0 = never).
    #[arg(long, default_value_t = 3)]
    early_stopping_patience: usize,
    /// Metric watched for early stopping and best/ (also without early stopping): loss,
    /// rouge1, rouge2, rougeL, rougeLsum, bleu, chrf, cer, wer.
    #[arg(long, default_value = "rougeL", alias = "metric-for-best-model")]
    early_stopping_metric: String,
    /// Whether a larger value of the watched metric is better [default: the metric's own
    /// direction: true for ROUGE, BLEU, chrF; false for loss, CER, WER].
    #[arg(long)]
    greater_is_better: Option<bool>,
    /// Checkpoints kept besides best/.
    #[arg(long, default_value_t = 2)]
    save_total_limit: usize,
    /// Seed (adapter init, dropout, data order).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Gradient checkpointing (the plan's unsloth_gradient_checkpointing): decoder layers
    /// keep only their input for the backward pass, which recomputes the rest; the same
    /// gradients for less activation memory and about one more decoder forward per step.
    #[arg(long, alias = "unsloth-gradient-checkpointing")]
    gradient_checkpointing: bool,
    /// Adapt DeepSeek-OCR 2's Qwen2 encoder layers too (Unsloth's finetune_vision_layers):
    /// the LoRA targets then match their q/k/v/o and MLP linears as well as the decoder's.
    /// Refused for DeepSeek-OCR, whose SAM + CLIP tower stays frozen.
    #[arg(long)]
    finetune_vision_layers: bool,
    /// Continue from a checkpoint folder of this run: its settings, adapter configuration
    /// and data order are used; options that contradict them are errors.
    #[arg(long)]
    resume_from_checkpoint: Option<PathBuf>,
    /// Vision mode: auto (base; documents too long for its page on a gundam page, read as a
    /// global view and 2 x 3 tiles; ocr2 for DeepSeek-OCR 2 models), tiny, small, base, large,
    /// gundam, a square size in pixels, ocr2 (DeepSeek-OCR 2's 1024 view + 768 tiles) or
    /// ocr2:G/T (its crop mode with a G px view and T px tiles).
    #[arg(long, default_value = "auto")]
    mode: String,
    /// Render preset for the documents (auto: the page the mode reads; or tiny, small, base,
    /// large, gundam, deepsynth).
    #[arg(long, default_value = "auto")]
    render_preset: String,
    /// Skip (and list) documents with characters no bundled font covers, instead of drawing
    /// them as U+FFFD.
    #[arg(long)]
    strict: bool,
    /// A document that does not fit on one page: truncate (keep its first page, counted in
    /// the outcome), skip (list it in skipped.jsonl) or error (stop the run).
    #[arg(long, default_value = "truncate")]
    on_overflow: String,
    /// Bad examples (unrenderable, untokenisable, failing generation) skipped before the run
    /// fails: a count, or auto = the larger of 10 and 1% of the examples.
    #[arg(long, default_value = "auto")]
    max_bad_examples: String,
    /// Longest training sequence in positions (prompt, image and summary); longer examples are
    /// skipped and listed (attention memory grows with its square).
    #[arg(long, default_value_t = 2048)]
    max_seq_length: usize,
    /// The original plan's context-length multiplier (1 to 10): --max-seq-length of this many
    /// times 1024 positions.
    #[arg(long, conflicts_with = "max_seq_length")]
    context_multiplier: Option<usize>,
    /// Prompt (one `<image>`).
    #[arg(long, default_value = "<image>\nSummarize this document.")]
    prompt: String,
    /// Most tokens of an evaluation summary.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Settings for a memory budget: cpu, 8gb, 16gb, 24gb, 80gb (batch size, accumulation and
    /// bits that were not given explicitly; 4-bit below 24 GB).
    #[arg(long)]
    memory_preset: Option<String>,
    /// Never touch the network (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    report: ReportArgs,
    #[command(flatten)]
    hub: HubArgs,
    #[command(flatten)]
    launch: LaunchArgs,
}

#[path = "train_resume.rs"]
mod resume;
use resume::resumed_settings;

/// Positions per unit of `--context-multiplier`.
const CONTEXT_UNIT: usize = 1024;

/// A command-line problem: printed with exit code 2.
struct Usage(String);

impl From<deepsynth::train::TrainError> for Usage {
    fn from(e: deepsynth::train::TrainError) -> Self {
        Usage(e.to_string())
    }
}

fn positive(flag: &str, v: usize) -> Result<(), Usage> {
    if v == 0 {
        return Err(Usage(format!("{flag} must be at least 1, got 0")));
    }
    Ok(())
}

/// Checks ranges and names the memory preset's values into `args` (explicit options win).
fn check_args(args: &mut TrainArgs, given: Given) -> Result<(), Usage> {
    if let Some(p) = args.memory_preset.clone() {
        let (bs, ga, bits) = match p.as_str() {
            "cpu" | "8gb" => (1, 8, 4),
            "16gb" => (2, 4, 4),
            "24gb" => (4, 2, 16),
            "80gb" => (8, 1, 16),
            other => {
                return Err(Usage(format!(
                    "unknown --memory-preset `{other}` (valid: cpu, 8gb, 16gb, 24gb, 80gb)"
                )))
            }
        };
        if !given.has("batch_size") {
            args.batch_size = bs;
        }
        if !given.has("gradient_accumulation_steps") {
            args.gradient_accumulation_steps = ga;
        }
        if !given.has("bits") {
            args.bits = bits;
        }
    }
    if ![4, 8, 16].contains(&args.bits) {
        return Err(Usage(format!(
            "--bits must be 4, 8 or 16, got {}",
            args.bits
        )));
    }
    positive("--batch-size", args.batch_size)?;
    positive("--epochs", args.epochs)?;
    positive(
        "--gradient-accumulation-steps",
        args.gradient_accumulation_steps,
    )?;
    positive("--lora-rank", args.lora_rank)?;
    positive("--save-total-limit", args.save_total_limit)?;
    positive("--max-eval-samples", args.max_eval_samples)?;
    positive("--max-new-tokens", args.max_new_tokens)?;
    if let Some(m) = args.context_multiplier {
        if !(1..=10).contains(&m) {
            return Err(Usage(format!(
                "--context-multiplier must be in [1, 10], got {m}"
            )));
        }
        args.max_seq_length = m * CONTEXT_UNIT;
    }
    positive("--max-seq-length", args.max_seq_length)?;
    positive("--logging-steps", args.logging_steps as usize)?;
    if args.save_steps == Some(0) {
        return Err(Usage(
            "--save-steps must be at least 1 (leave it out to checkpoint with every evaluation)"
                .into(),
        ));
    }
    if args.max_samples == Some(0) {
        return Err(Usage("--max-samples must be at least 1, got 0".into()));
    }
    let in_range = |flag: &str, v: f64, lo: f64, hi: f64| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(Usage(format!("{flag} must be in [{lo}, {hi}], got {v}")))
        }
    };
    in_range("--eval-fraction", args.eval_fraction, 0.0, 0.5)?;
    in_range("--warmup-ratio", args.warmup_ratio, 0.0, 1.0)?;
    in_range("--lora-dropout", args.lora_dropout as f64, 0.0, 0.99)?;
    in_range("--max-grad-norm", args.max_grad_norm, 0.0, f64::MAX)?;
    in_range("--weight-decay", args.weight_decay, 0.0, f64::MAX)?;
    if !(args.learning_rate > 0.0 && args.learning_rate.is_finite()) {
        return Err(Usage(format!(
            "--learning-rate must be > 0, got {}",
            args.learning_rate
        )));
    }
    args.report.reporting().map_err(Usage)?;
    args.hub.check().map_err(Usage)?;
    // Checked even when early stopping is off: the metric also picks best/.
    EarlyStopping::on(&args.early_stopping_metric, 1).map_err(|_| {
        Usage(format!(
            "unknown --early-stopping-metric `{}` (valid: {})",
            args.early_stopping_metric,
            watchable_metrics().join(", ")
        ))
    })?;
    Ok(())
}

fn decay(name: &str) -> Result<Decay, Usage> {
    match name {
        "cosine" => Ok(Decay::Cosine),
        "linear" => Ok(Decay::Linear),
        "constant" => Ok(Decay::Constant),
        other => Err(Usage(format!(
            "unknown --lr-scheduler `{other}` (valid: cosine, linear, constant)"
        ))),
    }
}

/// The run settings the options describe for `n_train` training examples and `world` ranks.
fn run_config(args: &TrainArgs, n_train: usize, world: usize) -> Result<RunConfig, Usage> {
    let mut tc = TrainConfig::new(args.learning_rate, 1);
    tc.decay = decay(&args.lr_scheduler)?;
    tc.grad_accum = args.gradient_accumulation_steps;
    tc.max_grad_norm = args.max_grad_norm;
    tc.adamw.weight_decay = args.weight_decay;
    tc.seed = args.seed;
    tc.gradient_checkpointing = args.gradient_checkpointing;
    let mut cfg = RunConfig::new(tc);
    cfg.batch_size = args.batch_size;
    cfg.world_size = world;
    cfg.epochs = args.epochs;
    cfg.max_seq_length = args.max_seq_length;
    cfg.train.total_steps = cfg.steps_for(n_train).max(1);
    cfg.train.warmup_steps = warmup_steps(args, cfg.train.total_steps);
    let mut watched = EarlyStopping::on(&args.early_stopping_metric, 1)?;
    if let Some(g) = args.greater_is_better {
        watched.higher_is_better = g;
    }
    if args.early_stopping_patience > 0 {
        watched.patience = args.early_stopping_patience;
        cfg.early_stopping = Some(watched);
    } else {
        cfg.best_metric = Some(watched);
    }
    apply_unpinned(args, &mut cfg)?;
    cfg.validate()?;
    Ok(cfg)
}

/// Warm-up steps: --warmup-steps when above 0, else --warmup-ratio of `total`.
fn warmup_steps(args: &TrainArgs, total: u64) -> u64 {
    match args.warmup_steps {
        Some(n) if n > 0 => n,
        _ => (total as f64 * args.warmup_ratio).round() as u64,
    }
}

/// The settings a resumed run may change: evaluation, checkpoints, logging, cache,
/// bad-example limit.
fn apply_unpinned(args: &TrainArgs, cfg: &mut RunConfig) -> Result<(), Usage> {
    cfg.eval_every = args.eval_steps;
    cfg.save_every = args.save_steps;
    cfg.logging_steps = args.logging_steps;
    cfg.keep_last = args.save_total_limit;
    cfg.max_eval_examples = args.max_eval_samples;
    cfg.cache_mib = args.cache_mib;
    cfg.generation.max_new_tokens = args.max_new_tokens;
    cfg.max_bad_examples = BadExampleLimit::from_name(&args.max_bad_examples)?;
    Ok(())
}

fn lora_config(args: &TrainArgs) -> LoraConfig {
    let targets: Vec<&str> = args.lora_targets.iter().map(String::as_str).collect();
    let mut cfg = LoraConfig::new(args.lora_rank, args.lora_alpha)
        .with_dropout(args.lora_dropout)
        .with_targets(&targets);
    cfg.base_model_name_or_path = Some(args.model.clone());
    cfg
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

/// The training and held-out examples.
fn datasets(args: &TrainArgs) -> deepsynth::Result<(Vec<Example>, Vec<Example>)> {
    let mut all = examples(&args.dataset, args)?;
    Rng::new(args.seed).shuffle(&mut all);
    let held = match &args.eval_dataset {
        Some(p) => examples(p, args)?,
        None => {
            let n = ((all.len() as f64) * args.eval_fraction).round() as usize;
            all.split_off(all.len() - n.min(all.len().saturating_sub(1)))
        }
    };
    if let Some(m) = args.max_samples {
        all.truncate(m);
    }
    Ok((all, held))
}

/// The model (NF4 or dense), its tokenizer, and a fresh adapter unless resuming.
fn load_model(
    args: &TrainArgs,
    lora_cfg: &LoraConfig,
) -> deepsynth::Result<(DeepseekOcr, Rc<dyn TextCodec>)> {
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
    let quantize = match args.bits {
        4 => Some(QuantizeSpec::nf4_decoder()),
        8 => Some(QuantizeSpec::int8_decoder()),
        _ => None,
    };
    let mut model = DeepseekOcr::from_files(
        &files,
        parse_dtype(&args.dtype)?,
        &args.device.open()?,
        quantize,
    )?;
    if args.resume_from_checkpoint.is_none() {
        model.set_adapt_encoder(args.finetune_vision_layers)?;
        let s = lora::apply_lora(&mut model, lora_cfg, &mut Rng::new(args.seed))?;
        eprintln!(
            "LoRA r={} on {} layers: {} trainable parameters ({:.2}% of the adapted linears)",
            lora_cfg.r,
            s.adapted_layers,
            s.trainable_params,
            100.0 * s.trainable_params as f64 / s.frozen_linear_params.max(1) as f64
        );
    }
    Ok((model, codec))
}

/// Pages, prompt and tokenizer for the run.
fn encoder(
    args: &TrainArgs,
    model: &DeepseekOcr,
    codec: Rc<dyn TextCodec>,
    on_overflow: OnOverflow,
) -> deepsynth::Result<ExampleEncoder> {
    let requested = match args.mode.as_str() {
        "auto" => None,
        name => Some((ImageMode::from_name(name)?, None)),
    };
    let (mode, long) = model.config().vision_config.image_modes(requested)?;
    let page = |cfg: RenderConfig| Renderer::new(if args.strict { cfg.strict() } else { cfg });
    let renderer = page(match args.render_preset.as_str() {
        "auto" => page_config_for(&mode),
        name => RenderConfig::preset(Preset::from_name(name)?),
    })?;
    let d = &model.config().decoder;
    let ids = SpecialIds {
        bos: d.bos_token_id.unwrap_or(0),
        eos: d.eos_token_id.unwrap_or(1),
        image: model.config().image_token_id,
    };
    let enc = ExampleEncoder::new(
        renderer,
        mode,
        codec,
        args.prompt.clone(),
        ids,
        model.device(),
    )
    .with_on_overflow(on_overflow);
    Ok(match long {
        Some(long) => enc.with_fallback(page(page_config_for(&long))?, long),
        None => enc,
    })
}

/// Writes `outcome.json` and prints what the run did.
fn report(args: &TrainArgs, cfg: &RunConfig, outcome: &RunOutcome) -> deepsynth::Result<()> {
    let summary = serde_json::to_string_pretty(outcome).expect("outcome serialises");
    deepsynth::fsutil::atomic_write(&args.output_dir.join("outcome.json"), summary.as_bytes())?;
    let ex = &outcome.examples;
    if !ex.skipped.is_empty() {
        eprintln!(
            "skipped {} example(s), listed in {}:",
            ex.skipped.len(),
            args.output_dir.join(SKIPPED_FILE).display()
        );
        for s in &ex.skipped {
            eprintln!("  {:?} #{} `{}`: {}", s.phase, s.index, s.id, s.reason);
        }
    }
    for t in &ex.truncated {
        eprintln!(
            "truncated: {:?} #{} `{}`: the page shows {} characters, {} left off ({} pages \
             needed)",
            t.phase,
            t.index,
            t.id,
            t.shown.shown_chars,
            t.shown.truncated_chars,
            t.shown.pages_needed
        );
    }
    match outcome.best {
        Some((step, v)) => eprintln!(
            "done: {} steps{}; best {} {v:.4} at step {step} (adapter in {})",
            outcome.steps,
            if outcome.stopped_early {
                " (stopped early)"
            } else {
                ""
            },
            cfg.watched().metric,
            args.output_dir.join("best").display()
        ),
        None => eprintln!("done: {} steps", outcome.steps),
    }
    Ok(())
}

pub fn run_cmd(mut args: TrainArgs, given: Given) -> deepsynth::Result<ExitCode> {
    if let Err(Usage(msg)) = check_args(&mut args, given) {
        return Ok(usage(msg));
    }
    let (env, group) = match crate::launch::start(&args.launch)? {
        Role::Launched(code) => return Ok(code),
        Role::Rank(env, group) => (env, group),
    };
    let leader = env.rank == 0;
    // Before anything runs: a missing token stops the command here.
    let data_names = [Some(args.dataset.clone()), args.eval_dataset.clone()];
    let hub = if leader {
        args.hub
            .pusher(&args.output_dir, data_names.into_iter().flatten().collect())?
    } else {
        None
    };
    let on_overflow = match OnOverflow::from_name(&args.on_overflow) {
        Ok(p) => p,
        Err(e) => return Ok(usage(format!("--on-overflow: {e}"))),
    };
    let (train, held) = datasets(&args)?;
    if train.is_empty() {
        return Ok(usage(format!("no training examples in {}", args.dataset)));
    }
    let fresh = match run_config(&args, train.len(), env.world_size) {
        Ok(c) => c,
        Err(Usage(msg)) => return Ok(usage(msg)),
    };
    let (cfg, lora_cfg) = match &args.resume_from_checkpoint {
        Some(dir) => match resumed_settings(&args, given, &fresh, dir) {
            Ok(s) => s,
            Err(Usage(msg)) => return Ok(usage(msg)),
        },
        None => (fresh, lora_config(&args)),
    };
    let (mut model, codec) = load_model(&args, &lora_cfg)?;
    let enc = encoder(&args, &model, codec, on_overflow)?;
    eprintln!(
        "{} training / {} held-out examples, {} optimiser steps ({} epochs x batch {} x accumulation {}{})",
        train.len(),
        held.len(),
        cfg.train.total_steps,
        cfg.epochs,
        cfg.batch_size,
        cfg.train.grad_accum,
        if cfg.world_size > 1 {
            format!(" x {} ranks", cfg.world_size)
        } else {
            String::new()
        }
    );
    let job = Job {
        args: &args,
        cfg: &cfg,
        lora_cfg: &lora_cfg,
        enc: &enc,
        train: &train,
        held: &held,
        group: group.as_deref(),
    };
    if !leader {
        // Rank 0 writes the run's files and reports; the others only train.
        let mut nothing = Fanout::new(Vec::new());
        job.run(&mut model, &mut nothing, &mut |_| {})?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut trackers = args.report.open(
        &args.output_dir,
        &mlflow_params(&args, &cfg, &lora_cfg),
        mlflow_tags(&args),
    )?;
    trackers.hub = hub;
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
    let result = trackers
        .with(|tracker| job.run(&mut model, tracker, &mut log))
        .map_err(deepsynth::Error::from)
        .and_then(|outcome| report(&args, &cfg, &outcome));
    let files = ["outcome.json", "metrics.jsonl", SKIPPED_FILE];
    if let Some(code) = trackers.end(&args.output_dir, &files, &result) {
        return Ok(code);
    }
    result.map(|()| ExitCode::SUCCESS)
}

/// What a rank trains.
struct Job<'a> {
    args: &'a TrainArgs,
    cfg: &'a RunConfig,
    lora_cfg: &'a LoraConfig,
    enc: &'a ExampleEncoder,
    train: &'a [Example],
    held: &'a [Example],
    group: Option<&'a TcpGroup>,
}

impl Job<'_> {
    /// The run, alone or as a rank of the group.
    fn run(
        &self,
        model: &mut DeepseekOcr,
        tracker: &mut dyn Tracker,
        log: &mut dyn FnMut(&str),
    ) -> Result<RunOutcome, deepsynth::train::TrainError> {
        let (a, out) = (self.args, &self.args.output_dir);
        let resume = a.resume_from_checkpoint.as_deref();
        match self.group {
            Some(g) => run_distributed(
                model,
                self.lora_cfg,
                self.enc,
                self.train,
                self.held,
                self.cfg,
                out,
                tracker,
                resume,
                log,
                g,
            ),
            None => run(
                model,
                self.lora_cfg,
                self.enc,
                self.train,
                self.held,
                self.cfg,
                out,
                tracker,
                resume,
                log,
            ),
        }
    }
}

/// The run's settings as MLflow params: the run and adapter configuration as training uses
/// them, and the options that chose the model and data.
fn mlflow_params(args: &TrainArgs, cfg: &RunConfig, lora: &LoraConfig) -> serde_json::Value {
    serde_json::json!({
        "run": cfg,
        "lora": lora,
        "model": args.model,
        "tokenizer": args.tokenizer,
        "dataset": args.dataset,
        "eval_dataset": args.eval_dataset,
        "eval_fraction": args.eval_fraction,
        "text_field": args.text_field,
        "summary_field": args.summary_field,
        "max_samples": args.max_samples,
        "bits": args.bits,
        "dtype": args.dtype,
        "device": args.device.device,
        "mode": args.mode,
        "render_preset": args.render_preset,
        "on_overflow": args.on_overflow,
        "prompt": args.prompt,
        "output_dir": args.output_dir,
    })
}

fn mlflow_tags(args: &TrainArgs) -> Vec<KeyValue> {
    let mut tags = vec![
        KeyValue::new("deepsynth.command", "train"),
        KeyValue::new(
            "deepsynth.output_dir",
            std::path::absolute(&args.output_dir)
                .unwrap_or_else(|_| args.output_dir.clone())
                .display()
                .to_string(),
        ),
    ];
    if let Some(dir) = &args.resume_from_checkpoint {
        tags.push(KeyValue::new(
            "deepsynth.resumed_from",
            dir.display().to_string(),
        ));
    }
    tags
}
