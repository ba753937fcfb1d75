//! The Evaluator against the real peers on 2,070 varied pairs
//! (`tests/fixtures/metrics/eval_parity_pairs.jsonl`, made by `make_eval_parity.py` with
//! rouge-score 0.1.2, nltk 3.10.4, sacrebleu 2.6.0 and jiwer 4.0.0): counts exactly equal,
//! scores within 1e-9, per record and for the corpus.

use deepsynth::data::Pair;
use deepsynth::eval::{Bootstrap, EvalConfig, Evaluation, Evaluator, Metric};
use serde_json::Value;

const PAIRS: &str = include_str!("fixtures/metrics/eval_parity_pairs.jsonl");
const CORPUS: &str = include_str!("fixtures/metrics/eval_parity_corpus.json");
const TOL: f64 = 1e-9;

fn f(v: &Value) -> f64 {
    v.as_str()
        .map(|s| s.parse().expect("float repr"))
        .or_else(|| v.as_f64())
        .expect("number")
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= TOL || (got.is_nan() && want.is_nan()),
        "{what}: got {got}, peer {want}"
    );
}

fn records() -> Vec<Value> {
    PAIRS
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn evaluate(records: &[Value], stem: bool) -> Evaluation {
    let pairs: Vec<Pair> = records
        .iter()
        .map(|r| {
            Pair::new(
                r["id"].as_str().unwrap(),
                r["reference"].as_str().unwrap(),
                r["prediction"].as_str().unwrap(),
            )
        })
        .collect();
    let cfg = EvalConfig::default()
        .with_stemmer(stem)
        .with_bootstrap(Bootstrap {
            samples: 20,
            ..Bootstrap::default()
        });
    Evaluator::new(cfg).evaluate(&pairs)
}

#[test]
fn every_record_matches_the_peers() {
    let records = records();
    assert!(records.len() >= 2000);
    for stem in [false, true] {
        let ev = evaluate(&records, stem);
        let key = if stem { "rouge_stem" } else { "rouge" };
        for (rec, got) in records.iter().zip(&ev.records) {
            let id = rec["id"].as_str().unwrap();
            assert_eq!(got.id, id);
            for (t, score) in ev.rouge_types.iter().zip(&got.rouge) {
                let want = &rec[key][t.to_string()];
                close(score.precision, f(&want[0]), &format!("{id} {t} P ({key})"));
                close(score.recall, f(&want[1]), &format!("{id} {t} R ({key})"));
                close(score.fmeasure, f(&want[2]), &format!("{id} {t} F ({key})"));
            }
            let (stats, bleu) = got.bleu.unwrap();
            close(
                bleu,
                f(&rec["bleu"]["score"]),
                &format!("{id} sentence BLEU"),
            );
            let counts: Vec<u64> = serde_json::from_value(rec["bleu"]["counts"].clone()).unwrap();
            let totals: Vec<u64> = serde_json::from_value(rec["bleu"]["totals"].clone()).unwrap();
            assert_eq!(stats.counts.to_vec(), counts, "{id} BLEU counts");
            assert_eq!(stats.totals.to_vec(), totals, "{id} BLEU totals");
            assert_eq!(
                stats.sys_len,
                rec["bleu"]["sys_len"].as_u64().unwrap(),
                "{id}"
            );
            assert_eq!(
                stats.ref_len,
                rec["bleu"]["ref_len"].as_u64().unwrap(),
                "{id}"
            );
            close(
                got.chrf.as_ref().unwrap().1,
                f(&rec["chrf"]),
                &format!("{id} chrF"),
            );
            for (name, counts) in [("wer", got.wer.unwrap()), ("cer", got.cer.unwrap())] {
                let want = &rec[name];
                assert!(want.get("error").is_none(), "{id}: peer raised {want}");
                close(
                    counts.error_rate(),
                    f(&want["rate"]),
                    &format!("{id} {name}"),
                );
                let got4 = [
                    counts.hits,
                    counts.substitutions,
                    counts.deletions,
                    counts.insertions,
                ];
                let want4 = ["hits", "substitutions", "deletions", "insertions"]
                    .map(|k| want[k].as_u64().unwrap());
                assert_eq!(got4, want4, "{id} {name} hits/sub/del/ins");
            }
        }
    }
}

#[test]
fn corpus_scores_match_the_peers() {
    let records = records();
    let corpus: Value = serde_json::from_str(CORPUS).unwrap();
    assert_eq!(corpus["n"].as_u64().unwrap() as usize, records.len());
    for stem in [false, true] {
        let ev = evaluate(&records, stem);
        let key = if stem { "rouge_stem" } else { "rouge" };
        for (metric, t) in [
            (Metric::Rouge1, "rouge1"),
            (Metric::Rouge2, "rouge2"),
            (Metric::RougeL, "rougeL"),
            (Metric::RougeLsum, "rougeLsum"),
        ] {
            for (j, stat) in ["precision", "recall", "fmeasure"].iter().enumerate() {
                let got = ev.get(metric, stat).unwrap().value;
                close(
                    got,
                    f(&corpus["rouge_mean"][key][t][j]),
                    &format!("mean {t} {stat}"),
                );
            }
        }
        close(
            ev.get(Metric::Bleu, "corpus").unwrap().value,
            f(&corpus["bleu"]["score"]),
            "corpus BLEU",
        );
        close(
            ev.get(Metric::Chrf, "corpus").unwrap().value,
            f(&corpus["chrf"]),
            "corpus chrF",
        );
        close(
            ev.get(Metric::Wer, "micro").unwrap().value,
            f(&corpus["wer"]),
            "corpus WER",
        );
        close(
            ev.get(Metric::Cer, "micro").unwrap().value,
            f(&corpus["cer"]),
            "corpus CER",
        );
        for row in &ev.summary {
            assert!(row.low <= row.mid && row.mid <= row.high, "{row:?}");
            assert_eq!(row.n, records.len());
        }
    }
}

#[test]
fn bootstrap_intervals_are_reproducible_and_thread_independent() {
    let records = records();
    let sample: Vec<Value> = records.into_iter().take(300).collect();
    let a = evaluate(&sample, false);
    let b = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| evaluate(&sample, false));
    assert_eq!(a.summary, b.summary);
}
