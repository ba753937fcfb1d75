//! Rendering speed against PIL on the same 200 news-length documents, in one run.
//!
//! Both render DejaVu Sans 18 px on 1024x1024 grayscale pages (margin 32, same line pitch, greedy
//! word wrap by pixel width). Reports pages per CPU second in memory and with PNG encoding for
//! each, the ratios, and our wall-clock scaling over threads.
//!
//! `cargo bench --bench render_vs_pil` (PIL from `DEEPSYNTH_PYTHON`, else `python3`; install with `pip install -r environment/requirements-bench.txt`).

#[path = "common/cpu.rs"]
mod cpu;
#[path = "../tests/common/news.rs"]
mod news;

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use deepsynth::render::{
    BatchOptions, PngCompression, Preset, RenderCache, RenderConfig, Renderer,
};

const DOCS: usize = 200;
const WORDS: usize = 800;

fn main() {
    let docs: Vec<String> = (0..DOCS)
        .map(|i| news::news_text(WORDS, i as u64))
        .collect();
    let config = RenderConfig::preset(Preset::Base).paginated();
    let renderer = Renderer::new(config.clone()).expect("renderer");
    let rounds = 3;

    // Ours, one thread, in memory (best of rounds).
    let mut cache = RenderCache::new();
    let mut ours_mem = f64::INFINITY;
    let mut pages = 0;
    for _ in 0..rounds {
        let t = cpu::seconds();
        pages = 0;
        for d in &docs {
            pages += renderer
                .render_with(d, &mut cache)
                .expect("render")
                .pages
                .len();
        }
        ours_mem = ours_mem.min(cpu::seconds() - t);
    }
    // Ours, one thread, with PNG encoding, for each compression level.
    let mut png = Vec::new();
    for level in [
        PngCompression::Fast,
        PngCompression::Default,
        PngCompression::Best,
    ] {
        let mut best = f64::INFINITY;
        let mut bytes = 0usize;
        for _ in 0..rounds {
            let t = cpu::seconds();
            bytes = 0;
            for d in &docs {
                for p in renderer.render_with(d, &mut cache).expect("render").pages {
                    bytes += p.to_png(level).expect("png").len();
                }
            }
            best = best.min(cpu::seconds() - t);
        }
        png.push((level, best, bytes));
    }
    let (_, ours_png, png_bytes) = png[0];
    println!(
        "documents: {DOCS} x {WORDS} words, DejaVu Sans 18 px, 1024x1024 pages, line pitch {} px",
        renderer.line_pitch()
    );
    println!("ours      : {pages} pages; in memory {:.1} pages/CPU-s; with PNG {:.1} pages/CPU-s ({:.0} KiB/page)",
        pages as f64 / ours_mem, pages as f64 / ours_png, png_bytes as f64 / pages as f64 / 1024.0);
    for (level, secs, bytes) in &png {
        println!(
            "  PNG {level:?}: {:.1} pages/CPU-s, {:.0} KiB/page",
            pages as f64 / secs,
            *bytes as f64 / pages as f64 / 1024.0
        );
    }

    // Thread scaling (wall clock, in memory and with PNG).
    let max_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut base = (0.0, 0.0);
    for threads in (1..=max_threads).filter(|t| t.is_power_of_two() || *t == max_threads) {
        let opts = BatchOptions::default().with_threads(threads);
        let wall = |png: bool| {
            let mut best = f64::INFINITY;
            for _ in 0..rounds {
                let t = Instant::now();
                let out = renderer.render_batch(&docs, &opts).expect("pool");
                if png {
                    // Encode inside the pool as well, one task per document.
                    let _: Vec<usize> = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .expect("pool")
                        .install(|| {
                            use rayon::prelude::*;
                            out.into_par_iter()
                                .map(|r| {
                                    r.expect("render")
                                        .pages
                                        .iter()
                                        .map(|p| p.to_png(PngCompression::Fast).expect("png").len())
                                        .sum()
                                })
                                .collect()
                        });
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            pages as f64 / best
        };
        let (mem, png) = (wall(false), wall(true));
        if threads == 1 {
            base = (mem, png);
        }
        println!("threads {threads}: {mem:.1} pages/s in memory (x{:.2}), {png:.1} pages/s with PNG (x{:.2})", mem / base.0, png / base.1);
    }

    // PIL on the same documents.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("docs.jsonl");
    let mut f = std::fs::File::create(&path).expect("docs file");
    for d in &docs {
        writeln!(f, "{}", serde_json::json!({ "text": d })).expect("write docs");
    }
    drop(f);
    let out = Command::new(cpu::python())
        .args(["benches/pil_render.py", "--docs"])
        .arg(&path)
        .args([
            "--font",
            "fonts/DejaVuSans.ttf",
            "--size",
            "18",
            "--width",
            "1024",
            "--height",
            "1024",
            "--margin",
            "32",
            "--pitch",
        ])
        .arg(renderer.line_pitch().to_string())
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            println!(
                "PIL peer failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            println!(
                "(pip install -r environment/requirements-bench.txt, or set DEEPSYNTH_PYTHON)"
            );
            return;
        }
        Err(e) => {
            println!("PIL peer not run: {e}");
            return;
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("PIL JSON");
    let pil_pages = v["pages"].as_f64().unwrap_or(0.0);
    let pil_mem = pil_pages / v["cpu_s_memory"].as_f64().unwrap_or(f64::NAN);
    let pil_png =
        v["png_pages"].as_f64().unwrap_or(0.0) / v["cpu_s_png"].as_f64().unwrap_or(f64::NAN);
    println!("PIL {}: {pil_pages} pages; in memory {pil_mem:.1} pages/CPU-s; with PNG {pil_png:.1} pages/CPU-s ({:.0} KiB/page)",
        v["pil_version"].as_str().unwrap_or("?"), v["png_bytes"].as_f64().unwrap_or(0.0) / pil_pages / 1024.0);
    println!(
        "ratio ours/PIL: in memory x{:.1}, with PNG x{:.1}",
        pages as f64 / ours_mem / pil_mem,
        pages as f64 / ours_png / pil_png
    );
}
