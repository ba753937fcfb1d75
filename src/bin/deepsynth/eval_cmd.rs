//! `deepsynth eval`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use deepsynth::data::{load_pairs, PairFields};
use deepsynth::eval::{Bootstrap, EvalConfig, Evaluator, Metric, RougeTokenizer, Stemming};

/// Arguments of `deepsynth eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Pairs to score: a .jsonl file (one object per line) or a .parquet file.
    #[arg(long)]
    input: PathBuf,
    /// Metrics (comma-separated): rouge1, rouge2, rougeL, rougeLsum, bleu, chrf, wer, cer.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rouge1,rouge2,rougeL,rougeLsum,bleu,chrf,wer,cer"
    )]
    metrics: Vec<String>,
    /// Porter-stem ROUGE tokens (rouge-score's use_stemmer=True).
    #[arg(long)]
    stemmer: bool,
    /// ROUGE tokenizer: rouge-score (ASCII only, the default, as the peer) or unicode
    /// (any script; CJK per character; English stemming with --stemmer).
    #[arg(long, default_value = "rouge-score")]
    tokenizer: String,
    /// Field (column) with the reference text.
    #[arg(long, default_value = "reference")]
    reference_field: String,
    /// Field (column) with the prediction.
    #[arg(long, default_value = "prediction")]
    prediction_field: String,
    /// Field (column) with the record id.
    #[arg(long, default_value = "id")]
    id_field: String,
    /// Bootstrap resamples for the confidence intervals (0: none).
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Bootstrap seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write results: .json (summary + records) or .parquet (records; summary beside it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: EvalArgs) -> deepsynth::Result<ExitCode> {
    let mut metrics = Vec::new();
    for name in &args.metrics {
        match Metric::from_name(name) {
            Some(m) => metrics.push(m),
            None => {
                eprintln!(
                    "error: unknown metric `{name}` (expected one of: {})",
                    Metric::ALL.map(|m| m.name()).join(", ")
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    let tokenizer = match args.tokenizer.as_str() {
        "rouge-score" | "rouge_score" => RougeTokenizer::RougeScore { stem: args.stemmer },
        "unicode" => RougeTokenizer::Unicode {
            stem: if args.stemmer {
                Stemming::English
            } else {
                Stemming::Off
            },
        },
        other => {
            eprintln!("error: unknown tokenizer `{other}` (expected rouge-score or unicode)");
            return Ok(ExitCode::FAILURE);
        }
    };
    let fields = PairFields {
        reference: args.reference_field,
        prediction: args.prediction_field,
        id: args.id_field,
    };
    let loaded = load_pairs(&args.input, &fields)?;
    for bad in &loaded.bad {
        eprintln!(
            "skipped {}:{}: {}",
            args.input.display(),
            bad.line,
            bad.reason
        );
    }
    let config = EvalConfig::default()
        .with_metrics(&metrics)
        .with_rouge_tokenizer(tokenizer)
        .with_bootstrap(Bootstrap {
            samples: args.bootstrap,
            seed: args.seed,
            ..Bootstrap::default()
        });
    let evaluator = Evaluator::new(config);
    let start = std::time::Instant::now();
    let evaluation = match args.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map(|pool| pool.install(|| evaluator.evaluate(&loaded.pairs)))
            .unwrap_or_else(|_| evaluator.evaluate(&loaded.pairs)),
        None => evaluator.evaluate(&loaded.pairs),
    };
    let secs = start.elapsed().as_secs_f64();
    #[cfg(feature = "frames")]
    println!("{}", evaluation.summary_frame()?);
    #[cfg(not(feature = "frames"))]
    print!("{}", evaluation.summary_text());
    println!(
        "{} record(s) scored in {secs:.2}s ({:.0} records/s), {} skipped",
        loaded.pairs.len(),
        loaded.pairs.len() as f64 / secs.max(1e-9),
        loaded.bad.len()
    );
    if let Some(out) = &args.out {
        match out.extension().and_then(|e| e.to_str()) {
            Some("parquet") => evaluation.write_parquet(out)?,
            _ => evaluation.write_json(out)?,
        }
        println!("wrote {}", out.display());
    }
    if !loaded.bad.is_empty() {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
