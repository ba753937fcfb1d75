//! WER and CER as [jiwer](https://github.com/jitsi/jiwer) 4.0.0 computes them by default,
//! including its hit / substitution / deletion / insertion split (counts exact, rates within
//! 1e-9 on the parity goldens).
//!
//! jiwer takes the edit operations from [RapidFuzz](https://github.com/rapidfuzz/RapidFuzz)'s
//! `Levenshtein.opcodes(reference, hypothesis)`. When several alignments have the minimal cost,
//! the S/D/I counts depend on which one RapidFuzz picks; this module reproduces its choice:
//! common prefix and suffix stripped, Hyyrö's bit-parallel matrix walked back from the end
//! preferring a deletion, then an insertion when the cell to the left is smaller than the
//! diagonal one, then the diagonal; and, for large inputs, the same Hirschberg split (the
//! first column minimising the sum of the two half distances).
//!
//! ```
//! use deepsynth::eval::{cer, process_words, wer};
//! assert_eq!(wer("a b c", "a x c d"), 2.0 / 3.0);
//! assert_eq!(wer("a\nb", "a b"), 2.0); // a lone "\n" does not separate words
//! assert_eq!(cer("", "a b c"), 5.0); // empty reference: the insertion count
//! let e = process_words("a b c", "a x c d");
//! assert_eq!((e.hits, e.substitutions, e.deletions, e.insertions), (2, 1, 0, 1));
//! ```

use std::cell::RefCell;
use std::ops::{Add, AddAssign};

use super::pystr::{py_strip, FxMap};

/// Hit / substitution / deletion / insertion counts of one or more reference–hypothesis pairs
/// (jiwer's `WordOutput` / `CharacterOutput` numbers); they add up over a corpus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EditCounts {
    /// Reference units kept unchanged.
    pub hits: u64,
    /// Reference units replaced by another.
    pub substitutions: u64,
    /// Reference units missing from the hypothesis.
    pub deletions: u64,
    /// Hypothesis units not in the reference.
    pub insertions: u64,
}

impl EditCounts {
    /// Reference units: hits + substitutions + deletions.
    pub fn reference_len(&self) -> u64 {
        self.hits + self.substitutions + self.deletions
    }

    /// Hypothesis units: hits + substitutions + insertions.
    pub fn hypothesis_len(&self) -> u64 {
        self.hits + self.substitutions + self.insertions
    }

    /// Unit-cost edit distance: substitutions + deletions + insertions.
    pub fn errors(&self) -> u64 {
        self.substitutions + self.deletions + self.insertions
    }

    /// jiwer's `wer` / `cer`: errors / reference units; with no reference unit, the insertion
    /// count itself (an integer, not a ratio).
    pub fn error_rate(&self) -> f64 {
        let n = self.reference_len();
        if n == 0 {
            self.insertions as f64
        } else {
            self.errors() as f64 / n as f64
        }
    }

    /// jiwer's match error rate: errors / (hits + errors); with no reference unit, 0 if the
    /// hypothesis is empty too, else 1.
    pub fn mer(&self) -> f64 {
        if self.reference_len() == 0 {
            if self.hypothesis_len() == 0 {
                0.0
            } else {
                1.0
            }
        } else {
            self.errors() as f64 / (self.hits + self.errors()) as f64
        }
    }

    /// jiwer's word information preserved: (H / reference units) · (H / hypothesis units).
    pub fn wip(&self) -> f64 {
        let (r, h) = (self.reference_len(), self.hypothesis_len());
        if r == 0 {
            if h == 0 {
                1.0
            } else {
                0.0
            }
        } else if h >= 1 {
            (self.hits as f64 / r as f64) * (self.hits as f64 / h as f64)
        } else {
            0.0
        }
    }

    /// jiwer's word information lost: 1 − [`wip`](Self::wip).
    pub fn wil(&self) -> f64 {
        1.0 - self.wip()
    }
}

impl AddAssign for EditCounts {
    fn add_assign(&mut self, o: Self) {
        self.hits += o.hits;
        self.substitutions += o.substitutions;
        self.deletions += o.deletions;
        self.insertions += o.insertions;
    }
}

impl Add for EditCounts {
    type Output = Self;
    fn add(mut self, o: Self) -> Self {
        self += o;
        self
    }
}

impl std::iter::Sum for EditCounts {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

mod band;
mod bitpar;
mod engine;
mod intern;
#[cfg(test)]
mod tests;
mod transform;
mod w2;

use bitpar::NONE;
use engine::Engine;
use intern::{span_of, Interner};
use transform::for_each_wer_word;
pub use transform::{cer_chars, wer_words};

/// Reusable scratch space for edit-count computations; keep one per thread to avoid
/// allocations in tight loops (the free functions use a thread-local one).
#[derive(Default)]
pub struct WerScorer {
    spans: Vec<(usize, usize)>,
    interner: Interner,
    ids: FxMap<u32, u32>,
    ref_ids: Vec<u32>,
    hyp_ids: Vec<u32>,
    engine: Engine,
}

impl std::fmt::Debug for WerScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WerScorer").finish_non_exhaustive()
    }
}

impl WerScorer {
    /// A scorer with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// jiwer's `process_words(reference, hypothesis)` counts.
    pub fn process_words(&mut self, reference: &str, hypothesis: &str) -> EditCounts {
        // Intern the words of this pair into dense ids 0..k.
        let spans = &mut self.spans;
        spans.clear();
        for_each_wer_word(reference, |w| spans.push(span_of(reference, w)));
        let n_ref = spans.len();
        for_each_wer_word(hypothesis, |w| spans.push(span_of(hypothesis, w)));
        self.interner.reset(spans.len());
        self.ref_ids.clear();
        self.hyp_ids.clear();
        for (k, &(a, b)) in spans.iter().enumerate() {
            let (side, ids) = if k < n_ref {
                (0, &mut self.ref_ids)
            } else {
                (1, &mut self.hyp_ids)
            };
            ids.push(self.interner.intern([reference, hypothesis], side, a, b));
        }
        let vocab = self.interner.len();
        let out = self.engine.counts(&self.ref_ids, &self.hyp_ids, vocab);
        self.trim();
        out
    }

    /// jiwer's `process_characters(reference, hypothesis)` counts.
    pub fn process_characters(&mut self, reference: &str, hypothesis: &str) -> EditCounts {
        // Intern the code points of this pair into dense ids 0..k (ASCII through a table).
        let mut ascii = [NONE; 128];
        let mut next = 0u32;
        self.ids.clear();
        for (text, out) in [
            (py_strip(reference), &mut self.ref_ids),
            (py_strip(hypothesis), &mut self.hyp_ids),
        ] {
            out.clear();
            if text.is_ascii() {
                out.reserve(text.len());
                for &b in text.as_bytes() {
                    let slot = &mut ascii[usize::from(b & 0x7f)];
                    if *slot == NONE {
                        *slot = next;
                        next += 1;
                    }
                    out.push(*slot);
                }
            } else {
                for c in text.chars() {
                    let slot = if c.is_ascii() {
                        &mut ascii[c as usize]
                    } else {
                        self.ids.entry(u32::from(c)).or_insert(NONE)
                    };
                    if *slot == NONE {
                        *slot = next;
                        next += 1;
                    }
                    out.push(*slot);
                }
            }
        }
        let out = self
            .engine
            .counts(&self.ref_ids, &self.hyp_ids, next as usize);
        self.trim();
        out
    }

    /// Edit counts between two sequences of any comparable items (no transform), with
    /// RapidFuzz's tie-breaking, `reference` first.
    pub fn process_ids(&mut self, reference: &[u32], hypothesis: &[u32]) -> EditCounts {
        self.ids.clear();
        let ids = &mut self.ids;
        let mut intern = |c: &u32| -> u32 {
            let next = ids.len() as u32;
            *ids.entry(*c).or_insert(next)
        };
        self.ref_ids.clear();
        self.ref_ids.extend(reference.iter().map(&mut intern));
        self.hyp_ids.clear();
        self.hyp_ids.extend(hypothesis.iter().map(&mut intern));
        let vocab = self.ids.len();
        let out = self.engine.counts(&self.ref_ids, &self.hyp_ids, vocab);
        self.trim();
        out
    }

    /// Frees buffers a huge input left behind.
    fn trim(&mut self) {
        const KEEP: usize = 1 << 20;
        if self.ref_ids.capacity() + self.hyp_ids.capacity() > KEEP {
            self.ref_ids = Vec::new();
            self.hyp_ids = Vec::new();
            self.spans = Vec::new();
            self.interner = Interner::default();
        }
        if self.ids.capacity() > KEEP {
            self.ids = FxMap::default();
        }
    }
}

thread_local! {
    static SCORER: RefCell<WerScorer> = RefCell::new(WerScorer::new());
}

fn with_scorer<T>(f: impl FnOnce(&mut WerScorer) -> T) -> T {
    SCORER.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut WerScorer::new()),
    })
}

/// `jiwer.process_words(reference, hypothesis)`: word-level counts (reference first).
pub fn process_words(reference: &str, hypothesis: &str) -> EditCounts {
    with_scorer(|s| s.process_words(reference, hypothesis))
}

/// `jiwer.process_characters(reference, hypothesis)`: character-level counts.
pub fn process_characters(reference: &str, hypothesis: &str) -> EditCounts {
    with_scorer(|s| s.process_characters(reference, hypothesis))
}

/// `jiwer.wer(reference, hypothesis)` (reference first). Empty reference: the number of
/// hypothesis words.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    process_words(reference, hypothesis).error_rate()
}

/// `jiwer.cer(reference, hypothesis)` (reference first). Empty reference: the number of
/// hypothesis characters after `strip()`.
pub fn cer(reference: &str, hypothesis: &str) -> f64 {
    process_characters(reference, hypothesis).error_rate()
}

/// Summed word-level counts of `references[i]` vs `hypotheses[i]` (jiwer's list input).
/// Extra items of the longer slice are ignored.
pub fn corpus_word_counts<R: AsRef<str>, H: AsRef<str>>(
    references: &[R],
    hypotheses: &[H],
) -> EditCounts {
    with_scorer(|s| {
        references
            .iter()
            .zip(hypotheses)
            .map(|(r, h)| s.process_words(r.as_ref(), h.as_ref()))
            .sum()
    })
}

/// Summed character-level counts of `references[i]` vs `hypotheses[i]`.
pub fn corpus_char_counts<R: AsRef<str>, H: AsRef<str>>(
    references: &[R],
    hypotheses: &[H],
) -> EditCounts {
    with_scorer(|s| {
        references
            .iter()
            .zip(hypotheses)
            .map(|(r, h)| s.process_characters(r.as_ref(), h.as_ref()))
            .sum()
    })
}

/// `jiwer.wer(references, hypotheses)` on lists: the micro average Σ errors / Σ reference
/// words (Σ insertions when there is no reference word at all).
pub fn corpus_wer<R: AsRef<str>, H: AsRef<str>>(references: &[R], hypotheses: &[H]) -> f64 {
    corpus_word_counts(references, hypotheses).error_rate()
}

/// `jiwer.cer(references, hypotheses)` on lists: Σ errors / Σ reference characters.
pub fn corpus_cer<R: AsRef<str>, H: AsRef<str>>(references: &[R], hypotheses: &[H]) -> f64 {
    corpus_char_counts(references, hypotheses).error_rate()
}
