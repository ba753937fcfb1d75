//! WER and CER exactly as [jiwer](https://github.com/jitsi/jiwer) 4.0.0 computes them by
//! default, including its hit / substitution / deletion / insertion split.
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

use super::pystr::{is_py_space, py_strip, FxMap};

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

/// jiwer's `wer_default` transform: `re.sub(r"\s\s+", " ")` (a run of two or more Python
/// whitespace characters becomes one space; a lone `\n`, `\t` or NBSP stays), `strip()`, then
/// split on the single character `' '` dropping empty strings.
///
/// ```
/// use deepsynth::eval::wer_words;
/// assert_eq!(wer_words("  a \n b\u{a0}c "), ["a", "b\u{a0}c"]);
/// ```
pub fn wer_words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for_each_wer_word(text, |w| out.push(w));
    out
}

/// Calls `f` with each word of [`wer_words`] without collecting them.
fn for_each_wer_word<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    // After strip(), words are the maximal pieces without ' ' and without any whitespace run
    // of length >= 2; a lone non-space whitespace char stays inside its word.
    let t = py_strip(text);
    let b = t.as_bytes();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        // Fast path: printable ASCII bytes are word bytes.
        if b[i] > b' ' && b[i] < 0x7f {
            if start.is_none() {
                start = Some(i);
            }
            i += 1;
            while i < b.len() && b[i] > b' ' && b[i] < 0x7f {
                i += 1;
            }
            continue;
        }
        let (ws, len) = classify(t, i);
        if !ws {
            if start.is_none() {
                start = Some(i);
            }
            i += len;
            continue;
        }
        let run_start = i;
        let mut count = 0;
        let mut has_space = false;
        while i < b.len() {
            let (ws, len) = classify(t, i);
            if !ws {
                break;
            }
            count += 1;
            has_space |= b[i] == b' ';
            i += len;
        }
        if count > 1 || has_space {
            if let Some(s) = start.take() {
                f(&t[s..run_start]);
            }
        } else if start.is_none() {
            start = Some(run_start);
        }
    }
    if let Some(s) = start {
        f(&t[s..]);
    }
}

/// Whether the char at byte `i` of `t` is Python whitespace, and its UTF-8 length.
#[inline(always)]
fn classify(t: &str, i: usize) -> (bool, usize) {
    let b = t.as_bytes()[i];
    if b < 0x80 {
        (matches!(b, b'\t'..=b'\r' | 0x1c..=0x20), 1)
    } else {
        let c = t[i..].chars().next().unwrap_or(' ');
        (is_py_space(c), c.len_utf8())
    }
}

/// jiwer's `cer_default` transform: `strip()`, then the code points (spaces and inner
/// whitespace runs count).
pub fn cer_chars(text: &str) -> impl Iterator<Item = char> + '_ {
    py_strip(text).chars()
}

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

/// Interns the words of one reference–hypothesis pair into dense ids: an open-addressing
/// table of (hash, id, stamp) reused across calls (a new stamp empties it).
#[derive(Default)]
struct Interner {
    table: Vec<(u64, u32, u32)>,
    bits: u32,
    stamp: u32,
    /// For each id: (side, start, end) of its first occurrence.
    words: Vec<(usize, usize, usize)>,
}

impl Interner {
    fn reset(&mut self, n: usize) {
        self.words.clear();
        let want = (2 * n + 16).next_power_of_two();
        if self.table.len() < want || self.stamp == u32::MAX {
            self.table.clear();
            self.table.resize(want.max(self.table.len()), (0, 0, 0));
            self.bits = self.table.len().trailing_zeros();
            self.stamp = 0;
        }
        self.stamp += 1;
    }

    fn len(&self) -> usize {
        self.words.len()
    }

    #[inline]
    fn intern(&mut self, texts: [&str; 2], side: usize, a: usize, b: usize) -> u32 {
        let word = &texts[side].as_bytes()[a..b];
        let h = hash_bytes(word);
        let mask = self.table.len() - 1;
        let mut idx = (h >> (64 - self.bits)) as usize;
        loop {
            let (eh, id, stamp) = self.table[idx];
            if stamp != self.stamp {
                let id = self.words.len() as u32;
                self.table[idx] = (h, id, self.stamp);
                self.words.push((side, a, b));
                return id;
            }
            if eh == h {
                let (s, x, y) = self.words[id as usize];
                if bytes_eq(&texts[s].as_bytes()[x..y], word) {
                    return id;
                }
            }
            idx = (idx + 1) & mask;
        }
    }
}

/// Byte-string equality, inlined for short words (no `memcmp` call).
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && if a.len() <= 16 {
            a.iter().zip(b).all(|(x, y)| x == y)
        } else {
            a == b
        }
}

/// FxHash-style hash of a byte string (8 bytes per round, length mixed in).
#[inline]
fn hash_bytes(bytes: &[u8]) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = 0u64;
        for (k, &x) in rest.iter().enumerate() {
            w |= u64::from(x) << (8 * k);
        }
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// Byte range of `part` (a subslice) inside `whole`.
#[inline]
fn span_of(whole: &str, part: &str) -> (usize, usize) {
    let a = part.as_ptr() as usize - whole.as_ptr() as usize;
    (a, a + part.len())
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

// ---------------------------------------------------------------------------------------
// RapidFuzz-compatible alignment.

const NONE: u32 = u32::MAX;

/// Pattern-match bit vectors of one sequence (the "s1" side), 64 positions per word: for
/// each distinct symbol, its (word, mask) entries in word order.
#[derive(Default)]
struct PatternMatch {
    /// Symbol (dense id below the engine's `vocab`) -> local index, or [`NONE`].
    local: Vec<u32>,
    /// Symbols given a local index by the last build (reset by the next one).
    touched: Vec<u32>,
    start: Vec<usize>,
    entries: Vec<(usize, u64)>,
    last_word: Vec<usize>,
    cursor: Vec<usize>,
    words: usize,
}

impl PatternMatch {
    fn build(&mut self, s1: &[u32], vocab: usize) {
        for &c in &self.touched {
            self.local[c as usize] = NONE;
        }
        self.touched.clear();
        if self.local.len() < vocab {
            self.local.resize(vocab, NONE);
        }
        self.words = s1.len().div_ceil(64);
        self.last_word.clear();
        self.start.clear();
        self.start.push(0);
        for (p, &c) in s1.iter().enumerate() {
            let w = p / 64;
            let mut l = self.local[c as usize];
            if l == NONE {
                l = self.touched.len() as u32;
                self.local[c as usize] = l;
                self.touched.push(c);
                self.last_word.push(usize::MAX);
                self.start.push(0);
            }
            let l = l as usize;
            if self.last_word[l] != w {
                self.last_word[l] = w;
                self.start[l + 1] += 1;
            }
        }
        let k = self.touched.len();
        for i in 0..k {
            self.start[i + 1] += self.start[i];
        }
        self.entries.clear();
        self.entries.resize(self.start[k], (0, 0));
        self.cursor.clear();
        self.cursor.extend_from_slice(&self.start[..k]);
        self.last_word.iter_mut().for_each(|w| *w = usize::MAX);
        for (p, &c) in s1.iter().enumerate() {
            let (w, l) = (p / 64, self.local[c as usize] as usize);
            if self.last_word[l] != w {
                self.last_word[l] = w;
                self.entries[self.cursor[l]] = (w, 0);
                self.cursor[l] += 1;
            }
            self.entries[self.cursor[l] - 1].1 |= 1u64 << (p % 64);
        }
    }

    /// Entries of symbol `c` (of the other sequence) with words in `fw..=lw`.
    #[inline]
    fn entries(&self, c: u32, fw: usize, lw: usize) -> &[(usize, u64)] {
        let l = match self.local.get(c as usize) {
            Some(&l) if l != NONE => l as usize,
            _ => return &[],
        };
        let all = &self.entries[self.start[l]..self.start[l + 1]];
        if fw == 0 && lw + 1 >= self.words {
            return all;
        }
        let a = all.partition_point(|e| e.0 < fw);
        let b = all.partition_point(|e| e.0 <= lw);
        &all[a..b.max(a)]
    }
}

/// One word of one row of Hyyrö's block algorithm (RapidFuzz's
/// `levenshtein_hyrroe2003_block::advance_block`): updates the vertical vectors of the word
/// and the horizontal carries.
#[inline(always)]
fn word_step(pm: u64, vp: &mut u64, vn: &mut u64, hp_carry: &mut u64, hn_carry: &mut u64) {
    let (v_p, v_n) = (*vp, *vn);
    let x = pm | *hn_carry;
    let d0 = ((x & v_p).wrapping_add(v_p) ^ v_p) | x | v_n;
    let hp = v_n | !(d0 | v_p);
    let hn = d0 & v_p;
    let hp_shift = (hp << 1) | *hp_carry;
    let hn_shift = (hn << 1) | *hn_carry;
    *hp_carry = hp >> 63;
    *hn_carry = hn >> 63;
    *vp = hn_shift | !(d0 | hp_shift);
    *vn = hp_shift & d0;
}

/// One row `a` (words `fa.0..=fa.1`) and optionally the next row `b` (words `fb.0..=fb.1`,
/// with `fa.0 <= fb.0 <= fa.1 + 1` and `fa.1 <= fb.1`), interleaved word by word so the two
/// carry chains overlap. The horizontal carry entering each row's first word is +1 (exact on
/// the top border, an upper bound inside the matrix). New vertical vectors also go to the
/// `rec_*` slices (indexed from the row's first word) when they are non-empty.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn advance_rows(
    pm_a: &[u64],
    pm_b: Option<&[u64]>,
    vp: &mut [u64],
    vn: &mut [u64],
    fa: (usize, usize),
    fb: (usize, usize),
    rec_a: (&mut [u64], &mut [u64]),
    rec_b: (&mut [u64], &mut [u64]),
) {
    let (rec_a_vp, rec_a_vn) = rec_a;
    let (rec_b_vp, rec_b_vn) = rec_b;
    let record = !rec_a_vp.is_empty();
    let (mut hpa, mut hna) = (1u64, 0u64);
    match pm_b {
        None => {
            for w in fa.0..=fa.1 {
                word_step(pm_a[w], &mut vp[w], &mut vn[w], &mut hpa, &mut hna);
                if record {
                    rec_a_vp[w - fa.0] = vp[w];
                    rec_a_vn[w - fa.0] = vn[w];
                }
            }
        }
        Some(pm_b) => {
            let (mut hpb, mut hnb) = (1u64, 0u64);
            // Row a alone before row b's band starts.
            for w in fa.0..fb.0 {
                word_step(pm_a[w], &mut vp[w], &mut vn[w], &mut hpa, &mut hna);
                if record {
                    rec_a_vp[w - fa.0] = vp[w];
                    rec_a_vn[w - fa.0] = vn[w];
                }
            }
            // Both rows: a at word w, then b at word w.
            for w in fb.0..=fa.1 {
                let (mut v_p, mut v_n) = (vp[w], vn[w]);
                word_step(pm_a[w], &mut v_p, &mut v_n, &mut hpa, &mut hna);
                if record {
                    rec_a_vp[w - fa.0] = v_p;
                    rec_a_vn[w - fa.0] = v_n;
                }
                word_step(pm_b[w], &mut v_p, &mut v_n, &mut hpb, &mut hnb);
                if record {
                    rec_b_vp[w - fb.0] = v_p;
                    rec_b_vn[w - fb.0] = v_n;
                }
                vp[w] = v_p;
                vn[w] = v_n;
            }
            // Row b alone after row a's band ends.
            for w in (fa.1 + 1).max(fb.0)..=fb.1 {
                word_step(pm_b[w], &mut vp[w], &mut vn[w], &mut hpb, &mut hnb);
                if record {
                    rec_b_vp[w - fb.0] = vp[w];
                    rec_b_vn[w - fb.0] = vn[w];
                }
            }
        }
    }
}

/// Two disjoint mutable ranges of `v` (`b` after `a`, or empty).
fn split_two(
    v: &mut [u64],
    a: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
) -> (&mut [u64], &mut [u64]) {
    if b.is_empty() {
        (&mut v[a], &mut [])
    } else {
        let (x, y) = v.split_at_mut(b.start);
        (&mut x[a], &mut y[..b.end - b.start])
    }
}

/// "Unreachable" score for cells outside a band.
const FAR: usize = usize::MAX / 4;

/// Diagonals `i - j` (s1 index minus s2 index, 1-based cells) of the cells of an
/// `l1` × `l2` matrix that lie on some path of cost <= `max` + 2: `lo..=hi`.
fn band_diagonals(l1: usize, l2: usize, max: usize) -> (i64, i64) {
    let diff = l1 as i64 - l2 as i64;
    let k = ((max as i64).saturating_add(2) - diff.abs()).max(0) / 2;
    (diff.min(0) - k, diff.max(0) + k)
}

/// First and last word (64 cells of s1 each) holding band cells of row `r` (0-based, so
/// j = r + 1).
#[inline]
fn band_words(r: usize, l1: usize, lo: i64, hi: i64) -> (usize, usize) {
    let j = r as i64 + 1;
    let first_col = (j + lo).clamp(1, l1 as i64) as usize;
    let last_col = (j + hi).clamp(1, l1 as i64) as usize;
    let fw = (first_col - 1) / 64;
    (fw, ((last_col - 1) / 64).max(fw))
}

/// Dense table size limit (u64 entries).
const DENSE_PM_LIMIT: usize = 1 << 16;

/// The alignment engine with its reusable buffers.
#[derive(Default)]
struct Engine {
    pm: PatternMatch,
    pm_dense: Vec<u64>,
    pm_row: Vec<u64>,
    pm_row2: Vec<u64>,
    vp: Vec<u64>,
    vn: Vec<u64>,
    // Recorded band matrix: per row the first word and the offset of its words.
    rec_vp: Vec<u64>,
    rec_vn: Vec<u64>,
    row_fw: Vec<u32>,
    row_lw: Vec<u32>,
    row_off: Vec<usize>,
    rev1: Vec<u32>,
    rev2: Vec<u32>,
    left: Vec<usize>,
    right: Vec<usize>,
    scores: Vec<usize>,
    vocab: usize,
    /// Moving average of distance / length over recent long pairs (to size the band).
    rate_ema: f64,
    subs: u64,
    dels: u64,
    ins: u64,
}

impl Engine {
    /// Counts for `s1` (reference) vs `s2` (hypothesis), symbols being ids below `vocab`.
    fn counts(&mut self, s1: &[u32], s2: &[u32], vocab: usize) -> EditCounts {
        self.vocab = vocab;
        self.subs = 0;
        self.dels = 0;
        self.ins = 0;
        // levenshtein_editops: score_cutoff = max(len1, len2) (no score_hint from jiwer).
        self.align(s1, s2, s1.len().max(s2.len()));
        self.trim();
        let (s, d, i) = (self.subs, self.dels, self.ins);
        EditCounts {
            hits: s1.len() as u64 - s - d,
            substitutions: s,
            deletions: d,
            insertions: i,
        }
    }

    /// `levenshtein_align_hirschberg`.
    fn align(&mut self, s1: &[u32], s2: &[u32], max: usize) {
        let prefix = s1.iter().zip(s2).take_while(|(a, b)| a == b).count();
        let (s1, s2) = (&s1[prefix..], &s2[prefix..]);
        let suffix = s1
            .iter()
            .rev()
            .zip(s2.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let (s1, s2) = (&s1[..s1.len() - suffix], &s2[..s2.len() - suffix]);
        let (l1, l2) = (s1.len(), s2.len());

        let max = max.min(l1.max(l2));
        let full_band = l1.min(max.saturating_mul(2).saturating_add(1)) as u128;
        let matrix_size = 2 * full_band * l2 as u128 / 8;
        if matrix_size < 1024 * 1024 || l1 < 65 || l2 < 10 {
            self.align_direct(s1, s2, max);
        } else {
            let (s1_mid, s2_mid, left_score, right_score) = self.hirschberg_pos(s1, s2, max);
            self.align(&s1[..s1_mid], &s2[..s2_mid], left_score);
            self.align(&s1[s1_mid..], &s2[s2_mid..], right_score);
        }
    }

    /// Builds the pattern-match rows of `s1`; returns `Some(rows)` when the dense table is
    /// used (symbols at or above `rows` match nowhere), `None` for the sparse lists.
    fn build_pm(&mut self, s1: &[u32]) -> Option<usize> {
        let words = s1.len().div_ceil(64);
        let rows = s1.iter().max().map_or(0, |&m| m as usize + 1);
        if rows.saturating_mul(words) <= DENSE_PM_LIMIT {
            self.pm_dense.clear();
            self.pm_dense.resize((rows + 1) * words, 0);
            for (p, &c) in s1.iter().enumerate() {
                self.pm_dense[c as usize * words + p / 64] |= 1u64 << (p % 64);
            }
            Some(rows)
        } else {
            self.pm.build(s1, self.vocab);
            for row in [&mut self.pm_row, &mut self.pm_row2] {
                row.clear();
                row.resize(words, 0);
            }
            None
        }
    }

    /// Rows `r` and (when `two`) `r + 1` of `s2` over the band words `fa` / `fb`, recording
    /// into the `rec_*` ranges `ra` / `rb` (empty ranges: no recording).
    #[allow(clippy::too_many_arguments)]
    fn run_rows(
        &mut self,
        dense: Option<usize>,
        ca: u32,
        cb: Option<u32>,
        fa: (usize, usize),
        fb: (usize, usize),
        ra: std::ops::Range<usize>,
        rb: std::ops::Range<usize>,
    ) {
        let words = self.vp.len();
        let (rec_vp_a, rec_vp_b) = split_two(&mut self.rec_vp, ra.clone(), rb.clone());
        let (rec_vn_a, rec_vn_b) = split_two(&mut self.rec_vn, ra, rb);
        if let Some(rows) = dense {
            let row = |c: u32| {
                let c = (c as usize).min(rows);
                &self.pm_dense[c * words..(c + 1) * words]
            };
            advance_rows(
                row(ca),
                cb.map(row),
                &mut self.vp,
                &mut self.vn,
                fa,
                fb,
                (rec_vp_a, rec_vn_a),
                (rec_vp_b, rec_vn_b),
            );
        } else {
            let ea = self.pm.entries(ca, fa.0, fa.1);
            for &(w, m) in ea {
                self.pm_row[w] = m;
            }
            let eb = cb.map_or(&[][..], |c| self.pm.entries(c, fb.0, fb.1));
            for &(w, m) in eb {
                self.pm_row2[w] = m;
            }
            advance_rows(
                &self.pm_row,
                cb.map(|_| &self.pm_row2[..]),
                &mut self.vp,
                &mut self.vn,
                fa,
                fb,
                (rec_vp_a, rec_vn_a),
                (rec_vp_b, rec_vn_b),
            );
            for &(w, _) in ea {
                self.pm_row[w] = 0;
            }
            for &(w, _) in eb {
                self.pm_row2[w] = 0;
            }
        }
    }

    /// Scores `D(i, rows.len())` for i = 0..=len(s1) into `right` or `left`, computing only
    /// the band of diagonals of the `len(s1)` × `l2` problem whose cells lie on paths of cost
    /// <= `max` + 2 (cells outside the band get [`FAR`]; cells inside are upper bounds, exact
    /// on paths of cost <= `max`).
    fn band_row(&mut self, s1: &[u32], rows: &[u32], l2: usize, max: usize, out_right: bool) {
        let l1 = s1.len();
        let words = l1.div_ceil(64);
        let (lo, hi) = band_diagonals(l1, l2, max);
        let dense = self.build_pm(s1);
        let bottom = |w: usize| ((w + 1) * 64).min(l1);
        let last_bit = (l1 - 1) % 64;
        self.vp.clear();
        self.vp.resize(words, !0);
        self.vn.clear();
        self.vn.resize(words, 0);
        // Absolute value of each word's bottom cell, D(bottom(w), j).
        self.scores.clear();
        self.scores.extend((0..words).map(bottom));
        let (mut fw, mut lw) = (0, 0);
        for (r, &c) in rows.iter().enumerate() {
            let (f, l) = band_words(r, l1, lo, hi);
            let l = if r == 0 { l } else { l.max(lw) };
            // Words entering the band start from "+1 per row down" (an upper bound).
            let from = if r == 0 { words } else { lw + 1 };
            for w in from..=l {
                self.vp[w] = !0;
                self.vn[w] = 0;
                self.scores[w] = self.scores[w - 1] + (bottom(w) - w * 64);
            }
            (fw, lw) = (f, l);
            let pm_dense;
            let pm: &[u64] = if let Some(n) = dense {
                let c = (c as usize).min(n);
                pm_dense = &self.pm_dense[c * words..(c + 1) * words];
                pm_dense
            } else {
                for &(w, m) in self.pm.entries(c, fw, lw) {
                    self.pm_row[w] = m;
                }
                &self.pm_row
            };
            let (mut hp_c, mut hn_c) = (1u64, 0u64);
            for (w, &pm_w) in pm.iter().enumerate().take(lw + 1).skip(fw) {
                let (v_p, v_n) = (self.vp[w], self.vn[w]);
                let x = pm_w | hn_c;
                let d0 = ((x & v_p).wrapping_add(v_p) ^ v_p) | x | v_n;
                let hp = v_n | !(d0 | v_p);
                let hn = d0 & v_p;
                let b = if w + 1 == words { last_bit } else { 63 };
                self.scores[w] = self.scores[w]
                    .wrapping_add(((hp >> b) & 1) as usize)
                    .wrapping_sub(((hn >> b) & 1) as usize);
                let hp_shift = (hp << 1) | hp_c;
                let hn_shift = (hn << 1) | hn_c;
                hp_c = hp >> 63;
                hn_c = hn >> 63;
                self.vp[w] = hn_shift | !(d0 | hp_shift);
                self.vn[w] = hp_shift & d0;
            }
            if dense.is_none() {
                for &(w, _) in self.pm.entries(c, fw, lw) {
                    self.pm_row[w] = 0;
                }
            }
        }
        let out = if out_right {
            &mut self.right
        } else {
            &mut self.left
        };
        out.clear();
        out.resize(l1 + 1, FAR);
        if rows.is_empty() {
            for (i, o) in out.iter_mut().enumerate() {
                *o = i;
            }
            return;
        }
        for w in fw..=lw {
            let mut val = self.scores[w];
            for i in (w * 64 + 1..=bottom(w)).rev() {
                out[i] = val;
                let b = (i - 1) % 64;
                val = val
                    .wrapping_add(((self.vn[w] >> b) & 1) as usize)
                    .wrapping_sub(((self.vp[w] >> b) & 1) as usize);
            }
            if w == 0 {
                out[0] = val;
            }
        }
    }

    /// `find_hirschberg_pos`: split s2 in the middle and take the first s1 position with the
    /// smallest sum of the two half distances. Returns (s1_mid, s2_mid, left, right).
    ///
    /// The half rows are first computed in a narrow band; the best sum `b` bounds the
    /// distance from above, so if `b` fits the band the split is RapidFuzz's (every optimal
    /// split point lies in the band with its exact values, and no other point can reach `b`),
    /// else a second pass with the band for `b` (or `max`) is exact.
    fn hirschberg_pos(
        &mut self,
        s1: &[u32],
        s2: &[u32],
        max: usize,
    ) -> (usize, usize, usize, usize) {
        let (l1, l2) = (s1.len(), s2.len());
        let left_size = l2 / 2;
        let mut rev1 = std::mem::take(&mut self.rev1);
        let mut rev2 = std::mem::take(&mut self.rev2);
        rev1.clear();
        rev1.extend(s1.iter().rev());
        rev2.clear();
        rev2.extend(s2[left_size..].iter().rev());
        // A narrow first band (cheap next to the whole matrix); its best sum then bounds the
        // distance for the second pass if needed.
        let mut band = (l1.abs_diff(l2) + 128).min(max);
        let best = loop {
            self.band_row(&rev1, &rev2, l2, band, true);
            self.band_row(s1, &s2[..left_size], l2, band, false);
            let mut best = (FAR, 0, 0, 0);
            for i in 0..=l1 {
                let (l, r) = (self.left[i], self.right[l1 - i]);
                if l.saturating_add(r) < best.0 {
                    best = (l + r, i, l, r);
                }
            }
            if best.0 <= band || band >= max {
                break best;
            }
            band = best.0.min(max);
        };
        self.rev1 = rev1;
        self.rev2 = rev2;
        (best.1, left_size, best.2, best.3)
    }

    /// `levenshtein_align` + `recover_alignment` on a stripped pair, counting operations.
    ///
    /// `max` is at least the distance. The walk reads only cells on paths of cost at most the
    /// distance plus 2, so any band of diagonals holding all those cells gives RapidFuzz's exact walk
    /// (cells outside are upper bounds). A first try uses a narrower band sized by a guess;
    /// the walk it yields is a valid alignment whose cost `p` bounds the distance, so if
    /// `p <= guess` the band was wide enough and the result stands, else a second pass with
    /// the band for `p` is exact.
    fn align_direct(&mut self, s1: &[u32], s2: &[u32], max: usize) {
        let (l1, l2) = (s1.len(), s2.len());
        if l1 == 0 || l2 == 0 {
            self.dels += l1 as u64;
            self.ins += l2 as u64;
            return;
        }
        // The guess follows the error rate of recent pairs (speed only: results are exact
        // whatever the guess).
        let longer = l1.max(l2);
        let rate = if self.rate_ema > 0.0 {
            self.rate_ema
        } else {
            0.2
        };
        let guess = l1.abs_diff(l2) + (longer as f64 * (rate * 1.25 + 0.03)) as usize + 16;
        let mut band = Some(max);
        if l1 > 256 && guess.saturating_mul(2) < max {
            let (s, d, i) = self.fill_and_walk(s1, s2, guess);
            let p = (s + d + i) as usize;
            if p <= guess {
                self.record(s, d, i, longer);
                band = None;
            } else {
                band = Some(p.min(max));
            }
        }
        if let Some(band) = band {
            let (s, d, i) = self.fill_and_walk(s1, s2, band);
            self.record(s, d, i, longer);
        }
    }

    fn record(&mut self, s: u64, d: u64, i: u64, longer: usize) {
        self.subs += s;
        self.dels += d;
        self.ins += i;
        if longer > 256 {
            let rate = (s + d + i) as f64 / longer as f64;
            self.rate_ema = if self.rate_ema > 0.0 {
                0.8 * self.rate_ema + 0.2 * rate
            } else {
                rate
            };
        }
    }

    /// Fills the band of diagonals holding every cell on a path of cost <= `max` + 2 and
    /// walks back from the end with RapidFuzz's rules; returns (S, D, I).
    fn fill_and_walk(&mut self, s1: &[u32], s2: &[u32], max: usize) -> (u64, u64, u64) {
        let (l1, l2) = (s1.len(), s2.len());
        let (lo, hi) = band_diagonals(l1, l2, max);
        let words = l1.div_ceil(64);

        // Band words per row (monotone), and where each row goes in the record.
        self.row_fw.clear();
        self.row_lw.clear();
        self.row_off.clear();
        let mut total = 0usize;
        let mut prev_lw = 0usize;
        for r in 0..l2 {
            let (fw, lw) = band_words(r, l1, lo, hi);
            let lw = lw.max(prev_lw);
            prev_lw = lw;
            self.row_fw.push(fw as u32);
            self.row_lw.push(lw as u32);
            self.row_off.push(total);
            total += lw - fw + 1;
        }
        // Every recorded word is written below, so stale contents need no clearing.
        if self.rec_vp.len() < total {
            self.rec_vp.resize(total, 0);
            self.rec_vn.resize(total, 0);
        }

        let dense = self.build_pm(s1);
        self.vp.clear();
        self.vp.resize(words, !0);
        self.vn.clear();
        self.vn.resize(words, 0);
        let mut r = 0;
        while r < l2 {
            let two = r + 1 < l2;
            let fa = (self.row_fw[r] as usize, self.row_lw[r] as usize);
            let ra = self.row_off[r]..self.row_off[r] + fa.1 - fa.0 + 1;
            // Words entering the band start from "+1 per row down" (an upper bound).
            let last = if two { r + 1 } else { r };
            let before = if r > 0 {
                self.row_lw[r - 1] as usize + 1
            } else {
                words
            };
            for w in before..=self.row_lw[last] as usize {
                self.vp[w] = !0;
                self.vn[w] = 0;
            }
            let (fb, rb) = if two {
                let fb = (self.row_fw[r + 1] as usize, self.row_lw[r + 1] as usize);
                (
                    fb,
                    self.row_off[r + 1]..self.row_off[r + 1] + fb.1 - fb.0 + 1,
                )
            } else {
                (fa, 0..0)
            };
            let cb = two.then(|| s2[r + 1]);
            self.run_rows(dense, s2[r], cb, fa, fb, ra, rb);
            r += if two { 2 } else { 1 };
        }

        // recover_alignment
        let (mut subs, mut dels, mut ins) = (0u64, 0u64, 0u64);
        let (mut col, mut row) = (l1, l2);
        while row > 0 && col > 0 {
            if self.test_vp(row - 1, col - 1) {
                dels += 1;
                col -= 1;
            } else {
                row -= 1;
                if row > 0 && self.test_vn(row - 1, col - 1) {
                    ins += 1;
                } else {
                    col -= 1;
                    if s1[col] != s2[row] {
                        subs += 1;
                    }
                }
            }
        }
        (subs, dels + col as u64, ins + row as u64)
    }

    /// Recorded VP bit of (row, col); outside the band, RapidFuzz's fill value (set).
    #[inline]
    fn test_vp(&self, row: usize, col: usize) -> bool {
        let (w, fw) = (col / 64, self.row_fw[row] as usize);
        if w < fw || w > self.row_lw[row] as usize {
            return true;
        }
        let word = self.rec_vp[self.row_off[row] + w - fw];
        (word >> (col % 64)) & 1 == 1
    }

    /// Recorded VN bit of (row, col); outside the band, unset.
    #[inline]
    fn test_vn(&self, row: usize, col: usize) -> bool {
        let (w, fw) = (col / 64, self.row_fw[row] as usize);
        if w < fw || w > self.row_lw[row] as usize {
            return false;
        }
        let word = self.rec_vn[self.row_off[row] + w - fw];
        (word >> (col % 64)) & 1 == 1
    }

    /// Frees buffers a huge input left behind (the scorer lives in a thread-local).
    fn trim(&mut self) {
        const KEEP: usize = 1 << 20;
        if self.rec_vp.capacity() > KEEP || self.row_off.capacity() > KEEP {
            self.rec_vp = Vec::new();
            self.rec_vn = Vec::new();
            self.row_fw = Vec::new();
            self.row_lw = Vec::new();
            self.row_off = Vec::new();
        }
        if self.pm_dense.capacity() > KEEP || self.pm.entries.capacity() > KEEP {
            self.pm = PatternMatch::default();
            self.pm_dense = Vec::new();
            self.pm_row = Vec::new();
            self.pm_row2 = Vec::new();
            self.vp = Vec::new();
            self.vn = Vec::new();
            self.left = Vec::new();
            self.right = Vec::new();
            self.rev1 = Vec::new();
            self.rev2 = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain DP with RapidFuzz's walk-back rules on the exact matrix.
    fn reference_counts(s1: &[u32], s2: &[u32]) -> (u64, u64, u64) {
        let p = s1.iter().zip(s2).take_while(|(a, b)| a == b).count();
        let (s1, s2) = (&s1[p..], &s2[p..]);
        let q = s1
            .iter()
            .rev()
            .zip(s2.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let (s1, s2) = (&s1[..s1.len() - q], &s2[..s2.len() - q]);
        let (l1, l2) = (s1.len(), s2.len());
        let mut d = vec![vec![0i64; l2 + 1]; l1 + 1];
        for (i, row) in d.iter_mut().enumerate() {
            row[0] = i as i64;
        }
        for (j, cell) in d[0].iter_mut().enumerate() {
            *cell = j as i64;
        }
        for i in 1..=l1 {
            for j in 1..=l2 {
                let c = i64::from(s1[i - 1] != s2[j - 1]);
                d[i][j] = (d[i - 1][j] + 1)
                    .min(d[i][j - 1] + 1)
                    .min(d[i - 1][j - 1] + c);
            }
        }
        let (mut i, mut j) = (l1, l2);
        let (mut s, mut dl, mut ins) = (0, 0, 0);
        while i > 0 && j > 0 {
            if d[i][j] - d[i - 1][j] == 1 {
                dl += 1;
                i -= 1;
            } else {
                j -= 1;
                if j > 0 && d[i][j] - d[i - 1][j] == -1 {
                    ins += 1;
                } else {
                    i -= 1;
                    if s1[i] != s2[j] {
                        s += 1;
                    }
                }
            }
        }
        (s, dl + i as u64, ins + j as u64)
    }

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    }

    #[test]
    fn engine_matches_exact_walk() {
        let mut st = 7u64;
        let mut e = WerScorer::new();
        for case in 0..3000 {
            let alpha = 1 + lcg(&mut st) % 4;
            let l1 = (lcg(&mut st) % if case % 10 == 0 { 300 } else { 90 }) as usize;
            let s1: Vec<u32> = (0..l1).map(|_| (lcg(&mut st) % alpha) as u32).collect();
            let mut s2 = s1.clone();
            let edits = lcg(&mut st) % 12;
            for _ in 0..edits {
                let op = lcg(&mut st) % 3;
                let pos = if s2.is_empty() {
                    0
                } else {
                    (lcg(&mut st) as usize) % s2.len()
                };
                match op {
                    0 if !s2.is_empty() => s2[pos] = (lcg(&mut st) % alpha) as u32,
                    1 if !s2.is_empty() => {
                        s2.remove(pos);
                    }
                    _ => s2.insert(pos, (lcg(&mut st) % alpha) as u32),
                }
            }
            let got = e.process_ids(&s1, &s2);
            let (s, d, i) = reference_counts(&s1, &s2);
            assert_eq!(
                (got.substitutions, got.deletions, got.insertions),
                (s, d, i),
                "{s1:?} {s2:?}"
            );
        }
    }

    #[test]
    fn narrow_band_walk_is_exact() {
        // With the band sized by the true distance (as in Hirschberg sub-problems), the walk
        // must equal the walk on the whole matrix.
        let mut st = 11u64;
        let mut e = Engine::default();
        for _ in 0..400 {
            let alpha = 1 + lcg(&mut st) % 3;
            let l1 = 65 + (lcg(&mut st) % 400) as usize;
            let s1: Vec<u32> = (0..l1).map(|_| (lcg(&mut st) % alpha) as u32).collect();
            let mut s2 = s1.clone();
            for _ in 0..lcg(&mut st) % 30 {
                let pos = (lcg(&mut st) as usize) % s2.len().max(1);
                match lcg(&mut st) % 3 {
                    0 if !s2.is_empty() => s2[pos] = (lcg(&mut st) % alpha) as u32,
                    1 if !s2.is_empty() => {
                        s2.remove(pos);
                    }
                    _ => s2.insert(pos, (lcg(&mut st) % alpha) as u32),
                }
            }
            let want = reference_counts(&s1, &s2);
            // reference_counts strips the common affixes; do the same here.
            let p = s1.iter().zip(&s2).take_while(|(a, b)| a == b).count();
            let (a, b) = (&s1[p..], &s2[p..]);
            let q = a
                .iter()
                .rev()
                .zip(b.iter().rev())
                .take_while(|(x, y)| x == y)
                .count();
            let (a, b) = (&a[..a.len() - q], &b[..b.len() - q]);
            if a.is_empty() || b.is_empty() {
                continue;
            }
            e.vocab = alpha as usize;
            let dist = (want.0 + want.1 + want.2) as usize;
            assert_eq!(e.fill_and_walk(a, b, dist), want, "{s1:?} {s2:?}");
        }
    }

    #[test]
    fn words_transform() {
        assert_eq!(wer_words(""), Vec::<&str>::new());
        assert_eq!(wer_words(" \u{1c} "), Vec::<&str>::new());
        assert_eq!(wer_words("a\nb"), ["a\nb"]);
        assert_eq!(wer_words("a \nb"), ["a", "b"]);
        assert_eq!(wer_words("\na b\t"), ["a", "b"]);
        assert_eq!(wer_words("a\u{a0}\u{a0}b"), ["a", "b"]);
        assert_eq!(wer_words("a\u{a0}b"), ["a\u{a0}b"]);
    }

    #[test]
    fn empty_and_identical() {
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(wer("", "a b c"), 3.0);
        assert_eq!(cer("", "a b c"), 5.0);
        assert_eq!(wer("a b", ""), 1.0);
        assert_eq!(corpus_wer::<&str, &str>(&[], &[]), 0.0);
        let e = process_words("x y z", "x y z");
        assert_eq!(e.hits, 3);
        assert_eq!(e.wip(), 1.0);
    }
}
