//! `deepsynth quantize`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use deepsynth::quant::hf::quantize_checkpoint;
use deepsynth::weights::{QuantKind, QuantizeSpec};

/// Arguments of `deepsynth quantize`.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// A dense checkpoint folder (config.json + safetensors).
    #[arg(long)]
    input: PathBuf,
    /// Output folder for the bitsandbytes 4-bit (or 8-bit) checkpoint.
    #[arg(long)]
    out: PathBuf,
    /// 4: NF4 (`Linear4bit`, `load_in_4bit`); 8: LLM.int8 (`Linear8bitLt`, `load_in_8bit`).
    #[arg(long, default_value_t = 4)]
    bits: u8,
    /// NF4 block size (a power of two in 32..=4096).
    #[arg(long, default_value_t = 64)]
    blocksize: usize,
    /// Skip double quantisation of the block scales.
    #[arg(long)]
    no_double_quant: bool,
    /// Key prefixes of the linear layers to quantise.
    #[arg(long, value_delimiter = ',', default_value = "model.layers.")]
    include: Vec<String>,
    /// Sum each double-quantisation offset as torch does on this many threads (the
    /// `torch.get_num_threads()` of the bitsandbytes run to reproduce; it matters only for
    /// layers of 32,768 blocks or more). Default: torch's own default (`MKL_NUM_THREADS`,
    /// `OMP_NUM_THREADS`, else the physical cores).
    #[arg(long)]
    torch_threads: Option<usize>,
}

pub fn run(args: QuantizeArgs) -> deepsynth::Result<ExitCode> {
    let spec = QuantizeSpec {
        kind: if args.bits == 8 {
            QuantKind::Int8
        } else {
            QuantKind::Nf4
        },
        blocksize: args.blocksize,
        double_quant: !args.no_double_quant,
        include: args.include.clone(),
        skip: vec!["lm_head".into()],
        compact_frozen: false,
    };
    if args.bits != 4 && args.bits != 8 {
        eprintln!("error: --bits must be 4 or 8, got {}", args.bits);
        return Ok(ExitCode::from(2));
    }
    if !(32..=4096).contains(&spec.blocksize) || !spec.blocksize.is_power_of_two() {
        eprintln!(
            "error: --blocksize {} must be a power of two in 32..=4096",
            spec.blocksize
        );
        return Ok(ExitCode::from(2));
    }
    if args.torch_threads == Some(0) {
        eprintln!("error: --torch-threads must be at least 1");
        return Ok(ExitCode::from(2));
    }
    let threads = args
        .torch_threads
        .unwrap_or_else(deepsynth::quant::torch_reduce::default_threads);
    let n = quantize_checkpoint(&args.input, &args.out, &spec, threads)?;
    // A DeepSeek-OCR folder gets the real checkpoint's model_type, architectures and auto_map
    // (other checkpoints keep their config as it was).
    let cfg_path = args.out.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| deepsynth::error::IoError::new("read", &cfg_path, e))?;
    if deepsynth::model::Config::from_json_str(&text).is_ok() {
        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text) {
            deepsynth::model::config::add_hf_identity(&mut v);
            let text = serde_json::to_string_pretty(&v).expect("config serialises");
            deepsynth::fsutil::atomic_write(&cfg_path, text.as_bytes())?;
        }
    }
    if spec.kind == QuantKind::Int8 {
        eprintln!(
            "quantised {n} linear layers to int8 (LLM.int8) into {}",
            args.out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "quantised {n} linear layers to NF4 into {}{}",
        args.out.display(),
        if spec.double_quant {
            format!(" (double-quantisation offsets summed as torch does on {threads} threads)")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
