//! Rendering speed against PIL on the same 200 news-length documents, in one run.
//!
//! Both render DejaVu Sans 18 px on 1024x1024 grayscale pages (margin 32, same line pitch, greedy
//! word wrap by pixel width), single-threaded, timed in process CPU seconds.
//!
//! Fair by construction (the same on both sides):
//! - warm-up and best-of: `DEEPSYNTH_BENCH_WARMUP` untimed passes (default 1), then the best of
//!   `DEEPSYNTH_BENCH_REPS` timed passes (default 3) over all documents;
//! - caches: cold (the headline) starts every timed pass with an empty layout cache (ours: a new
//!   `RenderCache`; PIL: an empty word-width dict); warm (labelled) keeps it across passes. Each
//!   side's loaded font (our `Renderer`, PIL's `ImageFont`) is kept, as an application keeps it;
//! - PNG at the same zlib level and the same kind of row filtering: ours
//!   `PngCompression::Default` (zlib level 6; adaptive filter chosen per row by the minimum sum of
//!   absolute values) against PIL's default `save` (`compress_level` 6; the same heuristic).
//!   What still differs, and cannot be set from either API: the deflate implementation (ours:
//!   flate2's backend, zlib-rs when polars' parquet feature is on as in the default build, else
//!   miniz_oxide; PIL: the zlib it was built with, printed below), the filters tried (ours: Sub,
//!   Up, Average, Paeth; PIL: None, Sub, Up, Paeth) and the zlib strategy (ours default, PIL
//!   `Z_FILTERED`). Sizes per page are printed next to the speeds;
//! - our fast level (`PngCompression::Fast`: fdeflate, adaptive filters) is reported separately,
//!   labelled, against PIL at `compress_level` 1.
//!
//! Our wall-clock scaling over threads follows (ours only; PNG at the headline level).
//!
//! `cargo bench --bench render_vs_pil` (PIL from `DEEPSYNTH_PYTHON`, else `python3`; install with
//! `pip install -r environment/requirements-bench.txt`).

#[path = "common/cpu.rs"]
#[allow(dead_code)]
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

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Best CPU seconds of `rounds` timed passes after `warmup` untimed ones, with the pages and PNG
/// bytes of the last pass. `png`: `None` renders only. `warm`: one cache for every pass.
fn measure(
    renderer: &Renderer,
    docs: &[String],
    png: Option<PngCompression>,
    warm: bool,
    (warmup, rounds): (usize, usize),
) -> (f64, usize, usize) {
    let mut cache = RenderCache::new();
    let pass = |cache: &mut RenderCache| {
        let (mut pages, mut bytes) = (0, 0);
        for d in docs {
            for p in renderer.render_with(d, cache).expect("render").pages {
                pages += 1;
                if let Some(level) = png {
                    bytes += p.to_png(level).expect("png").len();
                }
            }
        }
        (pages, bytes)
    };
    for _ in 0..warmup {
        if warm {
            pass(&mut cache);
        } else {
            pass(&mut RenderCache::new());
        }
    }
    let (mut best, mut pages, mut bytes) = (f64::INFINITY, 0, 0);
    for _ in 0..rounds {
        if !warm {
            cache = RenderCache::new();
        }
        let t = cpu::seconds();
        (pages, bytes) = pass(&mut cache);
        best = best.min(cpu::seconds() - t);
    }
    (best, pages, bytes)
}

fn main() {
    let docs: Vec<String> = (0..DOCS)
        .map(|i| news::news_text(WORDS, i as u64))
        .collect();
    let config = RenderConfig::preset(Preset::Base).paginated();
    let renderer = Renderer::new(config.clone()).expect("renderer");
    let runs = (
        env_usize("DEEPSYNTH_BENCH_WARMUP", 1),
        env_usize("DEEPSYNTH_BENCH_REPS", 3).max(1),
    );
    println!(
        "documents: {DOCS} x {WORDS} words, DejaVu Sans 18 px, 1024x1024 pages, line pitch {} px; one thread; {} warm-up + best of {} passes (CPU seconds), both sides",
        renderer.line_pitch(),
        runs.0,
        runs.1
    );

    // Ours.
    let rows: Vec<(&str, Option<PngCompression>, bool)> = vec![
        ("memory_cold", None, false),
        ("memory_warm", None, true),
        ("png_cold", Some(PngCompression::Default), false),
        ("png_warm", Some(PngCompression::Default), true),
        ("png_level1_cold", Some(PngCompression::Fast), false),
    ];
    let ours: Vec<(&str, f64, usize, usize)> = rows
        .iter()
        .map(|&(key, png, warm)| {
            let (s, pages, bytes) = measure(&renderer, &docs, png, warm, runs);
            (key, s, pages, bytes)
        })
        .collect();

    // PIL on the same documents, same settings.
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
            "--warmup",
            &runs.0.to_string(),
            "--rounds",
            &runs.1.to_string(),
            "--pitch",
        ])
        .arg(renderer.line_pitch().to_string())
        .output();
    let pil: Option<serde_json::Value> = match out {
        Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout).ok(),
        Ok(o) => {
            println!(
                "PIL peer failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            println!(
                "(pip install -r environment/requirements-bench.txt, or set DEEPSYNTH_PYTHON)"
            );
            None
        }
        Err(e) => {
            println!("PIL peer not run: {e}");
            None
        }
    };
    if let Some(v) = &pil {
        println!(
            "PIL {} (zlib {}, FreeType {})",
            v["pil_version"].as_str().unwrap_or("?"),
            v["zlib"].as_str().unwrap_or("?"),
            v["freetype"].as_str().unwrap_or("?")
        );
    }
    let labels = [
        ("memory_cold", "in memory, cold caches (headline)"),
        ("memory_warm", "in memory, warm caches"),
        (
            "png_cold",
            "+ PNG zlib level 6 (ours Default / PIL default), cold (headline)",
        ),
        ("png_warm", "+ PNG zlib level 6, warm caches"),
        (
            "png_level1_cold",
            "+ PNG fast: ours Fast (fdeflate) / PIL compress_level 1, cold",
        ),
    ];
    for ((key, secs, pages, bytes), (_, label)) in ours.iter().zip(labels) {
        let rate = *pages as f64 / secs;
        let kib = |b: f64, p: f64| {
            if b > 0.0 {
                format!(", {:.1} KiB/page", b / p / 1024.0)
            } else {
                String::new()
            }
        };
        let ours_txt = format!(
            "ours {rate:8.1} pages/CPU-s{}",
            kib(*bytes as f64, *pages as f64)
        );
        match pil.as_ref().map(|v| &v[*key]) {
            Some(p) if p.is_object() => {
                let pp = p["pages"].as_f64().unwrap_or(f64::NAN);
                let prate = pp / p["cpu_s"].as_f64().unwrap_or(f64::NAN);
                println!(
                    "{label:<66} {ours_txt}  PIL {prate:6.1} pages/CPU-s{}  ratio x{:.1}{}",
                    kib(p["png_bytes"].as_f64().unwrap_or(0.0), pp),
                    rate / prate,
                    if pp as usize != *pages {
                        format!("  (page counts differ: ours {pages}, PIL {pp})")
                    } else {
                        String::new()
                    }
                );
            }
            _ => println!("{label:<66} {ours_txt}"),
        }
    }

    // Thread scaling (ours, wall clock, in memory and with PNG at the headline level).
    let max_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pages = ours[0].2;
    let mut base = (0.0, 0.0);
    for threads in (1..=max_threads).filter(|t| t.is_power_of_two() || *t == max_threads) {
        let opts = BatchOptions::default().with_threads(threads);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let wall = |png: bool| {
            let mut best = f64::INFINITY;
            for round in 0..runs.0 + runs.1 {
                let t = Instant::now();
                let out = renderer.render_batch(&docs, &opts).expect("pool");
                if png {
                    // Encode inside the pool as well, one task per document.
                    let _: Vec<usize> = pool.install(|| {
                        use rayon::prelude::*;
                        out.into_par_iter()
                            .map(|r| {
                                r.expect("render")
                                    .pages
                                    .iter()
                                    .map(|p| p.to_png(PngCompression::Default).expect("png").len())
                                    .sum()
                            })
                            .collect()
                    });
                }
                if round >= runs.0 {
                    best = best.min(t.elapsed().as_secs_f64());
                }
            }
            pages as f64 / best
        };
        let (mem, png) = (wall(false), wall(true));
        if threads == 1 {
            base = (mem, png);
        }
        println!("ours, threads {threads}: {mem:.1} pages/s in memory (x{:.2}), {png:.1} pages/s with PNG level 6 (x{:.2})", mem / base.0, png / base.1);
    }
}
