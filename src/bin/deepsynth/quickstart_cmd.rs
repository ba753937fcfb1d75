//! `deepsynth quickstart`: QLoRA fine-tuning of the bundled tiny DeepSeek-OCR on the bundled
//! crate-README corpus, evaluated before and after, with an HTML report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use deepsynth::display::TrainingReport;
use deepsynth::lora::LoraConfig;
use deepsynth::track::mlflow::KeyValue;
use deepsynth::train::bundled::{
    bundled_root, Bundled, BUNDLED_MODEL, BUNDLED_TEST, BUNDLED_TRAIN,
};
use deepsynth::train::{evaluate, run, EvalReport};
use deepsynth::weights::QuantizeSpec;

use crate::common::{usage, DeviceArg};
use crate::hub_args::HubArgs;
use crate::report_to::{ReportArgs, Trackers};

/// Arguments of `deepsynth quickstart` (every default is the bundled setup).
#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Model folder (config.json, model.safetensors, tokenizer.json) [default: the bundled
    /// models/deepsynth-ocr-tiny, from the repository or embedded in this program].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Training documents with summaries [default: the bundled
    /// data/crates-readme/train.jsonl].
    #[arg(long)]
    train: Option<PathBuf>,
    /// Held-out documents with summaries [default: the bundled data/crates-readme/test.jsonl].
    #[arg(long)]
    test: Option<PathBuf>,
    /// Run folder: checkpoints, best/, TensorBoard events, metrics.jsonl, report.html.
    #[arg(long, default_value = "runs/quickstart")]
    output_dir: PathBuf,
    /// Use only the first this many training documents.
    #[arg(long)]
    max_train_samples: Option<usize>,
    /// Epochs.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    learning_rate: f64,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    lora_rank: usize,
    /// LoRA alpha.
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// Evaluate every this many steps.
    #[arg(long, default_value_t = 25)]
    eval_steps: u64,
    /// Held-out documents per evaluation.
    #[arg(long, default_value_t = 24)]
    max_eval_samples: usize,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Gradient checkpointing of the decoder layers (same gradients, less activation memory).
    #[arg(long, alias = "unsloth-gradient-checkpointing")]
    gradient_checkpointing: bool,
    /// Decoder weights: 4 (NF4 + double quantisation) or 8 (bitsandbytes LLM.int8,
    /// outlier threshold 6.0).
    #[arg(long, default_value_t = 4)]
    bits: u8,
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    report: ReportArgs,
    #[command(flatten)]
    hub: HubArgs,
}

fn show(r: &EvalReport) -> String {
    r.metrics
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run_cmd(args: QuickstartArgs) -> deepsynth::Result<ExitCode> {
    if let Err(msg) = args.report.reporting().and_then(|_| args.hub.check()) {
        return Ok(usage(msg));
    }
    // Before anything runs: a missing token stops the command here.
    let datasets = [(&args.train, BUNDLED_TRAIN), (&args.test, BUNDLED_TEST)]
        .into_iter()
        .map(|(given, bundled)| {
            given
                .as_ref()
                .map_or(bundled.into(), |p| p.display().to_string())
        })
        .collect();
    let mut hub = args.hub.pusher(&args.output_dir, datasets)?;
    let mut trackers = None;
    let result = quickstart(&args, &mut trackers, &mut hub);
    let files = ["report.html", "quickstart.json", "metrics.jsonl"];
    if let Some(code) = trackers.and_then(|t: Trackers| t.end(&args.output_dir, &files, &result)) {
        return Ok(code);
    }
    result
}

/// The quickstart; `trackers` holds the run's trackers once they are open (so that the caller
/// can end the MLflow run whatever happens).
fn quickstart(
    args: &QuickstartArgs,
    trackers: &mut Option<Trackers>,
    hub: &mut Option<deepsynth::track::hub::HubPusher>,
) -> deepsynth::Result<ExitCode> {
    let start = Instant::now();
    let lora = LoraConfig::new(args.lora_rank, args.lora_alpha).with_dropout(0.05);
    let root = if [&args.model, &args.train, &args.test]
        .iter()
        .all(|p| p.is_some())
    {
        PathBuf::new()
    } else {
        bundled_root()?
    };
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| root.join(BUNDLED_MODEL));
    let train = args
        .train
        .clone()
        .unwrap_or_else(|| root.join(BUNDLED_TRAIN));
    let test = args.test.clone().unwrap_or_else(|| root.join(BUNDLED_TEST));
    let (quantize, format) = match args.bits {
        4 => (QuantizeSpec::nf4_decoder(), "NF4"),
        8 => (QuantizeSpec::int8_decoder(), "int8"),
        other => return Ok(usage(format!("--bits must be 4 or 8, got {other}"))),
    };
    let device = args.device.open()?;
    let mut b = Bundled::load_on(&model, &train, &test, lora, args.seed, quantize, &device)?;
    if let Some(n) = args.max_train_samples {
        b.train.truncate(n);
    }
    if b.train.is_empty() || b.test.is_empty() {
        eprintln!("error: the training and held-out files must both have documents");
        return Ok(ExitCode::from(2));
    }
    let mut cfg = b.run_config(
        args.epochs,
        args.learning_rate,
        args.eval_steps,
        args.max_eval_samples,
    );
    cfg.train.seed = args.seed;
    cfg.train.gradient_checkpointing = args.gradient_checkpointing;
    let eval_set = b.test[..b.test.len().min(args.max_eval_samples)].to_vec();
    eprintln!(
        "QLoRA: {format} decoder + LoRA r={} on {} layers ({} trainable parameters); {} training / {} held-out documents, {} steps",
        args.lora_rank,
        b.adapter.adapted_layers,
        b.adapter.trainable_params,
        b.train.len(),
        eval_set.len(),
        cfg.train.total_steps
    );
    let before = evaluate(&b.model, &b.enc, &eval_set, &cfg.generation)?;
    eprintln!("before (untrained adapter): {}", show(&before));
    let params = serde_json::json!({
        "run": cfg, "lora": b.lora, "model": model, "train": train, "test": test,
        "max_train_samples": args.max_train_samples, "bits": args.bits,
        "device": deepsynth::device::device_name(&device),
    });
    let tags = vec![KeyValue::new("deepsynth.command", "quickstart")];
    let trackers = trackers.insert(args.report.open(&args.output_dir, &params, tags)?);
    trackers.hub = hub.take();
    let per_epoch = b.train.len().div_ceil(cfg.batch_size) as u64;
    let outcome = trackers.with(|tracker| {
        run(
            &mut b.model,
            &b.lora,
            &b.enc,
            &b.train,
            &b.test,
            &cfg,
            &args.output_dir,
            tracker,
            None,
            &mut |l| {
                // Every evaluation, and a training line every 10 steps.
                let step = l
                    .strip_prefix("step ")
                    .and_then(|r| r.split(' ').next()?.parse::<u64>().ok());
                if step.is_none_or(|s| s % 10 == 0 || s == 1 || s % per_epoch == 0) {
                    eprintln!("{l}")
                }
            },
        )
    })?;
    let secs = start.elapsed().as_secs_f64();
    let after = outcome
        .evals
        .last()
        .cloned()
        .unwrap_or_else(|| before.clone());
    let m = |r: &EvalReport, k: &str| r.metrics.get(k).copied().unwrap_or(f64::NAN);
    eprintln!("after:  {}", show(&after));
    eprintln!(
        "held-out loss {:.4} -> {:.4} ({:+.4}); ROUGE-L {:.2} -> {:.2} ({:+.2} points); {secs:.0} s",
        m(&before, "loss"),
        m(&after, "loss"),
        m(&after, "loss") - m(&before, "loss"),
        100.0 * m(&before, "rougeL"),
        100.0 * m(&after, "rougeL"),
        100.0 * (m(&after, "rougeL") - m(&before, "rougeL"))
    );
    let settings = vec![
        ("model".into(), model.display().to_string()),
        (
            "documents".into(),
            format!("{} training, {} held-out", b.train.len(), eval_set.len()),
        ),
        (
            "adapter".into(),
            format!(
                "LoRA r={} alpha={} on {} {format} linears ({} parameters)",
                args.lora_rank,
                args.lora_alpha,
                b.adapter.adapted_layers,
                b.adapter.trainable_params
            ),
        ),
        (
            "steps".into(),
            format!(
                "{} of {} ({} epochs, batch {}){}",
                outcome.steps,
                cfg.train.total_steps,
                cfg.epochs,
                cfg.batch_size,
                if outcome.stopped_early {
                    ", stopped early"
                } else {
                    ""
                }
            ),
        ),
        ("wall time".into(), format!("{secs:.0} s")),
    ];
    let report = TrainingReport::from_run(
        "DeepSynth quickstart: QLoRA on the bundled tiny DeepSeek-OCR",
        settings,
        &before,
        &outcome,
        &eval_set,
        &b.renderer,
    );
    let path = args.output_dir.join("report.html");
    deepsynth::fsutil::atomic_write(&path, report.to_html()?.as_bytes())?;
    let summary = serde_json::json!({
        "before": before.metrics, "after": after.metrics, "best": outcome.best,
        "steps": outcome.steps, "stopped_early": outcome.stopped_early, "seconds": secs,
        "device": deepsynth::device::device_name(&device),
    });
    deepsynth::fsutil::atomic_write(
        &args.output_dir.join("quickstart.json"),
        serde_json::to_string_pretty(&summary)
            .expect("summary serialises")
            .as_bytes(),
    )?;
    eprintln!("report: {}", path.display());
    Ok(ExitCode::SUCCESS)
}
