//! ROUGE-N, ROUGE-L and ROUGE-Lsum exactly as rouge-score 0.1.2 computes them.
//!
//! Tokens are interned to `u32` ids (per thread, reused across calls) and renumbered densely
//! per call, so counting needs plain arrays instead of hash maps of strings; n-grams get
//! exact ids level by level (an `n`-gram is a pair of an `(n-1)`-gram id and a token id).
//! LCS lengths use the bit-parallel algorithm of Hyyrö (2004), 64 table cells per word
//! operation; ROUGE-Lsum reads the same DP table cells rouge-score's backtrack reads out of
//! the stored bit rows, so its tie-breaking (and hence its union LCS) is identical.

use std::cell::RefCell;
use std::fmt;

use std::iter::Sum;
use std::ops::{Add, AddAssign};
use std::str::FromStr;

use std::hash::Hasher;

use super::tokenize::{Piece, RougeTokenizer};

/// One ROUGE variant, named like rouge-score's `rouge_types` strings (see [`Display`] and
/// [`FromStr`]: `"rouge1"`, `"rouge2"`, ..., `"rougeL"`, `"rougeLsum"`).
///
/// `RougeN(1)` and `Rouge1` (likewise `RougeN(2)` and `Rouge2`) are the same type: they
/// compare equal, hash alike and score alike.
///
/// [`Display`]: fmt::Display
#[derive(Debug, Clone, Copy)]
pub enum RougeType {
    /// ROUGE-1: unigram overlap (`"rouge1"`).
    Rouge1,
    /// ROUGE-2: bigram overlap (`"rouge2"`).
    Rouge2,
    /// ROUGE-N for any `n` (`"rouge3"`, ...): n-gram overlap. rouge-score accepts `n` from
    /// 1 to 9 and rejects 0; here any `n` is accepted, and `RougeN(0)` scores 0 with all
    /// counts 0.
    RougeN(usize),
    /// ROUGE-L: longest common subsequence of the whole texts (`"rougeL"`); newlines are
    /// ordinary separators.
    RougeL,
    /// ROUGE-Lsum: summary-level LCS over `"\n"`-separated lines (`"rougeLsum"`); the union
    /// LCS of each target line against every prediction line, counted with clipping.
    RougeLsum,
}

/// The canonical form [`RougeType`] compares by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    N(usize),
    L,
    Lsum,
}

impl RougeType {
    /// ROUGE-N for `n` (`Rouge1` for 1, `Rouge2` for 2).
    pub fn n(n: usize) -> Self {
        match n {
            1 => RougeType::Rouge1,
            2 => RougeType::Rouge2,
            n => RougeType::RougeN(n),
        }
    }

    /// The n-gram order of a ROUGE-N type, `None` for ROUGE-L and ROUGE-Lsum.
    pub fn ngram_order(self) -> Option<usize> {
        match self.kind() {
            Kind::N(n) => Some(n),
            _ => None,
        }
    }

    fn kind(self) -> Kind {
        match self {
            RougeType::Rouge1 => Kind::N(1),
            RougeType::Rouge2 => Kind::N(2),
            RougeType::RougeN(n) => Kind::N(n),
            RougeType::RougeL => Kind::L,
            RougeType::RougeLsum => Kind::Lsum,
        }
    }
}

impl PartialEq for RougeType {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind()
    }
}

impl Eq for RougeType {}

impl std::hash::Hash for RougeType {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind().hash(state);
    }
}

impl fmt::Display for RougeType {
    /// rouge-score's name: `rouge1`, `rouge2`, `rougeN`, `rougeL`, `rougeLsum`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            Kind::N(n) => write!(f, "rouge{n}"),
            Kind::L => f.write_str("rougeL"),
            Kind::Lsum => f.write_str("rougeLsum"),
        }
    }
}

/// A string that names no [`RougeType`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ROUGE type {name:?}: expected rouge1, rouge2, ... (n >= 1), rougeL or rougeLsum")]
pub struct ParseRougeTypeError {
    /// The string that was given.
    pub name: String,
}

impl FromStr for RougeType {
    type Err = ParseRougeTypeError;

    /// Parses rouge-score's names: `rougeL`, `rougeLsum` and `rouge<n>` for a decimal
    /// `n >= 1` (rouge-score itself stops at `rouge9`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseRougeTypeError {
            name: s.to_string(),
        };
        match s {
            "rougeL" => Ok(RougeType::RougeL),
            "rougeLsum" => Ok(RougeType::RougeLsum),
            _ => {
                let digits = s.strip_prefix("rouge").ok_or_else(err)?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                match digits.parse::<usize>() {
                    Ok(n) if n >= 1 => Ok(RougeType::n(n)),
                    _ => Err(err()),
                }
            }
        }
    }
}

/// The integer counts behind one ROUGE score, so scores can be aggregated (summed, then
/// [`score`](RougeCounts::score)d for a micro average).
///
/// - ROUGE-N: `hits` = clipped n-gram overlap Σ min(count in target, count in prediction);
///   totals = number of n-grams on each side.
/// - ROUGE-L: `hits` = LCS length; totals = number of tokens.
/// - ROUGE-Lsum: `hits` = clipped union-LCS hits; totals = number of tokens over all lines.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct RougeCounts {
    /// Matches (overlap / LCS length / union-LCS hits).
    pub hits: u64,
    /// Units (n-grams or tokens) in the prediction.
    pub prediction_total: u64,
    /// Units (n-grams or tokens) in the target (reference).
    pub target_total: u64,
}

impl RougeCounts {
    /// Precision `hits / max(prediction_total, 1)`, recall `hits / max(target_total, 1)`
    /// and F1 `2·P·R / (P + R)` (0 when P + R = 0), computed in the same order as
    /// rouge-score, so a single pair's score is bit-identical to rouge-score's. (For ROUGE-L
    /// and ROUGE-Lsum rouge-score returns 0 when a side is empty; then `hits` is 0 and this
    /// formula gives 0 too.)
    pub fn score(&self) -> RougeScore {
        let precision = self.hits as f64 / self.prediction_total.max(1) as f64;
        let recall = self.hits as f64 / self.target_total.max(1) as f64;
        RougeScore {
            precision,
            recall,
            fmeasure: fmeasure(precision, recall),
            counts: *self,
        }
    }
}

impl Add for RougeCounts {
    type Output = RougeCounts;
    fn add(self, rhs: Self) -> Self {
        RougeCounts {
            hits: self.hits + rhs.hits,
            prediction_total: self.prediction_total + rhs.prediction_total,
            target_total: self.target_total + rhs.target_total,
        }
    }
}

impl AddAssign for RougeCounts {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl Sum for RougeCounts {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(RougeCounts::default(), Add::add)
    }
}

/// rouge-score's `scoring.fmeasure`.
fn fmeasure(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// One ROUGE score (rouge-score's `Score` tuple) with the counts it was computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RougeScore {
    /// Precision, in [0, 1].
    pub precision: f64,
    /// Recall, in [0, 1].
    pub recall: f64,
    /// F1 of precision and recall, in [0, 1].
    pub fmeasure: f64,
    /// The counts behind the three numbers.
    pub counts: RougeCounts,
}

/// The scores of one (target, prediction) pair, one per requested [`RougeType`], in the
/// order the scorer was given them (rouge-score's result dict).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RougeScores {
    scores: Vec<(RougeType, RougeScore)>,
}

impl RougeScores {
    /// The score of `rouge_type`, if the scorer computed it.
    pub fn get(&self, rouge_type: RougeType) -> Option<RougeScore> {
        self.scores
            .iter()
            .find(|(t, _)| *t == rouge_type)
            .map(|&(_, s)| s)
    }

    /// The (type, score) pairs in the scorer's order.
    pub fn iter(&self) -> impl Iterator<Item = (RougeType, RougeScore)> + '_ {
        self.scores.iter().copied()
    }

    /// Number of scores.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// True when the scorer had no types.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

impl<'a> IntoIterator for &'a RougeScores {
    type Item = (RougeType, RougeScore);
    type IntoIter = std::iter::Copied<std::slice::Iter<'a, (RougeType, RougeScore)>>;
    fn into_iter(self) -> Self::IntoIter {
        self.scores.iter().copied()
    }
}

/// rouge-score's `RougeScorer`: computes the chosen ROUGE types for (target, prediction)
/// pairs.
///
/// `score` takes `&self`, so one scorer can be shared across threads (it is `Send + Sync`);
/// scratch buffers and the token interner live in a per-thread workspace reused across
/// calls, so scoring does almost no allocation once warm.
///
/// ```
/// use deepsynth::eval::{RougeScorer, RougeType};
/// let scorer = RougeScorer::new(&[RougeType::Rouge1, RougeType::RougeL], true);
/// // Target (reference) first, like rouge-score.
/// let scores = scorer.score("The cat sat on the mat.", "the cat was on the mat");
/// let r1 = scores.get(RougeType::Rouge1).unwrap();
/// assert_eq!(r1.fmeasure, 0.8333333333333334);
/// assert_eq!((r1.counts.hits, r1.counts.prediction_total), (5, 6));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RougeScorer {
    types: Vec<RougeType>,
    tokenizer: RougeTokenizer,
}

impl RougeScorer {
    /// `RougeScorer(rouge_types, use_stemmer)` with rouge-score's tokenizer (and
    /// `split_summaries=False`: ROUGE-Lsum lines are the text's `"\n"`-separated lines).
    pub fn new(types: &[RougeType], use_stemmer: bool) -> Self {
        Self::with_tokenizer(types, RougeTokenizer::RougeScore { stem: use_stemmer })
    }

    /// A scorer with another tokenizer, e.g. [`RougeTokenizer::Unicode`].
    pub fn with_tokenizer(types: &[RougeType], tokenizer: RougeTokenizer) -> Self {
        RougeScorer {
            types: types.to_vec(),
            tokenizer,
        }
    }

    /// The types this scorer computes, in order.
    pub fn types(&self) -> &[RougeType] {
        &self.types
    }

    /// The tokenizer this scorer uses.
    pub fn tokenizer(&self) -> RougeTokenizer {
        self.tokenizer
    }

    /// Scores `prediction` against `target` (the reference; it comes FIRST, as in
    /// rouge-score's `score(target, prediction)`). Any strings are accepted.
    pub fn score(&self, target: &str, prediction: &str) -> RougeScores {
        WORKSPACE
            .try_with(|cell| {
                cell.try_borrow_mut()
                    .ok()
                    .map(|mut ws| ws.score(self, target, prediction))
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| Workspace::default().score(self, target, prediction))
    }
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::default());
}

mod intern;
mod lcs;
#[cfg(test)]
mod tests;
mod workspace;

use workspace::Workspace;
