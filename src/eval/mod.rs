//! Evaluation metrics that reproduce the Python reference implementations exactly, by
//! default, so scores can be compared with published numbers.
//!
//! ROUGE ([`RougeScorer`], [`RougeType`]) as Google's
//! [rouge-score](https://github.com/google-research/google-research/tree/master/rouge) 0.1.2
//! computes it: ROUGE-N, ROUGE-L and ROUGE-Lsum of Lin (2004),
//! [*ROUGE: A Package for Automatic Evaluation of Summaries*](https://aclanthology.org/W04-1013/),
//! with rouge-score's tokenizer and, for `use_stemmer`, NLTK 3.10.4's Porter stemmer in its
//! default `NLTK_EXTENSIONS` mode ([`porter_stem`]). Scores are bit-identical to
//! rouge-score's for a pair, and carry their integer counts ([`RougeCounts`]) so corpora can
//! be aggregated. rouge-score only understands ASCII letters and digits; a Unicode-aware
//! tokenizer is available as an option ([`RougeTokenizer::Unicode`]), never the default.
//!
//! All scoring functions are pure and total: any `&str` (empty, huge, any Unicode) gives a
//! result. Argument order follows rouge-score: the target (reference) first.
//!
//! ```
//! use deepsynth::eval::{RougeScorer, RougeType};
//! let scorer = RougeScorer::new(&[RougeType::Rouge1, RougeType::Rouge2, RougeType::RougeLsum], true);
//! let scores = scorer.score("police killed the gunman", "the gunman police killed");
//! assert_eq!(scores.get(RougeType::Rouge1).unwrap().fmeasure, 1.0);
//! assert_eq!(scores.get(RougeType::Rouge2).unwrap().fmeasure, 0.6666666666666666);
//! assert_eq!(scores.get(RougeType::RougeLsum).unwrap().fmeasure, 0.5);
//! ```

mod aggregate;
mod porter;
mod rouge;
mod tokenize;

pub use aggregate::{bootstrap, mean, percentile_sorted, Bootstrap, Interval};
pub use porter::porter_stem;
pub use rouge::{
    ParseRougeTypeError, RougeCounts, RougeScore, RougeScorer, RougeScores, RougeType,
};
pub use tokenize::{RougeTokenizer, Stemming};
