//! NLTK 3.10.4 `PorterStemmer()` (NLTK_EXTENSIONS) parity: every word of
//! `fixtures/metrics/porter_goldens.json` (made by `make_porter_goldens.py`) and the
//! `porter_nltk_extensions` goldens of `fixtures/metrics/metric-edge-cases.json`.

use deepsynth::eval::porter_stem;
use serde_json::Value;

fn check_all(goldens: &serde_json::Map<String, Value>) -> usize {
    let mut wrong = Vec::new();
    for (word, stem) in goldens {
        let want = stem.as_str().expect("stems are strings");
        let got = porter_stem(word);
        if got != want {
            wrong.push(format!("{word:?}: got {got:?}, nltk {want:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} words differ:\n{}",
        wrong.len(),
        goldens.len(),
        wrong.join("\n")
    );
    goldens.len()
}

#[test]
fn porter_matches_nltk_on_generated_word_list() {
    let goldens: Value =
        serde_json::from_str(include_str!("fixtures/metrics/porter_goldens.json")).unwrap();
    let n = check_all(goldens.as_object().unwrap());
    assert!(n >= 5000, "only {n} words");
}

#[test]
fn porter_matches_spec_goldens() {
    let edge: Value =
        serde_json::from_str(include_str!("fixtures/metrics/metric-edge-cases.json")).unwrap();
    let n = check_all(edge["porter_nltk_extensions"].as_object().unwrap());
    assert!(n >= 80);
}
