//! Metric speed against the Python peers on the same pairs, in one run.
//!
//! Pairs: `tests/fixtures/metrics/eval_parity_pairs.jsonl` (2,000+ varied pairs made with the peers).
//! Reports records per CPU second for ROUGE (rouge1/2/L/Lsum, stemmer on), sentence BLEU, chrF,
//! WER and CER, single-threaded, for us and for rouge-score / sacrebleu / jiwer, the ratios, and
//! our multi-threaded throughput. `cargo bench --bench metrics_vs_peers` (peers from
//! `DEEPSYNTH_PYTHON`, else `python3`; install them with
//! `pip install -r environment/requirements-bench.txt`).

#[path = "common/cpu.rs"]
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

/// Records per CPU second of `f` over all pairs, repeated for at least `min_s` seconds.
fn rate(pairs: &[Pair], min_s: f64, mut f: impl FnMut(&Pair)) -> f64 {
    let (mut runs, mut spent) = (0usize, 0.0);
    while spent < min_s || runs == 0 {
        let t = cpu::seconds();
        pairs.iter().for_each(&mut f);
        spent += cpu::seconds() - t;
        runs += 1;
    }
    (pairs.len() * runs) as f64 / spent
}

fn main() {
    let pairs = load_pairs(std::path::Path::new(PAIRS), &PairFields::default())
        .expect("parity pairs")
        .pairs;
    let min_s = 2.0;
    let rouge = RougeScorer::new(
        &[
            RougeType::Rouge1,
            RougeType::Rouge2,
            RougeType::RougeL,
            RougeType::RougeLsum,
        ],
        true,
    );
    let bleu = Bleu::sentence();
    let chrf = Chrf::default();
    let mut wer = WerScorer::new();
    let ours = [
        (
            "rouge",
            rate(&pairs, min_s, |p| {
                std::hint::black_box(rouge.score(&p.reference, &p.prediction));
            }),
        ),
        (
            "bleu",
            rate(&pairs, min_s, |p| {
                std::hint::black_box(bleu.sentence_score(&p.prediction, &[&p.reference]));
            }),
        ),
        (
            "chrf",
            rate(&pairs, min_s, |p| {
                std::hint::black_box(chrf.sentence_score(&p.prediction, &[&p.reference]));
            }),
        ),
        (
            "wer",
            rate(&pairs, min_s, |p| {
                std::hint::black_box(wer.process_words(&p.reference, &p.prediction));
            }),
        ),
    ];
    let mut wer2 = WerScorer::new();
    let cer_rate = rate(&pairs, min_s, |p| {
        std::hint::black_box(wer2.process_characters(&p.reference, &p.prediction));
    });
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
    let cer_short = rate(&short, min_s, |p| {
        std::hint::black_box(wer2.process_characters(&p.reference, &p.prediction));
    });
    println!(
        "{} pairs from {PAIRS}; single thread, records per CPU second",
        pairs.len()
    );

    let out = Command::new(cpu::python())
        .args([
            "benches/metrics_peers.py",
            "--pairs",
            PAIRS,
            "--min-seconds",
            "2",
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
    let peer_names = [
        ("rouge", "rouge-score 0.1.2 (4 types, stemmer)"),
        ("bleu", "sacrebleu sentence BLEU"),
        ("chrf", "sacrebleu chrF"),
        ("wer", "jiwer WER"),
        ("cer", "jiwer CER"),
    ];
    for ((key, ours), (_, label)) in ours
        .iter()
        .copied()
        .chain([("cer", cer_rate)])
        .zip(peer_names)
    {
        match peers.as_ref().and_then(|p| p[key].as_f64()) {
            Some(theirs) => println!(
                "{label:<40} ours {ours:>12.0}  peer {theirs:>10.0}  ratio x{:.1}",
                ours / theirs
            ),
            None => println!("{label:<40} ours {ours:>12.0}"),
        }
    }

    let long = pairs.len() - short.len();
    match peers.as_ref().and_then(|p| p["cer_short"].as_f64()) {
        Some(theirs) => println!(
            "{:<40} ours {cer_short:>12.0}  peer {theirs:>10.0}  ratio x{:.1}  ({long} longer pairs left out)",
            format!("jiwer CER, pairs < {SHORT_CHARS} chars"),
            cer_short / theirs
        ),
        None => println!("jiwer CER, pairs < {SHORT_CHARS} chars ours {cer_short:>12.0}"),
    }

    // All metrics at once through the Evaluator, over threads (wall clock, bootstrap off).
    let cfg = EvalConfig::default()
        .with_stemmer(true)
        .with_bootstrap(deepsynth::eval::Bootstrap {
            samples: 0,
            ..Default::default()
        });
    let evaluator = Evaluator::new(cfg.with_metrics(&Metric::ALL));
    let max = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut base = 0.0;
    for threads in (1..=max).filter(|t| t.is_power_of_two() || *t == max) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            std::hint::black_box(pool.install(|| evaluator.evaluate(&pairs)));
            best = best.min(t.elapsed().as_secs_f64());
        }
        let r = pairs.len() as f64 / best;
        if threads == 1 {
            base = r;
        }
        println!(
            "all 8 metrics, {threads} thread(s): {r:.0} records/s (x{:.2})",
            r / base
        );
    }
}
