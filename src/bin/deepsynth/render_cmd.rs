//! `deepsynth render`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use deepsynth::prelude::*;
use deepsynth::render::Margins;

use crate::progress::Progress;

/// Arguments of `deepsynth render`.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// A .txt/.md file, a .jsonl file (one {"id", "text"} object per line), or a folder of them.
    #[arg(long, default_value = "examples/documents")]
    input: PathBuf,
    /// Output folder for `<id>-pNNN.png` pages and `report.jsonl`.
    #[arg(long, default_value = "out/render")]
    out: PathBuf,
    /// Page preset: tiny, small, base, large, gundam, deepsynth.
    #[arg(long, default_value = "base")]
    preset: String,
    /// Fixed-size pages instead of pages that grow to fit (up to the preset's height).
    #[arg(long)]
    paginate: bool,
    /// Fail a document if any character has no glyph in the font chain.
    #[arg(long)]
    strict: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Font size in pixels per em (default: the preset's).
    #[arg(long)]
    font_size: Option<f32>,
    /// Margin in pixels on every side (default: the preset's).
    #[arg(long)]
    margin: Option<u32>,
    /// Line spacing multiplier.
    #[arg(long)]
    line_spacing: Option<f32>,
    /// A font file (TTF/OTF) to put in front of the bundled fallback chain.
    #[arg(long)]
    font: Option<PathBuf>,
    /// JSONL field holding the text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// JSONL field holding the document id.
    #[arg(long, default_value = "id")]
    id_field: String,
    /// PNG compression: fast, default or best.
    #[arg(long, default_value = "fast")]
    compression: String,
}

pub fn run(args: RenderArgs) -> deepsynth::Result<ExitCode> {
    let mut config = RenderConfig::preset(Preset::from_name(&args.preset)?);
    if args.paginate {
        config = config.paginated();
    }
    if args.strict {
        config = config.strict();
    }
    if let Some(px) = args.font_size {
        config = config.with_font_size(px);
    }
    if let Some(m) = args.margin {
        config = config.with_margins(Margins::uniform(m));
    }
    if let Some(s) = args.line_spacing {
        config = config.with_line_spacing(s);
    }
    let mut chain = FontChain::bundled()?;
    if let Some(font) = &args.font {
        chain = chain.with_primary(ChainFont::from_file(font)?)?;
    }
    let compression = match args.compression.as_str() {
        "fast" => PngCompression::Fast,
        "default" => PngCompression::Default,
        "best" => PngCompression::Best,
        other => {
            return Err(deepsynth::render::RenderError::InvalidConfig {
                field: "compression",
                reason: format!("`{other}` is not fast, default or best"),
            }
            .into())
        }
    };
    let renderer = Renderer::with_fonts(config, chain)?;
    let source = DocumentSource {
        text_field: args.text_field,
        id_field: args.id_field,
    };
    let docs = load_documents(&args.input, &source)?;
    let mut options = BatchOptions::default();
    options.threads = args.threads;
    options.compression = compression;
    let progress = Progress::new("render");
    let start = std::time::Instant::now();
    let summary =
        renderer.render_to_dir(&docs, &args.out, &options, &|d, t| progress.update(d, t))?;
    let secs = start.elapsed().as_secs_f64();
    let missing: usize = summary
        .documents
        .iter()
        .filter_map(|d| d.report.as_ref())
        .map(|r| r.missing_count())
        .sum();
    println!(
        "rendered {} document(s) to {} page(s) in {secs:.2}s ({:.1} pages/s) -> {}",
        summary.documents.len() - summary.failed,
        summary.pages,
        summary.pages as f64 / secs.max(1e-9),
        args.out.display()
    );
    println!("report: {}", summary.report_path.display());
    for d in &summary.documents {
        if let Some(r) = d.report.as_ref().filter(|r| !r.is_complete()) {
            println!(
                "  {}: {} character(s) without a glyph: {}",
                d.id,
                r.missing_count(),
                r.missing_summary()
            );
        }
    }
    if missing > 0 {
        println!(
            "{missing} character(s) had no glyph and were drawn as U+FFFD (use --strict to fail)"
        );
    }
    if summary.failed > 0 {
        for d in summary.documents.iter().filter(|d| d.error.is_some()) {
            eprintln!("failed: {}: {}", d.id, d.error.as_deref().unwrap_or(""));
        }
        eprintln!(
            "{} of {} document(s) failed",
            summary.failed,
            summary.documents.len()
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
