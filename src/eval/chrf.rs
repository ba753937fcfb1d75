//! chrF as [sacrebleu](https://github.com/mjpost/sacrebleu) 2.6.0 computes it by default
//! (statistics exact, scores within 1e-9 on the parity goldens; Popović 2015): character n-grams of order 1..6 over the text with all (Python)
//! whitespace removed, β = 2, precision and recall averaged over the orders both sides have.
//! [`Chrf::word_order`] = 2 gives chrF++.
//!
//! ```
//! use deepsynth::eval::{corpus_chrf, sentence_chrf};
//! assert_eq!(sentence_chrf("a b", &["ab"]).score, 100.0); // whitespace is ignored
//! let c = corpus_chrf(&["the cat", "東京都"], &["the cat sat on the mat", "東京"]);
//! assert_eq!(c.signature, "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0");
//! ```

use super::bleu::merged_matches;
use super::bleu::SACREBLEU_VERSION;
use super::pystr::{is_py_space, py_split, FxMap};

/// chrF settings; [`Default`] is sacrebleu's `CHRF()`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Chrf {
    /// Character n-gram order (6).
    pub char_order: usize,
    /// Word n-gram order (0 = chrF, 2 = chrF++).
    pub word_order: usize,
    /// Recall weight β (2).
    pub beta: u32,
    /// Keep whitespace inside character n-grams (false: all Python whitespace is removed).
    pub whitespace: bool,
    /// Average the per-order F scores with ε for missing orders (chrF++.py / NLTK / Moses
    /// style) instead of sacrebleu's default effective-order averaging of P and R.
    pub eps_smoothing: bool,
}

impl Default for Chrf {
    fn default() -> Self {
        Self {
            char_order: 6,
            word_order: 0,
            beta: 2,
            whitespace: false,
            eps_smoothing: false,
        }
    }
}

/// Per-order statistics `[hyp n-grams, ref n-grams, matches]`, character orders first then
/// word orders; they add up over a corpus.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChrfStats(pub Vec<[u64; 3]>);

impl ChrfStats {
    /// Adds `other` order by order (a shorter side counts as zeros).
    pub fn add(&mut self, other: &ChrfStats) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), [0; 3]);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            for k in 0..3 {
                a[k] += b[k];
            }
        }
    }
}

/// A chrF score.
#[derive(Clone, Debug, PartialEq)]
pub struct ChrfScore {
    /// chrF on the 0..100 scale.
    pub score: f64,
    /// The metric's name as sacrebleu prints it (`chrF2`, `chrF2++`).
    pub name: String,
    /// sacrebleu's signature, e.g. `nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0`.
    pub signature: String,
}

/// Highest character order of the sorted-key path (6 x 21 bits fit a `u128`).
const SORTED_MAX_ORDER: usize = 6;

/// Sorted packed keys of a text's positions (see [`Chrf::segment_stats_sorted`]): 8-bit slots
/// in a `u64` when every character is below U+00FF, else 21-bit slots in a `u128`.
enum SortedKeys {
    Narrow(Vec<u64>),
    Wide(Vec<u128>),
}

fn pack<K: super::bleu::GramKey>(chars: &[u32], bits: u32) -> Vec<K> {
    let mut keys: Vec<K> = (0..chars.len())
        .map(|i| {
            (0..SORTED_MAX_ORDER).fold(K::default(), |k, j| {
                k.push(bits, chars.get(i + j).copied().unwrap_or(0))
            })
        })
        .collect();
    keys.sort_unstable();
    keys
}

impl SortedKeys {
    /// The keys with 21-bit slots (order is kept: repacking is monotone).
    fn widened(&self) -> Vec<u128> {
        match self {
            SortedKeys::Wide(v) => v.clone(),
            SortedKeys::Narrow(v) => v
                .iter()
                .map(|&k| {
                    (0..SORTED_MAX_ORDER).fold(0u128, |acc, j| {
                        let slot = (k >> (8 * (SORTED_MAX_ORDER - 1 - j))) & 0xff;
                        (acc << 21) | u128::from(slot)
                    })
                })
                .collect(),
        }
    }
}

/// n-gram counter of one order: n-grams packed into a `u128` when they fit, else vectors.
enum Counter {
    Packed(FxMap<u128, u64>),
    Long(FxMap<Vec<u32>, u64>),
}

impl Counter {
    fn is_empty(&self) -> bool {
        match self {
            Counter::Packed(m) => m.is_empty(),
            Counter::Long(m) => m.is_empty(),
        }
    }

    fn total(&self) -> u64 {
        match self {
            Counter::Packed(m) => m.values().sum(),
            Counter::Long(m) => m.values().sum(),
        }
    }

    /// `(Σ counts of self, Σ min(count, other's count))`.
    fn overlap(&self, other: &Counter) -> (u64, u64) {
        fn go<K: std::hash::Hash + Eq>(a: &FxMap<K, u64>, b: &FxMap<K, u64>) -> (u64, u64) {
            let (mut total, mut matches) = (0, 0);
            for (g, &c) in a {
                total += c;
                if let Some(&rc) = b.get(g) {
                    matches += c.min(rc);
                }
            }
            (total, matches)
        }
        match (self, other) {
            (Counter::Packed(a), Counter::Packed(b)) => go(a, b),
            (Counter::Long(a), Counter::Long(b)) => go(a, b),
            (a, _) => (a.total(), 0),
        }
    }
}

/// n-gram counters of one segment, per order.
struct Ngrams {
    orders: Vec<Counter>,
}

impl Chrf {
    /// sacrebleu's signature string for `nrefs` references per segment (`None`: variable).
    pub fn signature(&self, nrefs: Option<usize>) -> String {
        let nrefs = nrefs.map_or_else(|| "var".to_owned(), |n| n.to_string());
        format!(
            "nrefs:{nrefs}|case:mixed|eff:{}|nc:{}|nw:{}|space:{}|version:{SACREBLEU_VERSION}",
            if self.eps_smoothing { "no" } else { "yes" },
            self.char_order,
            self.word_order,
            if self.whitespace { "yes" } else { "no" },
        )
    }

    fn name(&self) -> String {
        format!("chrF{}{}", self.beta, "+".repeat(self.word_order))
    }

    fn extract(&self, text: &str, words: &mut FxMap<String, u32>) -> Ngrams {
        let chars: Vec<u32> = if self.whitespace {
            text.chars().map(u32::from).collect()
        } else {
            text.chars()
                .filter(|&c| !is_py_space(c))
                .map(u32::from)
                .collect()
        };
        let mut orders = Vec::with_capacity(self.char_order + self.word_order);
        for n in 1..=self.char_order {
            orders.push(count(&chars, n, 21));
        }
        if self.word_order > 0 {
            let ids: Vec<u32> = remove_punctuation(text)
                .into_iter()
                .map(|w| {
                    let next = words.len() as u32;
                    *words.entry(w.to_owned()).or_insert(next)
                })
                .collect();
            for n in 1..=self.word_order {
                orders.push(count(&ids, n, 32));
            }
        }
        Ngrams { orders }
    }

    fn match_stats(hyp: &Ngrams, reference: &Ngrams) -> ChrfStats {
        ChrfStats(
            hyp.orders
                .iter()
                .zip(&reference.orders)
                .map(|(h, r)| {
                    let (hyp_count, matches) = h.overlap(r);
                    [if r.is_empty() { 0 } else { hyp_count }, r.total(), matches]
                })
                .collect(),
        )
    }

    /// Statistics of one hypothesis against its references: those of the reference with the
    /// best F score (the first on ties). With no reference, all zeros.
    pub fn segment_stats<S: AsRef<str>>(&self, hypothesis: &str, references: &[S]) -> ChrfStats {
        if self.word_order == 0 && (1..=SORTED_MAX_ORDER).contains(&self.char_order) {
            return self.segment_stats_sorted(hypothesis, references);
        }
        let mut words = FxMap::default();
        let hyp = self.extract(hypothesis, &mut words);
        let mut best = ChrfStats(vec![[0; 3]; self.char_order + self.word_order]);
        let mut best_f = -1.0;
        for r in references {
            let reference = self.extract(r.as_ref(), &mut words);
            let stats = Self::match_stats(&hyp, &reference);
            let f = self.f_score(&stats);
            if f > best_f {
                best_f = f;
                best = stats;
            }
        }
        best
    }

    /// Character n-gram statistics by sorting: every position's next `SORTED_MAX_ORDER`
    /// characters packed into one key (21 bits per character, `c + 1` so that 0 marks "past the
    /// end"), keys sorted once per text; the n-grams of every order are then the keys' top `n`
    /// slots, grouped contiguously, and matches come from one merge per order. Same counts as
    /// the hash-map path (checked by the parity tests), without per-order maps.
    fn segment_stats_sorted<S: AsRef<str>>(&self, hypothesis: &str, references: &[S]) -> ChrfStats {
        let hyp = self.sorted_keys(hypothesis);
        let mut best = ChrfStats(vec![[0; 3]; self.char_order]);
        let mut best_f = -1.0;
        for r in references {
            let reference = self.sorted_keys(r.as_ref());
            let stats = ChrfStats(
                (1..=self.char_order)
                    .map(|n| {
                        let count = |l: usize| (l + 1).saturating_sub(n) as u64;
                        let (h, r) = (count(hyp.1), count(reference.1));
                        let m = match (&hyp.0, &reference.0) {
                            (SortedKeys::Narrow(a), SortedKeys::Narrow(b)) => {
                                merged_matches(a, b, 8, SORTED_MAX_ORDER, n)
                            }
                            (SortedKeys::Wide(a), SortedKeys::Wide(b)) => {
                                merged_matches(a, b, 21, SORTED_MAX_ORDER, n)
                            }
                            // Mixed widths: widen the narrow side (same characters, 21-bit slots).
                            (a, b) => {
                                merged_matches(&a.widened(), &b.widened(), 21, SORTED_MAX_ORDER, n)
                            }
                        };
                        [if r == 0 { 0 } else { h }, r, m]
                    })
                    .collect(),
            );
            let f = self.f_score(&stats);
            if f > best_f {
                best_f = f;
                best = stats;
            }
        }
        best
    }

    /// Sorted packed keys of `text`'s positions (characters + 1, 0 = past the end) and the
    /// character count.
    fn sorted_keys(&self, text: &str) -> (SortedKeys, usize) {
        let chars: Vec<u32> = text
            .chars()
            .filter(|&c| self.whitespace || !is_py_space(c))
            .map(|c| u32::from(c) + 1)
            .collect();
        let keys = if chars.iter().all(|&c| c < 256) {
            SortedKeys::Narrow(pack(&chars, 8))
        } else {
            SortedKeys::Wide(pack(&chars, 21))
        };
        (keys, chars.len())
    }

    /// sacrebleu's `CHRF._compute_f_score` on (summed) statistics, on the 0..100 scale.
    pub fn f_score(&self, stats: &ChrfStats) -> f64 {
        let eps = 1e-16;
        let factor = f64::from(self.beta) * f64::from(self.beta);
        let mut score = 0.0;
        let mut effective_order = 0u32;
        let (mut avg_prec, mut avg_rec) = (0.0f64, 0.0f64);
        for s in &stats.0 {
            let [n_hyp, n_ref, n_match] = *s;
            let prec = if n_hyp > 0 {
                n_match as f64 / n_hyp as f64
            } else {
                eps
            };
            let rec = if n_ref > 0 {
                n_match as f64 / n_ref as f64
            } else {
                eps
            };
            let denom = factor * prec + rec;
            score += if denom > 0.0 {
                (1.0 + factor) * prec * rec / denom
            } else {
                eps
            };
            if n_hyp > 0 && n_ref > 0 {
                avg_prec += prec;
                avg_rec += rec;
                effective_order += 1;
            }
        }
        if self.eps_smoothing {
            let order = (self.char_order + self.word_order) as f64;
            return 100.0 * score / order;
        }
        if effective_order == 0 {
            avg_prec = 0.0;
            avg_rec = 0.0;
        } else {
            avg_prec /= f64::from(effective_order);
            avg_rec /= f64::from(effective_order);
        }
        if avg_prec + avg_rec != 0.0 {
            let mut score = (1.0 + factor) * avg_prec * avg_rec;
            score /= (factor * avg_prec) + avg_rec;
            100.0 * score
        } else {
            0.0
        }
    }

    /// The score of already summed statistics.
    pub fn score_from_stats(&self, stats: &ChrfStats, nrefs: Option<usize>) -> ChrfScore {
        ChrfScore {
            score: self.f_score(stats),
            name: self.name(),
            signature: self.signature(nrefs),
        }
    }

    /// chrF of one hypothesis against one or more references (`CHRF.sentence_score`).
    pub fn sentence_score<S: AsRef<str>>(&self, hypothesis: &str, references: &[S]) -> ChrfScore {
        let stats = self.segment_stats(hypothesis, references);
        self.score_from_stats(&stats, Some(references.len()))
    }

    /// Corpus chrF, one reference per hypothesis: statistics summed over segments, then
    /// scored. Extra items of the longer slice are ignored.
    pub fn corpus_score<H: AsRef<str>, R: AsRef<str>>(
        &self,
        hypotheses: &[H],
        references: &[R],
    ) -> ChrfScore {
        let mut total = ChrfStats(vec![[0; 3]; self.char_order + self.word_order]);
        for (h, r) in hypotheses.iter().zip(references) {
            total.add(&self.segment_stats(h.as_ref(), &[r.as_ref()]));
        }
        self.score_from_stats(&total, Some(1))
    }

    /// Corpus chrF with any number of references per hypothesis (`references[i]` for
    /// `hypotheses[i]`).
    pub fn corpus_score_multi<H, R, S>(&self, hypotheses: &[H], references: &[R]) -> ChrfScore
    where
        H: AsRef<str>,
        R: AsRef<[S]>,
        S: AsRef<str>,
    {
        let mut nrefs: Option<Option<usize>> = None;
        let mut total = ChrfStats(vec![[0; 3]; self.char_order + self.word_order]);
        for (h, r) in hypotheses.iter().zip(references) {
            let r = r.as_ref();
            nrefs = match nrefs {
                None => Some(Some(r.len())),
                Some(Some(n)) if n == r.len() => Some(Some(n)),
                _ => Some(None),
            };
            total.add(&self.segment_stats(h.as_ref(), r));
        }
        self.score_from_stats(&total, nrefs.flatten())
    }
}

/// Counter of the n-grams of `seq`, whose items fit in `bits` bits.
fn count(seq: &[u32], n: usize, bits: usize) -> Counter {
    let cap = (seq.len() + 1).saturating_sub(n);
    if n * bits <= 128 {
        let mut m: FxMap<u128, u64> = FxMap::with_capacity_and_hasher(cap, Default::default());
        if n > 0 && seq.len() >= n {
            for w in seq.windows(n) {
                let key = w.iter().fold(0u128, |k, &x| (k << bits) | u128::from(x));
                *m.entry(key).or_insert(0) += 1;
            }
        }
        Counter::Packed(m)
    } else {
        let mut m: FxMap<Vec<u32>, u64> = FxMap::with_capacity_and_hasher(cap, Default::default());
        if seq.len() >= n {
            for w in seq.windows(n) {
                if let Some(c) = m.get_mut(w) {
                    *c += 1;
                } else {
                    m.insert(w.to_vec(), 1);
                }
            }
        }
        Counter::Long(m)
    }
}

/// sacrebleu's `CHRF._remove_punctuation`: words (Python `split()`), with one ASCII
/// punctuation mark split off the end, or else off the start, of words longer than one char.
fn remove_punctuation(text: &str) -> Vec<&str> {
    const PUNCTS: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    let mut out = Vec::new();
    for w in py_split(text) {
        let mut it = w.char_indices();
        let first = it.next();
        if it.next().is_none() {
            out.push(w);
            continue;
        }
        let (last_at, last) = w.char_indices().next_back().unwrap_or((0, ' '));
        let first = first.map_or(' ', |(_, c)| c);
        if PUNCTS.contains(last) {
            out.push(&w[..last_at]);
            out.push(&w[last_at..]);
        } else if PUNCTS.contains(first) {
            out.push(&w[..1]);
            out.push(&w[1..]);
        } else {
            out.push(w);
        }
    }
    out
}

/// `sacrebleu.sentence_chrf(hypothesis, references)` with the `CHRF()` defaults.
pub fn sentence_chrf<S: AsRef<str>>(hypothesis: &str, references: &[S]) -> ChrfScore {
    Chrf::default().sentence_score(hypothesis, references)
}

/// `sacrebleu.corpus_chrf(hypotheses, [references])` with the `CHRF()` defaults, one
/// reference per hypothesis.
pub fn corpus_chrf<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[R]) -> ChrfScore {
    Chrf::default().corpus_score(hypotheses, references)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_split() {
        assert_eq!(
            remove_punctuation("Hello, (world) ! é. \"x"),
            ["Hello", ",", "(world", ")", "!", "é", ".", "\"", "x"]
        );
    }

    #[test]
    fn empty_inputs() {
        assert_eq!(sentence_chrf("", &[""]).score, 0.0);
        assert_eq!(sentence_chrf::<&str>("abc", &[]).score, 0.0);
        assert_eq!(corpus_chrf::<&str, &str>(&[], &[]).score, 0.0);
        assert_eq!(sentence_chrf("\u{1c}", &["\u{1d}"]).score, 0.0);
    }

    #[test]
    fn names() {
        let pp = Chrf {
            word_order: 2,
            ..Chrf::default()
        };
        assert_eq!(pp.sentence_score("a", &["a"]).name, "chrF2++");
    }
}
