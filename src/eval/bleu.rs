//! BLEU as [sacrebleu](https://github.com/mjpost/sacrebleu) 2.6.0 computes it by default
//! (tokens and counts exact, scores within 1e-9 on the parity goldens): the `13a` tokenizer, clipped n-gram counts for n = 1..4 against one or more
//! references, the closest reference length, brevity penalty and `exp` smoothing.
//!
//! ```
//! use deepsynth::eval::{corpus_bleu, sentence_bleu};
//! let s = sentence_bleu("the cat sat on the mat", &["the cat sat on the mat"]);
//! assert_eq!(s.score, 100.00000000000004); // sacrebleu's value: precisions are on 0..100
//! let c = corpus_bleu(&["the cat", "a b c d e"], &["the cat sat on the mat", "a b x d e"]);
//! assert_eq!(c.signature, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
//! ```

use std::ops::{Add, AddAssign};

use super::pystr::{is_py_space, py_rstrip, FxMap};

/// The sacrebleu release whose numbers this module reproduces.
pub const SACREBLEU_VERSION: &str = "2.6.0";

/// Highest n-gram order (sacrebleu's `MAX_NGRAM_ORDER`).
pub const BLEU_MAX_ORDER: usize = 4;

/// sacrebleu's `13a` tokenizer (`Tokenizer13a.__call__`), the mteval-v13a tokenization WMT uses.
///
/// Removes `<skipped>` and `-\n`, turns `\n` into a space, unescapes `&quot;`, `&amp;`, `&lt;`,
/// `&gt;` (only when the line contains `&`), splits off the punctuation
/// `{ | } ~ [ \ ] ^ _ `` ` `` ! " # $ % & ( ) * + : ; < = > ? @ /`, splits `.` and `,` unless they
/// sit between digits, splits `-` after a digit, and joins the pieces with single spaces
/// (Python whitespace, including U+001C..U+001F). Does not `rstrip` first: BLEU does that
/// before calling it (see [`bleu_tokens`]).
///
/// ```
/// use deepsynth::eval::tokenize_13a;
/// assert_eq!(tokenize_13a("It's 3.5 % of $1,000.50."), "It's 3.5 % of $ 1,000.50 .");
/// assert_eq!(tokenize_13a("x&amp;y &lt;t&gt;"), "x & y < t >");
/// ```
pub fn tokenize_13a(line: &str) -> String {
    // Each replacement only when its pattern occurs: most segments need none of them.
    let mut s = std::borrow::Cow::Borrowed(line);
    for (from, to) in [("<skipped>", ""), ("-\n", ""), ("\n", " ")] {
        if s.contains(from) {
            s = std::borrow::Cow::Owned(s.replace(from, to));
        }
    }
    if s.contains('&') {
        for (from, to) in [
            ("&quot;", "\""),
            ("&amp;", "&"),
            ("&lt;", "<"),
            ("&gt;", ">"),
        ] {
            if s.contains(from) {
                s = std::borrow::Cow::Owned(s.replace(from, to));
            }
        }
    }

    // ASCII segments (most) run on bytes, the others on chars: same rules either way.
    if s.is_ascii() {
        let units = regexes_13a(s.bytes());
        let mut out = Vec::with_capacity(units.len());
        join_py_split(&units, |b| out.push(b));
        String::from_utf8(out).expect("ASCII in, ASCII out")
    } else {
        let units = regexes_13a(s.chars());
        let mut out = String::with_capacity(units.len());
        join_py_split(&units, |c| out.push(c));
        out
    }
}

/// A unit of text the 13a rules run on: a byte of an ASCII line or a char.
trait Unit: Copy + PartialEq {
    fn ch(self) -> char;
    fn ascii(b: u8) -> Self;
}

impl Unit for u8 {
    #[inline]
    fn ch(self) -> char {
        self as char
    }
    #[inline]
    fn ascii(b: u8) -> Self {
        b
    }
}

impl Unit for char {
    #[inline]
    fn ch(self) -> char {
        self
    }
    #[inline]
    fn ascii(b: u8) -> Self {
        b as char
    }
}

/// The four regexes of 13a on `f' {line} '`.
fn regexes_13a<U: Unit>(line: impl Iterator<Item = U>) -> Vec<U> {
    let sp = U::ascii(b' ');
    // regex 1: `([\{-\~\[-\` -\&\(-\+\:-\@\/])` -> ` \1 `.
    let (lo, _) = line.size_hint();
    let mut a: Vec<U> = Vec::with_capacity(lo + 8);
    a.push(sp);
    for c in line {
        if is_13a_punct(c.ch()) {
            a.extend([sp, c, sp]);
        } else {
            a.push(c);
        }
    }
    a.push(sp);
    // regex 2: `([^0-9])([\.,])` -> `\1 \2 `, then regex 3: `([\.,])([^0-9])` -> ` \1 \2`
    // (both only match where a '.' or ',' is).
    if a.iter().any(|&c| is_dot_comma(c.ch())) {
        a = rewrite_pairs(
            &a,
            |x, y| !x.ch().is_ascii_digit() && is_dot_comma(y.ch()),
            |x, y| [Some(x), Some(sp), Some(y), Some(sp)],
        );
        a = rewrite_pairs(
            &a,
            |x, y| is_dot_comma(x.ch()) && !y.ch().is_ascii_digit(),
            |x, y| [Some(sp), Some(x), Some(sp), Some(y)],
        );
    }
    // regex 4: `([0-9])(-)` -> `\1 \2 ` (only where a '-' is).
    if a.iter().any(|&c| c.ch() == '-') {
        a = rewrite_pairs(
            &a,
            |x, y| x.ch().is_ascii_digit() && y.ch() == '-',
            |x, y| [Some(x), Some(sp), Some(y), Some(sp)],
        );
    }
    a
}

/// `' '.join(line.split())`, emitting units through `push`.
fn join_py_split<U: Unit>(a: &[U], mut push: impl FnMut(U)) {
    let mut started = false;
    let mut pending_space = false;
    for &c in a {
        if is_py_space(c.ch()) {
            pending_space = started;
        } else {
            if pending_space {
                push(U::ascii(b' '));
                pending_space = false;
            }
            push(c);
            started = true;
        }
    }
}

/// The 13a punctuation class as a table over ASCII (every member is ASCII).
const PUNCT_13A: [bool; 128] = {
    let mut t = [false; 128];
    let mut c = 0;
    while c < 128 {
        t[c] = matches!(c as u8, b'{'..=b'~' | b'['..=b'`' | b' '..=b'&' | b'('..=b'+' | b':'..=b'@' | b'/');
        c += 1;
    }
    t
};

#[inline(always)]
fn is_13a_punct(c: char) -> bool {
    (c as u32) < 128 && PUNCT_13A[c as usize]
}

#[inline]
fn is_dot_comma(c: char) -> bool {
    c == '.' || c == ','
}

/// Python `re.sub` of a two-character pattern: scan left to right, replace each match and
/// resume after it (leftmost, non-overlapping).
fn rewrite_pairs<U: Unit>(
    a: &[U],
    matches: impl Fn(U, U) -> bool,
    replace: impl Fn(U, U) -> [Option<U>; 4],
) -> Vec<U> {
    let mut out = Vec::with_capacity(a.len() + a.len() / 4 + 4);
    let mut i = 0;
    while i < a.len() {
        if i + 1 < a.len() && matches(a[i], a[i + 1]) {
            out.extend(replace(a[i], a[i + 1]).into_iter().flatten());
            i += 2;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out
}

/// The tokens BLEU counts for one segment: `tokenize_13a(segment.rstrip())` split on spaces.
///
/// ```
/// use deepsynth::eval::bleu_tokens;
/// assert_eq!(bleu_tokens("Hello, world!\n"), ["Hello", ",", "world", "!"]);
/// ```
pub fn bleu_tokens(segment: &str) -> Vec<String> {
    tokenize_13a(py_rstrip(segment))
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Smoothing of zero n-gram precisions (sacrebleu's `smooth_method` / `smooth_value`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Smoothing {
    /// No smoothing: a zero precision makes the score 0 (through `log(0) := -9999999999`).
    None,
    /// Method 1: a zero count becomes `value` (sacrebleu's default value is 0.1).
    Floor(f64),
    /// Method 2: add `value` to the count and total of orders n >= 2 (default value 1).
    AddK(f64),
    /// Method 3 (NIST / mteval-v13a, sacrebleu's default): the k-th order with no match gets
    /// precision `100 / (2^k · total)`.
    #[default]
    Exp,
}

impl Smoothing {
    /// `floor` with sacrebleu's default value 0.1.
    pub const FLOOR: Smoothing = Smoothing::Floor(0.1);
    /// `add-k` with sacrebleu's default value 1.
    pub const ADD_K: Smoothing = Smoothing::AddK(1.0);

    /// The `smooth:` part of the signature (`exp`, `none`, `floor[0.10]`, `add-k[1.00]`).
    pub fn signature(&self) -> String {
        match self {
            Smoothing::None => "none".into(),
            Smoothing::Exp => "exp".into(),
            Smoothing::Floor(v) => format!("floor[{v:.2}]"),
            Smoothing::AddK(v) => format!("add-k[{v:.2}]"),
        }
    }
}

/// Sufficient statistics of one or more segments; they add up over a corpus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BleuStats {
    /// Hypothesis tokens.
    pub sys_len: u64,
    /// Reference tokens (per segment the reference length closest to the hypothesis length,
    /// ties to the shorter).
    pub ref_len: u64,
    /// Clipped n-gram matches, n = 1..4.
    pub counts: [u64; BLEU_MAX_ORDER],
    /// Hypothesis n-grams, n = 1..4.
    pub totals: [u64; BLEU_MAX_ORDER],
}

impl AddAssign for BleuStats {
    fn add_assign(&mut self, o: Self) {
        self.sys_len += o.sys_len;
        self.ref_len += o.ref_len;
        for n in 0..BLEU_MAX_ORDER {
            self.counts[n] += o.counts[n];
            self.totals[n] += o.totals[n];
        }
    }
}

impl Add for BleuStats {
    type Output = Self;
    fn add(mut self, o: Self) -> Self {
        self += o;
        self
    }
}

impl std::iter::Sum for BleuStats {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

/// A BLEU score with the numbers sacrebleu's `BLEUScore` carries.
#[derive(Clone, Debug, PartialEq)]
pub struct BleuScore {
    /// BLEU on the 0..100 scale.
    pub score: f64,
    /// Clipped n-gram matches, n = 1..4. (With [`Smoothing::AddK`] sacrebleu reports these
    /// after adding k for n >= 2; here they stay the raw counts.)
    pub counts: [u64; BLEU_MAX_ORDER],
    /// Hypothesis n-grams, n = 1..4 (raw, see `counts`).
    pub totals: [u64; BLEU_MAX_ORDER],
    /// n-gram precisions on the 0..100 scale (0 for orders after the first with no n-gram).
    pub precisions: [f64; BLEU_MAX_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// Hypothesis tokens.
    pub sys_len: u64,
    /// Reference tokens.
    pub ref_len: u64,
    /// sacrebleu's signature, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`.
    pub signature: String,
}

impl BleuScore {
    /// `sys_len / ref_len` (0 when `ref_len` is 0), as sacrebleu prints it.
    pub fn ratio(&self) -> f64 {
        if self.ref_len == 0 {
            0.0
        } else {
            self.sys_len as f64 / self.ref_len as f64
        }
    }
}

/// BLEU settings; [`Default`] is sacrebleu's `BLEU()` (exp smoothing, no effective order),
/// [`Bleu::sentence`] is what `sacrebleu.sentence_bleu` uses (effective order on).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Bleu {
    /// Smoothing of zero precisions.
    pub smoothing: Smoothing,
    /// Average only over the orders up to the last one with any hypothesis n-gram (needed for
    /// short sentences: without it a 1-token hypothesis always scores 0).
    pub effective_order: bool,
}

impl Bleu {
    /// The settings of `sacrebleu.sentence_bleu`: exp smoothing, effective order.
    pub fn sentence() -> Self {
        Self {
            smoothing: Smoothing::Exp,
            effective_order: true,
        }
    }

    /// sacrebleu's signature string for `nrefs` references per segment (`None`: variable).
    pub fn signature(&self, nrefs: Option<usize>) -> String {
        let nrefs = nrefs.map_or_else(|| "var".to_owned(), |n| n.to_string());
        format!(
            "nrefs:{nrefs}|case:mixed|eff:{}|tok:13a|smooth:{}|version:{SACREBLEU_VERSION}",
            if self.effective_order { "yes" } else { "no" },
            self.smoothing.signature()
        )
    }

    /// Statistics of one hypothesis against its references (sacrebleu's
    /// `_compute_segment_statistics`). With no reference nothing matches and `ref_len` is 0.
    pub fn segment_stats<S: AsRef<str>>(&self, hypothesis: &str, references: &[S]) -> BleuStats {
        segment_stats(hypothesis, references)
    }

    /// The score of already summed statistics (sacrebleu's `compute_bleu`).
    pub fn score_from_stats(&self, stats: &BleuStats, nrefs: Option<usize>) -> BleuScore {
        compute_bleu(
            stats,
            self.smoothing,
            self.effective_order,
            self.signature(nrefs),
        )
    }

    /// BLEU of one hypothesis against one or more references (`BLEU.sentence_score`).
    pub fn sentence_score<S: AsRef<str>>(&self, hypothesis: &str, references: &[S]) -> BleuScore {
        let stats = segment_stats(hypothesis, references);
        self.score_from_stats(&stats, Some(references.len()))
    }

    /// Corpus BLEU with one reference per hypothesis: statistics summed over segments, then
    /// scored (`BLEU.corpus_score(hyps, [refs])`). Extra items of the longer slice are ignored.
    pub fn corpus_score<H: AsRef<str>, R: AsRef<str>>(
        &self,
        hypotheses: &[H],
        references: &[R],
    ) -> BleuScore {
        let stats: BleuStats = hypotheses
            .iter()
            .zip(references)
            .map(|(h, r)| segment_stats(h.as_ref(), &[r.as_ref()]))
            .sum();
        self.score_from_stats(&stats, Some(1))
    }

    /// Corpus BLEU with any number of references per hypothesis: `references[i]` holds those
    /// of `hypotheses[i]` (sacrebleu takes the transpose, one stream per reference).
    pub fn corpus_score_multi<H, R, S>(&self, hypotheses: &[H], references: &[R]) -> BleuScore
    where
        H: AsRef<str>,
        R: AsRef<[S]>,
        S: AsRef<str>,
    {
        let mut nrefs: Option<Option<usize>> = None;
        let mut stats = BleuStats::default();
        for (h, r) in hypotheses.iter().zip(references) {
            let r = r.as_ref();
            nrefs = match nrefs {
                None => Some(Some(r.len())),
                Some(Some(n)) if n == r.len() => Some(Some(n)),
                _ => Some(None),
            };
            stats += segment_stats(h.as_ref(), r);
        }
        self.score_from_stats(&stats, nrefs.flatten())
    }
}

/// `sacrebleu.sentence_bleu(hypothesis, references)`: exp smoothing, effective order.
pub fn sentence_bleu<S: AsRef<str>>(hypothesis: &str, references: &[S]) -> BleuScore {
    Bleu::sentence().sentence_score(hypothesis, references)
}

/// `sacrebleu.corpus_bleu(hypotheses, [references])` with the `BLEU()` defaults (exp
/// smoothing, no effective order), one reference per hypothesis.
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[R]) -> BleuScore {
    Bleu::default().corpus_score(hypotheses, references)
}

/// Token ids of a segment (13a tokens interned into `ids`).
fn intern<'a>(tokenized: &'a str, ids: &mut FxMap<&'a str, u32>) -> Vec<u32> {
    tokenized
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(|t| {
            let next = ids.len() as u32;
            *ids.entry(t).or_insert(next)
        })
        .collect()
}

#[inline]
fn ngram_key(ids: &[u32]) -> u128 {
    ids.iter().fold(0u128, |k, &id| (k << 32) | u128::from(id))
}

fn count_ngrams(ids: &[u32], n: usize, into: &mut FxMap<u128, u64>) {
    into.clear();
    if ids.len() >= n {
        for w in ids.windows(n) {
            *into.entry(ngram_key(w)).or_insert(0) += 1;
        }
    }
}

/// Every position's next `BLEU_MAX_ORDER` token ids (+1, 0 = past the end) packed into one
/// key of `bits` bits per slot, sorted: the n-grams of any order are the keys' top `n` slots,
/// grouped contiguously.
fn sorted_gram_keys<K: GramKey>(ids: &[u32], bits: u32) -> Vec<K> {
    let mut keys: Vec<K> = (0..ids.len())
        .map(|i| {
            (0..BLEU_MAX_ORDER).fold(K::default(), |k, j| {
                k.push(bits, ids.get(i + j).map_or(0, |&x| x + 1))
            })
        })
        .collect();
    keys.sort_unstable();
    keys
}

/// A packed n-gram key: `u64` when the slots fit, else `u128`.
pub(super) trait GramKey: Copy + Ord + Default {
    fn push(self, bits: u32, v: u32) -> Self;
    /// The top `n` of `slots` slots of `bits` bits.
    fn top(self, bits: u32, slots: usize, n: usize) -> Self;
    /// Whether the lowest slot of a `top` value is non-zero.
    fn last_set(self, bits: u32) -> bool;
}

impl GramKey for u64 {
    fn push(self, bits: u32, v: u32) -> Self {
        (self << bits) | u64::from(v)
    }
    fn top(self, bits: u32, slots: usize, n: usize) -> Self {
        self >> (bits as usize * (slots - n))
    }
    fn last_set(self, bits: u32) -> bool {
        self & ((1u64 << bits) - 1) != 0
    }
}

impl GramKey for u128 {
    fn push(self, bits: u32, v: u32) -> Self {
        (self << bits) | u128::from(v)
    }
    fn top(self, bits: u32, slots: usize, n: usize) -> Self {
        self >> (bits as usize * (slots - n))
    }
    fn last_set(self, bits: u32) -> bool {
        self & ((1u128 << bits) - 1) != 0
    }
}

/// `Σ min(count_a, count_b)` over the n-grams of order `n` of two sorted key lists with `slots`
/// slots of `bits` bits.
pub(super) fn merged_matches<K: GramKey>(
    a: &[K],
    b: &[K],
    bits: u32,
    slots: usize,
    n: usize,
) -> u64 {
    let gram = |k: K| k.top(bits, slots, n);
    let (mut i, mut j, mut matches) = (0, 0, 0u64);
    while i < a.len() && j < b.len() {
        let (ga, gb) = (gram(a[i]), gram(b[j]));
        if ga < gb {
            i += 1;
        } else if gb < ga {
            j += 1;
        } else {
            let ia = a[i..].iter().take_while(|&&x| gram(x) == ga).count();
            let jb = b[j..].iter().take_while(|&&x| gram(x) == ga).count();
            if ga.last_set(bits) {
                matches += ia.min(jb) as u64;
            }
            i += ia;
            j += jb;
        }
    }
    matches
}

/// Clipped matches and hypothesis n-gram totals of orders 1..=4 against one reference (the
/// common single-reference case; the same counts as clipping hash-map counts).
fn clipped_single(
    hyp: &[u32],
    reference: &[u32],
) -> ([u64; BLEU_MAX_ORDER], [u64; BLEU_MAX_ORDER]) {
    fn run<K: GramKey>(hyp: &[u32], reference: &[u32], bits: u32) -> [u64; BLEU_MAX_ORDER] {
        let (a, b) = (
            sorted_gram_keys::<K>(hyp, bits),
            sorted_gram_keys::<K>(reference, bits),
        );
        std::array::from_fn(|n| merged_matches(&a, &b, bits, BLEU_MAX_ORDER, n + 1))
    }
    let max = hyp.iter().chain(reference).copied().max().unwrap_or(0) + 1;
    let counts = if max < 1 << 16 {
        run::<u64>(hyp, reference, 16)
    } else {
        run::<u128>(hyp, reference, 32)
    };
    let totals = std::array::from_fn(|n| (hyp.len() + 1).saturating_sub(n + 1) as u64);
    (counts, totals)
}

fn segment_stats<S: AsRef<str>>(hypothesis: &str, references: &[S]) -> BleuStats {
    let hyp_tok = tokenize_13a(py_rstrip(hypothesis));
    let ref_toks: Vec<String> = references
        .iter()
        .map(|r| tokenize_13a(py_rstrip(r.as_ref())))
        .collect();
    let words = hyp_tok.len() / 4 + ref_toks.iter().map(|r| r.len() / 4).sum::<usize>();
    let mut ids: FxMap<&str, u32> = FxMap::with_capacity_and_hasher(words, Default::default());
    let hyp = intern(&hyp_tok, &mut ids);
    let refs: Vec<Vec<u32>> = ref_toks.iter().map(|r| intern(r, &mut ids)).collect();

    let hyp_len = hyp.len() as u64;
    // _get_closest_ref_len: smallest |hyp - ref|, ties to the shorter reference.
    let mut closest: Option<(u64, u64)> = None;
    for r in &refs {
        let len = r.len() as u64;
        let diff = hyp_len.abs_diff(len);
        closest = match closest {
            Some((d, l)) if d < diff || (d == diff && l <= len) => Some((d, l)),
            _ => Some((diff, len)),
        };
    }

    let mut stats = BleuStats {
        sys_len: hyp_len,
        ref_len: closest.map_or(0, |(_, l)| l),
        ..BleuStats::default()
    };
    if let [reference] = refs.as_slice() {
        (stats.counts, stats.totals) = clipped_single(&hyp, reference);
        return stats;
    }
    let mut ref_max: FxMap<u128, u64> = FxMap::default();
    let mut one: FxMap<u128, u64> = FxMap::default();
    let mut hyp_counts: FxMap<u128, u64> = FxMap::default();
    for n in 1..=BLEU_MAX_ORDER {
        ref_max.clear();
        for r in &refs {
            count_ngrams(r, n, &mut one);
            for (&k, &c) in &one {
                let e = ref_max.entry(k).or_insert(0);
                *e = (*e).max(c);
            }
        }
        count_ngrams(&hyp, n, &mut hyp_counts);
        let mut correct = 0;
        let mut total = 0;
        for (k, &c) in &hyp_counts {
            total += c;
            if let Some(&rc) = ref_max.get(k) {
                correct += c.min(rc);
            }
        }
        stats.counts[n - 1] = correct;
        stats.totals[n - 1] = total;
    }
    stats
}

/// sacrebleu's `my_log`: `log(0) := -9999999999`.
#[inline]
fn my_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

/// sacrebleu's `BLEU.compute_bleu`, operation for operation (same floating-point results).
fn compute_bleu(
    stats: &BleuStats,
    smoothing: Smoothing,
    effective_order: bool,
    signature: String,
) -> BleuScore {
    let (sys_len, ref_len) = (stats.sys_len, stats.ref_len);
    let mut bp = 1.0;
    if sys_len < ref_len {
        bp = if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        };
    }
    let mut precisions = [0.0f64; BLEU_MAX_ORDER];
    let mut result = BleuScore {
        score: 0.0,
        counts: stats.counts,
        totals: stats.totals,
        precisions,
        bp,
        sys_len,
        ref_len,
        signature,
    };
    if stats.counts.iter().all(|&c| c == 0) {
        return result;
    }

    let mut correct = stats.counts.map(|c| c as f64);
    let mut total = stats.totals.map(|t| t as f64);
    let mut smooth_mteval = 1.0f64;
    let mut eff_order = BLEU_MAX_ORDER;
    for n in 1..=BLEU_MAX_ORDER {
        if let Smoothing::AddK(k) = smoothing {
            if n > 1 {
                correct[n - 1] += k;
                total[n - 1] += k;
            }
        }
        if total[n - 1] == 0.0 {
            break;
        }
        if effective_order {
            eff_order = n;
        }
        if correct[n - 1] == 0.0 {
            match smoothing {
                Smoothing::Exp => {
                    smooth_mteval *= 2.0;
                    precisions[n - 1] = 100.0 / (smooth_mteval * total[n - 1]);
                }
                Smoothing::Floor(v) => precisions[n - 1] = 100.0 * v / total[n - 1],
                Smoothing::None | Smoothing::AddK(_) => {}
            }
        } else {
            precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1];
        }
    }
    // Python's sum() over a list (3.11: plain left-to-right addition).
    let mut log_sum = 0.0f64;
    for &p in &precisions[..eff_order] {
        log_sum += my_log(p);
    }
    result.score = bp * (log_sum / eff_order as f64).exp();
    result.precisions = precisions;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_edges() {
        assert_eq!(tokenize_13a(""), "");
        assert_eq!(tokenize_13a("a.,b"), "a . , b");
        assert_eq!(tokenize_13a("e-mail 1-0 2-3-4"), "e-mail 1 - 0 2 - 3 - 4");
        assert_eq!(tokenize_13a("a\u{1c}b"), "a b");
        assert_eq!(tokenize_13a("&amp;quot;"), "& quot ;");
        assert_eq!(tokenize_13a("<skip<skipped>ped>"), "< skipped >");
        assert_eq!(bleu_tokens("a-\n"), ["a-"]);
        assert_eq!(tokenize_13a("a-\n"), "a");
    }

    #[test]
    fn closest_ref_len_ties_to_shorter() {
        let s = segment_stats("a b c", &["a b", "a b c d", "x"]);
        assert_eq!(s.ref_len, 2);
        let s = segment_stats("a b c", &["a b c d", "a b"]);
        assert_eq!(s.ref_len, 2);
    }

    #[test]
    fn no_references_or_empty() {
        let s = sentence_bleu::<&str>("a b", &[]);
        assert_eq!(s.score, 0.0);
        assert_eq!(s.ref_len, 0);
        let s = sentence_bleu("", &[""]);
        assert_eq!(s.score, 0.0);
        assert_eq!(s.bp, 1.0);
        assert_eq!(corpus_bleu::<&str, &str>(&[], &[]).score, 0.0);
    }

    #[test]
    fn signatures() {
        assert_eq!(
            Bleu::sentence().signature(Some(2)),
            "nrefs:2|case:mixed|eff:yes|tok:13a|smooth:exp|version:2.6.0"
        );
        let b = Bleu {
            smoothing: Smoothing::FLOOR,
            effective_order: false,
        };
        assert_eq!(
            b.signature(None),
            "nrefs:var|case:mixed|eff:no|tok:13a|smooth:floor[0.10]|version:2.6.0"
        );
        assert_eq!(Smoothing::ADD_K.signature(), "add-k[1.00]");
    }
}
