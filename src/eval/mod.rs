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
//! BLEU ([`sentence_bleu`], [`corpus_bleu`], [`Bleu`]) and chrF ([`sentence_chrf`],
//! [`corpus_chrf`], [`Chrf`]) as [sacrebleu](https://github.com/mjpost/sacrebleu) 2.6.0
//! computes them (`13a` tokenization, exp smoothing; chrF with 6 character orders, β = 2), and
//! WER and CER ([`wer`](fn@wer), [`cer`], [`corpus_wer`], [`process_words`], [`WerScorer`]) as
//! [jiwer](https://github.com/jitsi/jiwer) 4.0.0 computes them, with the hit / substitution /
//! deletion / insertion split of [RapidFuzz](https://github.com/rapidfuzz/RapidFuzz)'s
//! Levenshtein opcodes.
//!
//! [`Evaluator`] scores a corpus of pairs with any of them at once (multi-threaded), aggregates
//! the way each peer does, adds seeded bootstrap intervals ([`Bootstrap`]) and returns polars
//! DataFrames ([`Evaluation::records_frame`], [`Evaluation::summary_frame`]).
//!
//! All scoring functions are pure and total: any `&str` (empty, huge, any Unicode) gives a
//! result. Argument order follows each peer: rouge-score and jiwer take the reference first,
//! sacrebleu the hypothesis first.
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
mod bleu;
mod chrf;
mod compression;
mod evaluate;
#[cfg(feature = "frames")]
mod frame;
mod porter;
mod pystr;
mod rouge;
mod save;
mod tokenize;
mod wer;

pub use aggregate::{bootstrap, bootstrap_statistic, mean, percentile_sorted, Bootstrap, Interval};
pub use bleu::{
    bleu_tokens, corpus_bleu, sentence_bleu, tokenize_13a, Bleu, BleuScore, BleuStats, Smoothing,
    BLEU_MAX_ORDER, SACREBLEU_VERSION,
};
pub use chrf::{corpus_chrf, sentence_chrf, Chrf, ChrfScore, ChrfStats};
pub use compression::{Compression, VisionMode};
pub use evaluate::{EvalConfig, Evaluation, Evaluator, Metric, RecordScores, SummaryRow};
pub use porter::porter_stem;
pub use rouge::{
    ParseRougeTypeError, RougeCounts, RougeScore, RougeScorer, RougeScores, RougeType,
};
pub use tokenize::{RougeTokenizer, Stemming};
pub use wer::{
    cer, cer_chars, corpus_cer, corpus_char_counts, corpus_wer, corpus_word_counts,
    process_characters, process_words, wer, wer_words, EditCounts, WerScorer,
};

/// Errors from building or saving evaluation results.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Building a DataFrame or serialising results failed.
    #[error("cannot build evaluation table: {0}")]
    Frame(String),
    /// Writing results failed.
    #[error(transparent)]
    Io(#[from] crate::fsutil::IoError),
}
