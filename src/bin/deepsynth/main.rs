//! `deepsynth`: the command line for long jobs.

mod common;
mod eval_cmd;
mod hub_args;
mod infer_cmd;
mod interrupt;
mod launch;
mod pretrain_cmd;
mod progress;
mod push_cmd;
mod quantize_cmd;
mod quickstart_cmd;
mod render_cmd;
mod report_to;
mod runs_cmd;
mod train_cmd;
mod wandb_cmd;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// DeepSynth: render documents to pages, fine-tune DeepSeek-OCR with QLoRA, evaluate, infer.
#[derive(Parser)]
#[command(name = "deepsynth", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render text documents to page images (PNG) with a render report.
    Render(render_cmd::RenderArgs),
    /// Score (reference, prediction) pairs: ROUGE, BLEU, chrF, WER, CER with intervals.
    Eval(eval_cmd::EvalArgs),
    /// Summarise page images or text documents with DeepSeek-OCR (+ a LoRA adapter).
    Infer(Box<infer_cmd::InferArgs>),
    /// Write a bitsandbytes 4-bit (NF4) or 8-bit (LLM.int8) copy of a dense checkpoint, loadable
    /// by transformers.
    Quantize(quantize_cmd::QuantizeArgs),
    /// Fine-tune the bundled tiny model on the bundled corpus; report before/after (HTML).
    Quickstart(Box<quickstart_cmd::QuickstartArgs>),
    /// Build the bundled tiny DeepSeek-OCR from nothing: tokenizer, random init, reading pages.
    Pretrain(Box<pretrain_cmd::PretrainArgs>),
    /// Fine-tune DeepSeek-OCR with (Q)LoRA to write summaries of rendered documents.
    Train(Box<train_cmd::TrainArgs>),
    /// The runs of a folder as one table: status, steps, wall time, best metrics, settings.
    Runs(runs_cmd::RunsArgs),
    /// Send a run folder's metrics to Weights & Biases (through its Python SDK).
    WandbSync(wandb_cmd::WandbSyncArgs),
    /// Publish a run's best adapter with a model card (or any folder) to the Hugging Face Hub.
    Push(push_cmd::PushArgs),
}

fn main() -> ExitCode {
    deepsynth::configure_threads();
    let matches = Cli::command().get_matches_from(common::dashed_flags(std::env::args_os()));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let given = common::Given::new(matches.subcommand().map(|(_, m)| m));
    let result = match cli.command {
        Command::Render(args) => render_cmd::run(args),
        Command::Eval(args) => eval_cmd::run(args),
        Command::Infer(args) => infer_cmd::run(*args),
        Command::Quantize(args) => quantize_cmd::run(args),
        Command::Quickstart(args) => quickstart_cmd::run_cmd(*args),
        Command::Pretrain(args) => pretrain_cmd::run(*args),
        Command::Train(args) => train_cmd::run_cmd(*args, given),
        Command::WandbSync(args) => wandb_cmd::run(args),
        Command::Runs(args) => runs_cmd::run(args),
        Command::Push(args) => push_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            let peer_failed = matches!(
                &e,
                deepsynth::Error::Train(t)
                    if matches!(**t, deepsynth::train::TrainError::Collective(_))
            );
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            if peer_failed {
                ExitCode::from(deepsynth::train::distributed::PEER_FAILED_STATUS)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
