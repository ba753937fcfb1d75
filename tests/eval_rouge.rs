//! rouge-score 0.1.2 parity: tokenizer and scores against
//! `fixtures/metrics/metric-edge-cases.json` (keys `rouge_tokenize`, `rouge_score`) and
//! `fixtures/metrics/rouge_goldens.json` (made by `make_rouge_goldens.py`).

use deepsynth::eval::{RougeScorer, RougeTokenizer, RougeType, Stemming};
use serde_json::Value;

/// Score tolerance for `metric-edge-cases.json`, whose floats are JSON numbers: serde_json's
/// default float parser can be 1 ulp off. `rouge_goldens.json` stores Python `repr()`
/// strings instead, and those are compared bit for bit.
const TOL: f64 = 1e-12;

fn edge() -> Value {
    serde_json::from_str(include_str!("fixtures/metrics/metric-edge-cases.json")).unwrap()
}

fn goldens() -> Value {
    serde_json::from_str(include_str!("fixtures/metrics/rouge_goldens.json")).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn check_tokenize(cases: &[Value]) -> usize {
    for case in cases {
        let text = case["text"].as_str().unwrap();
        for (key, stem) in [("nostem", false), ("stem", true)] {
            let got = RougeTokenizer::RougeScore { stem }.tokenize(text);
            assert_eq!(got, strings(&case[key]), "{key} tokens of {text:?}");
        }
    }
    cases.len()
}

#[test]
fn tokenizer_matches_spec_goldens() {
    assert_eq!(
        check_tokenize(edge()["rouge_tokenize"].as_array().unwrap()),
        8
    );
}

#[test]
fn tokenizer_matches_generated_goldens() {
    assert!(check_tokenize(goldens()["tokenize"].as_array().unwrap()) >= 300);
}

/// Every code point: only those Python lowercases to something with `[a-z0-9]` (listed by
/// `make_rouge_goldens.py`) may produce tokens, and exactly the ones Python's would.
#[test]
fn tokenizer_lowercases_every_code_point_like_python() {
    let g = goldens();
    let table = g["lower_to_ascii"].as_object().unwrap();
    assert_eq!(table.len(), 2, "U+0130 and U+212A");
    let tok = RougeTokenizer::RougeScore { stem: false };
    let mut text = String::new();
    for c in (0x80u32..=0x10FFFF).filter_map(char::from_u32) {
        text.clear();
        text.push('a');
        text.push(c);
        text.push('b');
        let want: Vec<String> = match table.get(&(c as u32).to_string()) {
            None => vec!["a".into(), "b".into()],
            Some(lower) => {
                let lowered: String = std::iter::once('a')
                    .chain(
                        lower
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|x| char::from_u32(x.as_u64().unwrap() as u32).unwrap()),
                    )
                    .chain(std::iter::once('b'))
                    .collect();
                lowered
                    .split(|ch: char| !(ch.is_ascii_lowercase() || ch.is_ascii_digit()))
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
        };
        assert_eq!(tok.tokenize(&text), want, "U+{:04X}", c as u32);
    }
}

fn close(got: f64, want: &Value, what: &str) {
    let want = want.as_f64().unwrap();
    assert!(
        (got - want).abs() <= TOL,
        "{what}: got {got:?}, rouge-score {want:?}"
    );
}

#[test]
fn scores_match_spec_goldens() {
    let types = [
        RougeType::Rouge1,
        RougeType::Rouge2,
        RougeType::RougeL,
        RougeType::RougeLsum,
    ];
    let cases = edge()["rouge_score"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 10);
    for case in &cases {
        let (t, p) = (
            case["target"].as_str().unwrap(),
            case["prediction"].as_str().unwrap(),
        );
        for (key, stem) in [("nostem", false), ("stem", true)] {
            let scores = RougeScorer::new(&types, stem).score(t, p);
            for ty in types {
                let want = &case[key][ty.to_string()];
                let s = scores.get(ty).unwrap();
                let what = format!("{ty} {key} of ({t:?}, {p:?})");
                close(s.precision, &want[0], &what);
                close(s.recall, &want[1], &what);
                close(s.fmeasure, &want[2], &what);
            }
        }
    }
}

#[test]
fn scores_and_counts_match_generated_goldens() {
    let types: Vec<RougeType> = ["rouge1", "rouge2", "rouge3", "rougeL", "rougeLsum"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let g = goldens();
    let cases = g["score"].as_array().unwrap();
    assert!(cases.len() >= 200);
    for case in cases {
        let (t, p) = (
            case["target"].as_str().unwrap(),
            case["prediction"].as_str().unwrap(),
        );
        for (key, stem) in [("nostem", false), ("stem", true)] {
            let scores = RougeScorer::new(&types, stem).score(t, p);
            for &ty in &types {
                let want = &case[key][ty.to_string()];
                let s = scores.get(ty).unwrap();
                let what = format!("{ty} {key} of ({t:?}, {p:?})");
                for (i, got) in [s.precision, s.recall, s.fmeasure].into_iter().enumerate() {
                    // Python's repr(), parsed exactly.
                    let w: f64 = want[i].as_str().unwrap().parse().unwrap();
                    assert_eq!(
                        got.to_bits(),
                        w.to_bits(),
                        "{what}: got {got:?}, rouge-score {w:?}"
                    );
                }
                let counts = [
                    s.counts.hits,
                    s.counts.prediction_total,
                    s.counts.target_total,
                ];
                let want_counts: Vec<u64> = (3..6).map(|i| want[i].as_u64().unwrap()).collect();
                assert_eq!(counts.to_vec(), want_counts, "counts {what}");
            }
        }
    }
}

#[test]
fn scorer_is_consistent_across_calls_and_threads() {
    // The per-thread interner and scratch buffers must not leak state between calls.
    let types = [
        RougeType::Rouge1,
        RougeType::Rouge2,
        RougeType::RougeL,
        RougeType::RougeLsum,
    ];
    let scorer = RougeScorer::new(&types, true);
    let pairs = [
        (
            "the cats were running\nhome",
            "a cat runs home\nthe cats ran",
        ),
        ("", "x"),
        ("Generously given news.", "generous news was given"),
    ];
    let first: Vec<_> = pairs.iter().map(|(t, p)| scorer.score(t, p)).collect();
    for _ in 0..3 {
        for ((t, p), want) in pairs.iter().zip(&first) {
            assert_eq!(&scorer.score(t, p), want);
        }
    }
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let scorer = scorer.clone();
            std::thread::spawn(move || {
                pairs
                    .iter()
                    .rev()
                    .map(|(t, p)| scorer.score(t, p))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        let mut got = h.join().unwrap();
        got.reverse();
        assert_eq!(got, first);
    }
}

#[test]
fn unicode_tokenizer_is_opt_in() {
    let t = "東京は大きい都市です";
    let p = "東京は都市です";
    let default = RougeScorer::new(&[RougeType::Rouge1], false).score(t, p);
    assert_eq!(default.get(RougeType::Rouge1).unwrap().fmeasure, 0.0);
    let uni = RougeScorer::with_tokenizer(
        &[RougeType::Rouge1, RougeType::RougeL],
        RougeTokenizer::Unicode {
            stem: Stemming::English,
        },
    )
    .score(t, p);
    let r1 = uni.get(RougeType::Rouge1).unwrap();
    assert_eq!(
        (
            r1.counts.hits,
            r1.counts.prediction_total,
            r1.counts.target_total
        ),
        (7, 7, 10)
    );
    assert_eq!(uni.get(RougeType::RougeL).unwrap().counts.hits, 7);
}

#[test]
fn huge_inputs_do_not_blow_up() {
    // One 40,000-token line on both sides: ROUGE-Lsum's backtrack rows exceed the memory
    // budget and go through the checkpointed path.
    let words = ["alpha", "beta", "gamma", "delta"];
    let t: String = (0..40_000)
        .map(|i| words[i * 7 % 4])
        .collect::<Vec<_>>()
        .join(" ");
    let p: String = (0..40_000)
        .map(|i| words[i * 5 % 3])
        .collect::<Vec<_>>()
        .join(" ");
    let scorer = RougeScorer::new(&[RougeType::RougeL, RougeType::RougeLsum], false);
    let s = scorer.score(&t, &p);
    let l = s.get(RougeType::RougeL).unwrap().counts;
    let lsum = s.get(RougeType::RougeLsum).unwrap().counts;
    // With one line each, the union LCS is one LCS: the same length as ROUGE-L's, clipped.
    assert!(lsum.hits <= l.hits && l.hits > 0);
    assert_eq!(l.target_total, 40_000);
}
