//! Metric speed against the Python peers on the same pairs, in one run.
//!
//! Pairs: `tests/fixtures/metrics/eval_parity_pairs.jsonl` (2,000+ varied pairs made with the peers).
//! Reports records per CPU second for ROUGE (rouge1/2/L/Lsum, stemmer on), sentence BLEU, chrF,
//! WER and CER, single-threaded, for us and for rouge-score / sacrebleu / jiwer, the ratios, and
//! our multi-threaded throughput.
//!
//! Fair by construction (the same on both sides):
//! - `DEEPSYNTH_BENCH_WARMUP` untimed passes (default 1), then the best of `DEEPSYNTH_BENCH_REPS`
//!   timed passes over all pairs (default 3);
//! - cold (the headline): every pass starts with every cache empty. Ours: the ROUGE token
//!   interner with its Porter-stem cache and the WER/CER scratch live in thread-locals, so each
//!   cold pass runs on a new thread with new scorers (BLEU and chrF keep nothing between calls);
//!   the peers' caches (sacrebleu's tokenizer `lru_cache`s) are cleared before each pass. Warm
//!   (labelled): the caches are kept across passes on both sides (rouge-score, sacrebleu's chrF
//!   and jiwer have none, so their warm figure is their cold one).
//!
//! `cargo bench --bench metrics_vs_peers` (peers from `DEEPSYNTH_PYTHON`, else `python3`;
//! install them with `pip install -r environment/requirements-bench.txt`).

#[path = "common/cpu.rs"]
#[allow(dead_code)]
mod cpu;

use std::process::Command;
use std::time::Instant;

use deepsynth::data::{load_pairs, Pair, PairFields};
use deepsynth::eval::{
    Bleu, Chrf, EvalConfig, Evaluator, Metric, RougeScorer, RougeType, WerScorer,
};

const PAIRS: &str = "tests/fixtures/metrics/eval_parity_pairs.jsonl";
/// Pairs with both sides shorter than this many characters count as "typical" for CER.
const SHORT_CHARS: usize = 500;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Records per CPU second of the best of `rounds` timed passes over `pairs`, after `warmup`
/// untimed ones. Cold: every pass (warm-up ones too) on a new thread with a new scorer state,
/// so thread-local caches start empty. Warm: one state on this thread for every pass.
fn rate<S>(
    pairs: &[Pair],
    (warmup, rounds): (usize, usize),
    cold: bool,
    make: impl Fn() -> S + Sync,
    score: impl Fn(&mut S, &Pair) + Sync,
) -> f64 {
    let pass = |state: &mut S| {
        let t = cpu::thread_seconds();
        for p in pairs {
            score(state, p);
        }
        cpu::thread_seconds() - t
    };
    let mut warm_state = (!cold).then(&make);
    let mut best = f64::INFINITY;
    for i in 0..warmup + rounds {
        let secs = match warm_state.as_mut() {
            Some(state) => pass(state),
            None => std::thread::scope(|s| {
                s.spawn(|| pass(&mut make()))
                    .join()
                    .expect("scoring thread")
            }),
        };
        if i >= warmup {
            best = best.min(secs);
        }
    }
    pairs.len() as f64 / best
}

fn main() {
    let pairs = load_pairs(std::path::Path::new(PAIRS), &PairFields::default())
        .expect("parity pairs")
        .pairs;
    let runs = (
        env_usize("DEEPSYNTH_BENCH_WARMUP", 1),
        env_usize("DEEPSYNTH_BENCH_REPS", 3).max(1),
    );
    let types = [
        RougeType::Rouge1,
        RougeType::Rouge2,
        RougeType::RougeL,
        RougeType::RougeLsum,
    ];
    // CER without the few very long pairs, which dominate its time on both sides.
    let short: Vec<Pair> = pairs
        .iter()
        .filter(|p| {
            p.reference
                .chars()
                .count()
                .max(p.prediction.chars().count())
                < SHORT_CHARS
        })
        .cloned()
        .collect();
    let mut ours = Vec::new();
    for cold in [true, false] {
        let rouge = rate(
            &pairs,
            runs,
            cold,
            || RougeScorer::new(&types, true),
            |s, p| {
                std::hint::black_box(s.score(&p.reference, &p.prediction));
            },
        );
        let bleu = rate(&pairs, runs, cold, Bleu::sentence, |s, p| {
            std::hint::black_box(s.sentence_score(&p.prediction, &[&p.reference]));
        });
        let chrf = rate(&pairs, runs, cold, Chrf::default, |s, p| {
            std::hint::black_box(s.sentence_score(&p.prediction, &[&p.reference]));
        });
        let wer = rate(&pairs, runs, cold, WerScorer::new, |s, p| {
            std::hint::black_box(s.process_words(&p.reference, &p.prediction));
        });
        let cer = rate(&pairs, runs, cold, WerScorer::new, |s, p| {
            std::hint::black_box(s.process_characters(&p.reference, &p.prediction));
        });
        let cer_short = rate(&short, runs, cold, WerScorer::new, |s, p| {
            std::hint::black_box(s.process_characters(&p.reference, &p.prediction));
        });
        ours.push([
            ("rouge", rouge),
            ("bleu", bleu),
            ("chrf", chrf),
            ("wer", wer),
            ("cer", cer),
            ("cer_short", cer_short),
        ]);
    }
    println!(
        "{} pairs from {PAIRS}; single thread, records per CPU second; {} warm-up + best of {} passes, both sides",
        pairs.len(),
        runs.0,
        runs.1
    );

    let out = Command::new(cpu::python())
        .args([
            "benches/metrics_peers.py",
            "--pairs",
            PAIRS,
            "--warmup",
            &runs.0.to_string(),
            "--rounds",
            &runs.1.to_string(),
        ])
        .output();
    let peers: Option<serde_json::Value> = match out {
        Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout).ok(),
        Ok(o) => {
            println!(
                "peers failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            println!("peers not run: {e}");
            None
        }
    };
    if let Some(p) = &peers {
        let v = |k: &str| p["versions"][k].as_str().unwrap_or("?").to_string();
        println!(
            "peers: rouge-score {} (nltk {}), sacrebleu {}, jiwer {}",
            v("rouge-score"),
            v("nltk"),
            v("sacrebleu"),
            v("jiwer")
        );
    }
    let long = pairs.len() - short.len();
    let peer_names = [
        ("rouge", "ROUGE 1/2/L/Lsum + stemmer (rouge-score)"),
        ("bleu", "sentence BLEU (sacrebleu)"),
        ("chrf", "chrF (sacrebleu)"),
        ("wer", "WER (jiwer)"),
        ("cer", "CER (jiwer)"),
        ("cer_short", "CER, pairs < 500 chars (jiwer)"),
    ];
    for (i, state) in ["cold (headline)", "warm"].iter().enumerate() {
        println!("-- {state}");
        for ((key, r), (_, label)) in ours[i].iter().zip(peer_names) {
            let theirs = peers
                .as_ref()
                .and_then(|p| p[key][if i == 0 { "cold" } else { "warm" }].as_f64());
            let note = match peers.as_ref().map(|p| &p[key]["cached"]) {
                Some(serde_json::Value::Bool(false)) if i == 1 => {
                    " (peer keeps no cache: its cold pass)"
                }
                _ => "",
            };
            match theirs {
                Some(t) => println!(
                    "{label:<42} ours {r:>10.0}  peer {t:>9.0}  ratio x{:.1}{note}",
                    r / t
                ),
                None => println!("{label:<42} ours {r:>10.0}"),
            }
        }
    }
    println!("({long} pairs of 500+ characters left out of the short CER row)");

    // All metrics at once through the Evaluator, over threads (ours; wall clock, bootstrap off).
    // Cold: a new pool (new threads, empty thread-local caches) and a new evaluator per pass.
    let cfg = EvalConfig::default()
        .with_stemmer(true)
        .with_bootstrap(deepsynth::eval::Bootstrap {
            samples: 0,
            ..Default::default()
        })
        .with_metrics(&Metric::ALL);
    let max = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut base = (0.0, 0.0);
    for threads in (1..=max).filter(|t| t.is_power_of_two() || *t == max) {
        let pool = || {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
        };
        let mut rates = [0.0; 2];
        for (k, cold) in [true, false].into_iter().enumerate() {
            let warm_pool = pool();
            let warm_eval = Evaluator::new(cfg.clone());
            let mut best = f64::INFINITY;
            for i in 0..runs.0 + runs.1 {
                let fresh;
                let (p, e) = if cold {
                    fresh = (pool(), Evaluator::new(cfg.clone()));
                    (&fresh.0, &fresh.1)
                } else {
                    (&warm_pool, &warm_eval)
                };
                let t = Instant::now();
                std::hint::black_box(p.install(|| e.evaluate(&pairs)));
                if i >= runs.0 {
                    best = best.min(t.elapsed().as_secs_f64());
                }
            }
            rates[k] = pairs.len() as f64 / best;
        }
        if threads == 1 {
            base = (rates[0], rates[1]);
        }
        println!(
            "ours, all 8 metrics, {threads} thread(s): cold {:.0} records/s (x{:.2}), warm {:.0} records/s (x{:.2})",
            rates[0],
            rates[0] / base.0,
            rates[1],
            rates[1] / base.1
        );
    }
}
