//! `deepsynth infer`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use deepsynth::data::{load_documents, DocumentSource, ImageMode, OnOverflow};
use deepsynth::infer::{EarlyStopping, GenerationConfig, LoadOptions, NeverTag, Summarizer};
use deepsynth::prelude::*;
use deepsynth::train::distributed::{gather_strided, Collective};

use crate::common::{parse_dtype, usage, DeviceArg};
use crate::launch::{LaunchArgs, Role};
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
    /// Sample the next token instead of taking the most likely one (the `sampling` preset
    /// turns it on).
    #[arg(long)]
    do_sample: bool,
    /// Sampling temperature (needs sampling: --do-sample or --preset sampling).
    #[arg(long)]
    temperature: Option<f64>,
    /// Top-k filter for sampling (0 = off; needs sampling).
    #[arg(long)]
    top_k: Option<usize>,
    /// Top-p (nucleus) filter for sampling (needs sampling).
    #[arg(long)]
    top_p: Option<f64>,
    /// Beams (1 = no beam search).
    #[arg(long)]
    num_beams: Option<usize>,
    /// Beam length penalty (needs beam search).
    #[arg(long)]
    length_penalty: Option<f64>,
    /// When beam search stops: true, false or never (transformers' meaning; needs beam search).
    #[arg(long)]
    early_stopping: Option<String>,
    /// Repetition penalty (> 1 discourages repeats).
    #[arg(long)]
    repetition_penalty: Option<f64>,
    /// Forbid repeating n-grams of this size (0 = off).
    #[arg(long)]
    no_repeat_ngram_size: Option<usize>,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Vision mode: auto (base; documents too long for its page on a gundam page; ocr2 for
    /// DeepSeek-OCR 2 models), tiny, small, base, large, gundam, a square view size in pixels
    /// (e.g. 256), ocr2 (DeepSeek-OCR 2's 1024 view + 768 tiles) or ocr2:G/T (its crop mode
    /// with a G px view and T px tiles).
    #[arg(long, default_value = "auto")]
    mode: String,
    /// Render preset for text inputs (auto: the page the mode reads; or tiny, small, base,
    /// large, gundam, deepsynth).
    #[arg(long, default_value = "auto")]
    render_preset: String,
    /// A text that does not fit on one page: truncate (keep the first page and report
    /// `truncated_chars`), skip (report it as failed) or error (stop).
    #[arg(long, default_value = "truncate")]
    on_overflow: String,
    /// Instruction after the image in the prompt (`<image>\n` + instruction).
    #[arg(long, default_value = "Summarize this document.")]
    instruction: String,
    /// The whole prompt instead (must contain one `<image>`); overrides --instruction.
    #[arg(long)]
    prompt: Option<String>,
    /// Compute dtype: f32, bf16, f16. Frozen weights and products take it; LoRA matrices and
    /// optimiser moments stay f32, softmax, norms and the loss accumulate in f32 (PEFT +
    /// bitsandbytes with `compute_dtype`).
    #[arg(long, default_value = "f32", alias = "compute-dtype")]
    dtype: String,
    #[command(flatten)]
    device: DeviceArg,
    /// Quantise the decoder to NF4 (4-bit) while loading.
    #[arg(long)]
    load_in_4bit: bool,
    /// Never touch the network (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// Data parallel (--nproc-per-node or the torchrun environment): rank r summarises inputs
    /// r, r + N, ...; rank 0 writes one merged output in input order.
    #[command(flatten)]
    launch: LaunchArgs,
}

/// The generation settings; options that would do nothing with the chosen decoding (sampling
/// options without sampling, beam options without beams) are errors.
fn generation(args: &InferArgs) -> Result<GenerationConfig, String> {
    let mut g = GenerationConfig::preset(&args.preset).map_err(|e| e.to_string())?;
    if let Some(v) = args.max_new_tokens {
        g.max_new_tokens = v;
    }
    if let Some(v) = args.min_new_tokens {
        g.min_new_tokens = v;
    }
    g.do_sample |= args.do_sample;
    if !g.do_sample {
        for (flag, given) in [
            ("--temperature", args.temperature.is_some()),
            ("--top-k", args.top_k.is_some()),
            ("--top-p", args.top_p.is_some()),
        ] {
            if given {
                return Err(format!(
                    "{flag} only applies to sampling: add --do-sample or use --preset sampling \
                     (preset `{}` decodes without sampling)",
                    args.preset
                ));
            }
        }
    }
    if let Some(v) = args.temperature {
        g.temperature = v;
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
    if g.num_beams <= 1 {
        for (flag, given) in [
            ("--length-penalty", args.length_penalty.is_some()),
            ("--early-stopping", args.early_stopping.is_some()),
        ] {
            if given {
                return Err(format!(
                    "{flag} only applies to beam search: add --num-beams N (N > 1) or use \
                     --preset beam4"
                ));
            }
        }
    }
    if let Some(v) = args.length_penalty {
        g.length_penalty = v;
    }
    if let Some(v) = &args.early_stopping {
        g.early_stopping = match v.as_str() {
            "true" => EarlyStopping::Bool(true),
            "false" => EarlyStopping::Bool(false),
            "never" => EarlyStopping::Never(NeverTag::Never),
            other => {
                return Err(format!(
                    "unknown --early-stopping `{other}` (valid: true, false, never)"
                ))
            }
        };
    }
    if let Some(v) = args.repetition_penalty {
        g.repetition_penalty = v;
    }
    if let Some(v) = args.no_repeat_ngram_size {
        g.no_repeat_ngram_size = v;
    }
    g.seed = args.seed;
    g.validate().map_err(|e| e.to_string())?;
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
    let g = match generation(&args) {
        Ok(g) => g,
        Err(msg) => return Ok(usage(msg)),
    };
    let on_overflow = match OnOverflow::from_name(&args.on_overflow) {
        Ok(p) => p,
        Err(e) => return Ok(usage(format!("--on-overflow: {e}"))),
    };
    let group = match crate::launch::start(&args.launch)? {
        Role::Launched(code) => return Ok(code),
        Role::Rank(_, group) => group,
    };
    let (rank, world) = group
        .as_ref()
        .map_or((0, 1), |g| (g.rank(), g.world_size()));
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
    opts.device = args.device.device;
    opts.load_in_4bit = args.load_in_4bit;
    opts.offline = args.offline;
    opts.auto_mode = args.mode == "auto";
    if !opts.auto_mode {
        (opts.mode, opts.long_mode) = (ImageMode::from_name(&args.mode)?, None);
    }
    opts.render = match args.render_preset.as_str() {
        "auto" => None,
        name => Some(Preset::from_name(name)?),
    };
    opts.on_overflow = on_overflow;
    opts.generation = g;
    let mut summarizer = Summarizer::load(&opts)?.with_instruction(&args.instruction);
    if let Some(p) = &args.prompt {
        summarizer = summarizer.with_prompt(p.clone());
    }
    // One output line per input, and whether it failed.
    let mut lines: Vec<(bool, String)> = Vec::new();
    let progress = Progress::new("infer");
    let mine: Vec<(usize, &Item)> = items.iter().enumerate().skip(rank).step_by(world).collect();
    for (done, &(_, item)) in mine.iter().enumerate() {
        let (id, result) = match item {
            Item::Image(p) => (p.display().to_string(), summarizer.summarize_file(p)),
            Item::Text { id, text } => (id.clone(), summarizer.summarize_text(text)),
        };
        let (failed, line) = match result {
            Ok(s) => {
                if s.truncated_chars > 0 {
                    eprintln!(
                        "warning: {id}: the page shows {} characters; {} were left off \
                         (--on-overflow truncate)",
                        s.shown_chars.unwrap_or(0),
                        s.truncated_chars
                    );
                }
                let line = serde_json::json!({
                    "id": id, "summary": s.text, "truncated_chars": s.truncated_chars,
                    "result": s,
                });
                (false, line)
            }
            Err(deepsynth::infer::InferError::Data(
                e @ deepsynth::data::DataError::Overflow { .. },
            )) if on_overflow == OnOverflow::Error => {
                // --on-overflow error: stop at the first document that does not fit.
                return Ok(usage(format!("{id}: {e}")));
            }
            Err(e) => {
                eprintln!("error: {id}: {e}");
                (true, serde_json::json!({"id": id, "error": e.to_string()}))
            }
        };
        lines.push((failed, line.to_string()));
        progress.update(done + 1, mine.len());
    }
    if let Some(g) = &group {
        lines = gather_strided(g.as_ref(), &lines, items.len(), "output lines")?;
        if g.rank() != 0 {
            // Rank 0 writes the merged output.
            return Ok(ExitCode::SUCCESS);
        }
    }
    let failed = lines.iter().filter(|(f, _)| *f).count();
    let lines: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
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
