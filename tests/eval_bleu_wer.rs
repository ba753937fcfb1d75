//! BLEU, chrF, WER and CER against the Python peers (sacrebleu 2.6.0, jiwer 4.0.0):
//! the spec's edge cases (`metric-edge-cases.json`) and ~600 generated pairs
//! (`bleu_wer_goldens.json`, made by `make_bleu_wer_goldens.py`). Tokens and counts must match
//! exactly, scores within 1e-9.

use deepsynth::eval::{
    cer, corpus_bleu, corpus_cer, corpus_char_counts, corpus_chrf, corpus_wer, corpus_word_counts,
    process_characters, process_words, sentence_bleu, sentence_chrf, tokenize_13a, wer, Bleu,
    BleuScore, Chrf, EditCounts, Smoothing,
};
use serde_json::Value;

const EDGE: &str = include_str!("fixtures/metrics/metric-edge-cases.json");
const GOLDENS: &str = include_str!("fixtures/metrics/bleu_wer_goldens.json");

const TOL: f64 = 1e-9;

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is valid JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

fn u4(v: &Value) -> [u64; 4] {
    let a: Vec<u64> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("integer"))
        .collect();
    a.try_into().expect("four integers")
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= TOL,
        "{what}: got {got:?}, want {want:?}"
    );
}

fn check_bleu(got: &BleuScore, want: &Value, what: &str) {
    assert_eq!(got.counts, u4(&want["counts"]), "{what}: counts");
    assert_eq!(got.totals, u4(&want["totals"]), "{what}: totals");
    assert_eq!(
        got.sys_len,
        want["sys_len"].as_u64().unwrap(),
        "{what}: sys_len"
    );
    assert_eq!(
        got.ref_len,
        want["ref_len"].as_u64().unwrap(),
        "{what}: ref_len"
    );
    close(got.score, f(&want["score"]), &format!("{what}: score"));
    if let Some(bp) = want.get("bp") {
        close(got.bp, f(bp), &format!("{what}: bp"));
    }
}

fn counts_of(e: &EditCounts) -> [u64; 4] {
    [e.hits, e.substitutions, e.deletions, e.insertions]
}

// ---------------------------------------------------------------- spec edge cases

#[test]
fn edge_tok_13a() {
    let d = parse(EDGE);
    let cases = d["tok_13a"].as_object().unwrap();
    assert!(!cases.is_empty());
    for (input, want) in cases {
        assert_eq!(tokenize_13a(input), s(want), "13a of {input:?}");
    }
}

#[test]
fn edge_bleu_sentences_and_corpus() {
    let d = parse(EDGE);
    let no_eff = Bleu::default();
    let eff = d["bleu_sentence_effective_order"].as_array().unwrap();
    let noeff = d["bleu_sentence_no_effective_order"].as_array().unwrap();
    for c in eff {
        let got = sentence_bleu(s(&c["hyp"]), &[s(&c["ref"])]);
        close(got.score, f(&c["score"]), &format!("sentence_bleu {c}"));
    }
    for c in noeff {
        let got = no_eff.sentence_score(s(&c["hyp"]), &[s(&c["ref"])]);
        close(
            got.score,
            f(&c["score"]),
            &format!("BLEU().sentence_score {c}"),
        );
    }
    // Identical texts give 100.00000000000004 exactly, as in sacrebleu.
    assert_eq!(
        sentence_bleu("the cat sat on the mat", &["the cat sat on the mat"]).score,
        100.00000000000004
    );
    let hyps: Vec<&str> = eff.iter().map(|c| s(&c["hyp"])).collect();
    let refs: Vec<&str> = eff.iter().map(|c| s(&c["ref"])).collect();
    let got = corpus_bleu(&hyps, &refs);
    check_bleu(
        &got,
        &d["bleu_corpus_of_those"],
        "corpus_bleu of the sentences",
    );
    assert_eq!(
        got.signature,
        "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    );
}

#[test]
fn edge_chrf() {
    let d = parse(EDGE);
    for c in d["chrf_sentence"].as_array().unwrap() {
        let got = sentence_chrf(s(&c["hyp"]), &[s(&c["ref"])]);
        close(got.score, f(&c["score"]), &format!("chrF {c}"));
    }
}

#[test]
fn edge_jiwer() {
    let d = parse(EDGE);
    let cases = d["jiwer"].as_array().unwrap();
    for c in cases {
        let (r, h) = (s(&c["ref"]), s(&c["hyp"]));
        close(wer(r, h), f(&c["wer"]), &format!("wer {c}"));
        close(cer(r, h), f(&c["cer"]), &format!("cer {c}"));
    }
    let refs: Vec<&str> = cases.iter().map(|c| s(&c["ref"])).collect();
    let hyps: Vec<&str> = cases.iter().map(|c| s(&c["hyp"])).collect();
    close(
        corpus_wer(&refs, &hyps),
        f(&d["jiwer_corpus"]["wer"]),
        "corpus wer",
    );
    close(
        corpus_cer(&refs, &hyps),
        f(&d["jiwer_corpus"]["cer"]),
        "corpus cer",
    );
}

// ---------------------------------------------------------------- generated goldens

#[test]
fn goldens_meta() {
    let d = parse(GOLDENS);
    assert_eq!(d["meta"]["sacrebleu"], "2.6.0");
    assert_eq!(d["meta"]["jiwer"], "4.0.0");
    assert!(d["records"].as_array().unwrap().len() >= 600);
}

#[test]
fn goldens_tokens() {
    let d = parse(GOLDENS);
    for (i, r) in d["records"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            tokenize_13a(s(&r["ref"])),
            s(&r["ref_tok"]),
            "record {i} ref"
        );
        assert_eq!(
            tokenize_13a(s(&r["hyp"])),
            s(&r["hyp_tok"]),
            "record {i} hyp"
        );
    }
}

#[test]
fn goldens_sentence_bleu() {
    let d = parse(GOLDENS);
    let variants = [
        ("bleu_noeff", Bleu::default()),
        (
            "bleu_none",
            Bleu {
                smoothing: Smoothing::None,
                effective_order: true,
            },
        ),
        (
            "bleu_floor",
            Bleu {
                smoothing: Smoothing::FLOOR,
                effective_order: true,
            },
        ),
        (
            "bleu_addk",
            Bleu {
                smoothing: Smoothing::ADD_K,
                effective_order: true,
            },
        ),
    ];
    for (i, r) in d["records"].as_array().unwrap().iter().enumerate() {
        let (reference, hyp) = (s(&r["ref"]), s(&r["hyp"]));
        let got = sentence_bleu(hyp, &[reference]);
        check_bleu(&got, &r["bleu"], &format!("record {i} ({})", r["family"]));
        for (key, bleu) in &variants {
            let got = bleu.sentence_score(hyp, &[reference]).score;
            close(got, f(&r[*key]), &format!("record {i} {key}"));
        }
    }
}

#[test]
fn goldens_sentence_chrf() {
    let d = parse(GOLDENS);
    let pp = Chrf {
        word_order: 2,
        ..Chrf::default()
    };
    for (i, r) in d["records"].as_array().unwrap().iter().enumerate() {
        let (reference, hyp) = (s(&r["ref"]), s(&r["hyp"]));
        close(
            sentence_chrf(hyp, &[reference]).score,
            f(&r["chrf"]),
            &format!("record {i} chrF"),
        );
        close(
            pp.sentence_score(hyp, &[reference]).score,
            f(&r["chrfpp"]),
            &format!("record {i} chrF++"),
        );
    }
}

#[test]
fn goldens_wer_cer() {
    let d = parse(GOLDENS);
    for (i, r) in d["records"].as_array().unwrap().iter().enumerate() {
        let (reference, hyp) = (s(&r["ref"]), s(&r["hyp"]));
        let what = format!("record {i} ({})", r["family"]);
        let w = process_words(reference, hyp);
        assert_eq!(counts_of(&w), u4(&r["wer_counts"]), "{what}: word H/S/D/I");
        close(w.error_rate(), f(&r["wer"]), &format!("{what}: wer"));
        close(wer(reference, hyp), f(&r["wer"]), &format!("{what}: wer()"));
        let c = process_characters(reference, hyp);
        assert_eq!(counts_of(&c), u4(&r["cer_counts"]), "{what}: char H/S/D/I");
        close(c.error_rate(), f(&r["cer"]), &format!("{what}: cer"));
        close(cer(reference, hyp), f(&r["cer"]), &format!("{what}: cer()"));
    }
}

#[test]
fn goldens_multi_reference() {
    let d = parse(GOLDENS);
    let multi = d["multi_ref"].as_array().unwrap();
    for (i, m) in multi.iter().enumerate() {
        let refs: Vec<&str> = m["refs"].as_array().unwrap().iter().map(s).collect();
        let hyp = s(&m["hyp"]);
        let got = sentence_bleu(hyp, &refs);
        check_bleu(&got, &m["bleu"], &format!("multi {i}"));
        close(
            sentence_chrf(hyp, &refs).score,
            f(&m["chrf"]),
            &format!("multi {i} chrF"),
        );
    }
    let two: Vec<&Value> = multi
        .iter()
        .filter(|m| m["refs"].as_array().unwrap().len() == 2)
        .collect();
    let hyps: Vec<&str> = two.iter().map(|m| s(&m["hyp"])).collect();
    let refs: Vec<Vec<&str>> = two
        .iter()
        .map(|m| m["refs"].as_array().unwrap().iter().map(s).collect())
        .collect();
    let got = Bleu::default().corpus_score_multi(&hyps, &refs);
    check_bleu(
        &got,
        &d["corpus"]["multi_ref_bleu"],
        "corpus multi-ref BLEU",
    );
    assert!(got.signature.starts_with("nrefs:2|"));
}

#[test]
fn goldens_corpus() {
    let d = parse(GOLDENS);
    let records = d["records"].as_array().unwrap();
    let refs: Vec<&str> = records.iter().map(|r| s(&r["ref"])).collect();
    let hyps: Vec<&str> = records.iter().map(|r| s(&r["hyp"])).collect();
    let c = &d["corpus"];

    let b = corpus_bleu(&hyps, &refs);
    check_bleu(&b, &c["bleu"], "corpus BLEU");
    assert_eq!(b.signature, s(&c["bleu"]["signature"]));
    assert_eq!(
        Bleu::sentence().signature(Some(1)),
        s(&c["bleu_sentence_signature"])
    );

    let ch = corpus_chrf(&hyps, &refs);
    close(ch.score, f(&c["chrf"]), "corpus chrF");
    assert_eq!(ch.signature, s(&c["chrf_signature"]));
    let pp = Chrf {
        word_order: 2,
        ..Chrf::default()
    };
    close(
        pp.corpus_score(&hyps, &refs).score,
        f(&c["chrfpp"]),
        "corpus chrF++",
    );

    let w = corpus_word_counts(&refs, &hyps);
    assert_eq!(counts_of(&w), u4(&c["wer_counts"]), "corpus word H/S/D/I");
    close(corpus_wer(&refs, &hyps), f(&c["wer"]), "corpus wer");
    let ch = corpus_char_counts(&refs, &hyps);
    assert_eq!(counts_of(&ch), u4(&c["cer_counts"]), "corpus char H/S/D/I");
    close(corpus_cer(&refs, &hyps), f(&c["cer"]), "corpus cer");
}

// ---------------------------------------------------------------- robustness

#[test]
fn no_panics_on_odd_inputs() {
    let odd = [
        "",
        " ",
        "\u{0}",
        "\u{1c}\u{1d}\u{1e}\u{1f}",
        "&",
        "&amp",
        "-\n-\n",
        "<skipped><skipped>",
        "...,,,---",
        "\u{10ffff}\u{fffd}",
        "a\u{301}\u{301}\u{301}",
        "🇫🇷👨‍👩‍👧",
    ];
    for a in odd {
        for b in odd {
            let _ = sentence_bleu(a, &[b]);
            let _ = Bleu::default().sentence_score(a, &[b, a]);
            let _ = sentence_chrf(a, &[b]);
            let _ = wer(a, b);
            let _ = cer(a, b);
        }
    }
    let long = "word ".repeat(20_000);
    let other = "word wort ".repeat(10_000);
    let e = process_words(&long, &other);
    assert_eq!(e.reference_len(), 20_000);
    assert_eq!(e.hypothesis_len(), 20_000);
}
