//! `deepsynth infer`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use candle_core::DType;
use clap::Args;
use deepsynth::data::{load_documents, DocumentSource, ImageMode};
use deepsynth::infer::{GenerationConfig, LoadOptions, Summarizer};
use deepsynth::prelude::*;

use crate::progress::Progress;

/// Arguments of `deepsynth infer`.
#[derive(Args, Debug)]
pub struct InferArgs {
    /// A Hub model id (`org/name[@revision]`) or a local folder with config.json,
    /// tokenizer.json and safetensors weights.
    #[arg(long)]
    model: String,
    /// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// A tokenizer.json to use instead of the model's.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Image files (.png/.jpg), text documents (.txt/.md/.jsonl, rendered first) or a folder.
    #[arg(long)]
    input: PathBuf,
    /// Output JSONL (one object per input); stdout when absent.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Generation preset: greedy, beam4, sampling.
    #[arg(long, default_value = "greedy")]
    preset: String,
    /// Most new tokens.
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Fewest new tokens before EOS is allowed.
    #[arg(long)]
    min_new_tokens: Option<usize>,
    /// Sampling temperature (implies sampling).
    #[arg(long)]
    temperature: Option<f64>,
    /// Top-k filter for sampling (0 = off).
    #[arg(long)]
    top_k: Option<usize>,
    /// Top-p (nucleus) filter for sampling.
    #[arg(long)]
    top_p: Option<f64>,
    /// Beams (1 = no beam search).
    #[arg(long)]
    num_beams: Option<usize>,
    /// Beam length penalty.
    #[arg(long)]
    length_penalty: Option<f64>,
    /// Repetition penalty (> 1 discourages repeats).
    #[arg(long)]
    repetition_penalty: Option<f64>,
    /// Forbid repeating n-grams of this size (0 = off).
    #[arg(long)]
    no_repeat_ngram_size: Option<usize>,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Vision mode: tiny, small, base, large, gundam, or a square view size in pixels (e.g. 256).
    #[arg(long, default_value = "base")]
    mode: String,
    /// Render preset for text inputs.
    #[arg(long, default_value = "base")]
    render_preset: String,
    /// Instruction after the image in the prompt (`<image>\n` + instruction).
    #[arg(long, default_value = "Summarize this document.")]
    instruction: String,
    /// The whole prompt instead (must contain one `<image>`); overrides --instruction.
    #[arg(long)]
    prompt: Option<String>,
    /// Compute dtype: f32, bf16, f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Quantise the decoder to NF4 (4-bit) while loading.
    #[arg(long)]
    load_in_4bit: bool,
    /// Never touch the network (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
}

/// Parses a dtype name.
pub fn parse_dtype(name: &str) -> deepsynth::Result<DType> {
    match name {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        other => Err(deepsynth::model::ModelError::Input {
            what: "--dtype".into(),
            reason: format!("unknown dtype `{other}` (f32, bf16, f16)"),
        }
        .into()),
    }
}

fn generation(args: &InferArgs) -> deepsynth::Result<GenerationConfig> {
    let mut g = GenerationConfig::preset(&args.preset)?;
    if let Some(v) = args.max_new_tokens {
        g.max_new_tokens = v;
    }
    if let Some(v) = args.min_new_tokens {
        g.min_new_tokens = v;
    }
    if let Some(v) = args.temperature {
        g.temperature = v;
        g.do_sample = true;
    }
    if let Some(v) = args.top_k {
        g.top_k = v;
    }
    if let Some(v) = args.top_p {
        g.top_p = v;
    }
    if let Some(v) = args.num_beams {
        g.num_beams = v;
    }
    if let Some(v) = args.length_penalty {
        g.length_penalty = v;
    }
    if let Some(v) = args.repetition_penalty {
        g.repetition_penalty = v;
    }
    if let Some(v) = args.no_repeat_ngram_size {
        g.no_repeat_ngram_size = v;
    }
    g.seed = args.seed;
    g.validate()?;
    Ok(g)
}

enum Item {
    Image(PathBuf),
    Text { id: String, text: String },
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

fn collect(input: &Path) -> deepsynth::Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut text_paths = Vec::new();
    if input.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(input)
            .map_err(|e| deepsynth::error::IoError::new("read folder", input, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if is_image(&p) {
                items.push(Item::Image(p));
            } else if p.is_file() {
                text_paths.push(p);
            }
        }
    } else if is_image(input) {
        items.push(Item::Image(input.to_path_buf()));
    } else {
        text_paths.push(input.to_path_buf());
    }
    for p in text_paths {
        match load_documents(&p, &DocumentSource::default()) {
            Ok(docs) => items.extend(docs.into_iter().map(|d| Item::Text {
                id: d.id,
                text: d.text,
            })),
            Err(deepsynth::data::DataError::UnsupportedFormat { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(items)
}

pub fn run(args: InferArgs) -> deepsynth::Result<ExitCode> {
    let g = generation(&args)?;
    let items = collect(&args.input)?;
    if items.is_empty() {
        eprintln!(
            "error: no image or document found in {}",
            args.input.display()
        );
        return Ok(ExitCode::from(2));
    }
    let mut opts = LoadOptions::new(&args.model);
    opts.adapter = args.adapter.clone();
    opts.tokenizer = args.tokenizer.clone();
    opts.dtype = parse_dtype(&args.dtype)?;
    opts.load_in_4bit = args.load_in_4bit;
    opts.offline = args.offline;
    opts.mode = ImageMode::from_name(&args.mode)?;
    opts.render = Preset::from_name(&args.render_preset)?;
    opts.generation = g;
    let mut summarizer = Summarizer::load(&opts)?.with_instruction(&args.instruction);
    if let Some(p) = &args.prompt {
        summarizer = summarizer.with_prompt(p.clone());
    }
    let mut lines = Vec::new();
    let progress = Progress::new("infer");
    let mut failed = 0;
    for (i, item) in items.iter().enumerate() {
        let (id, result) = match item {
            Item::Image(p) => (p.display().to_string(), summarizer.summarize_file(p)),
            Item::Text { id, text } => (id.clone(), summarizer.summarize_text(text)),
        };
        let line = match result {
            Ok(s) => serde_json::json!({"id": id, "summary": s.text, "result": s}),
            Err(e) => {
                failed += 1;
                eprintln!("error: {id}: {e}");
                serde_json::json!({"id": id, "error": e.to_string()})
            }
        };
        lines.push(line.to_string());
        progress.update(i + 1, items.len());
    }
    let body = lines.join("\n") + "\n";
    match &args.out {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                deepsynth::fsutil::create_dir_all(dir)?;
            }
            deepsynth::fsutil::atomic_write(path, body.as_bytes())?
        }
        None => {
            let _ = std::io::stdout().write_all(body.as_bytes());
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
