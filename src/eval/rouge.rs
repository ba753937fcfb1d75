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
use std::hash::Hasher;

use crate::fxhash::{FxHasher, FxMap};
use std::iter::Sum;
use std::ops::{Add, AddAssign};
use std::str::FromStr;

use super::porter::stem_ascii_into;
use super::tokenize::{stem_applies, Piece, RougeTokenizer};

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

/// Id meaning "none yet".
const NONE: u32 = u32::MAX;
/// The interner is emptied (between calls) once it holds this many distinct tokens...
const INTERNER_LIMIT: usize = 1 << 20;
/// ... or this many bytes of token text.
const INTERNER_BYTES_LIMIT: usize = 1 << 26;
/// Words of stored LCS bit rows above which ROUGE-Lsum keeps only checkpoint rows (and
/// recomputes the rows between them during the backtrack): 32 MiB.
const ROW_BUDGET_WORDS: usize = 1 << 22;
/// Scratch vectors bigger than this (in elements) are freed after a call.
const KEEP_CAPACITY: usize = 1 << 20;

/// Token strings → ids, with the Porter stem of each id cached: an open-addressing table
/// (linear probing, load ≤ 1/2) over a byte arena, so a lookup is one hash of the token,
/// usually one probe and one `memcmp`, without pointer chasing.
#[derive(Default)]
struct Interner {
    /// All token bytes, back to back.
    arena: Vec<u8>,
    /// Id → (start, end) in `arena`.
    spans: Vec<(usize, usize)>,
    /// Slots: 0 = empty, else (upper 32 bits of the hash) << 32 | (id + 1).
    table: Vec<u64>,
    /// Raw id → id of its stem (`NONE` until computed).
    stem_of: Vec<u32>,
    stem_buf: Vec<u8>,
}

impl Interner {
    fn len(&self) -> usize {
        self.spans.len()
    }

    /// Bytes held (arena), to bound memory between calls.
    fn arena_len(&self) -> usize {
        self.arena.len()
    }

    /// Hash of a token: whole 8-byte words, the tail read as one (overlapping) word rather
    /// than copied byte by byte, then the length.
    #[inline]
    fn hash(tok: &[u8]) -> u64 {
        fn word<const N: usize>(b: &[u8]) -> [u8; N] {
            let mut w = [0u8; N];
            w.copy_from_slice(&b[..N]);
            w
        }
        let n = tok.len();
        let mut h = FxHasher::default();
        if n >= 8 {
            let mut chunks = tok.chunks_exact(8);
            for chunk in &mut chunks {
                h.add(u64::from_le_bytes(word(chunk)));
            }
            if !chunks.remainder().is_empty() {
                h.add(u64::from_le_bytes(word(&tok[n - 8..])));
            }
        } else if n >= 4 {
            let lo = u32::from_le_bytes(word(tok));
            let hi = u32::from_le_bytes(word(&tok[n - 4..]));
            h.add(u64::from(lo) | (u64::from(hi) << 32));
        } else if n > 0 {
            h.add(u64::from(tok[0]) | (u64::from(tok[n / 2]) << 8) | (u64::from(tok[n - 1]) << 16));
        }
        h.add(n as u64);
        h.finish()
    }

    fn intern(&mut self, tok: &[u8]) -> u32 {
        if self.table.is_empty() {
            self.table = vec![0; 1024];
        }
        let hash = Self::hash(tok);
        let tag = hash >> 32;
        let mask = self.table.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.table[i];
            if slot == 0 {
                break;
            }
            if slot >> 32 == tag {
                let id = (slot as u32).wrapping_sub(1);
                let (a, b) = self.spans[id as usize];
                if &self.arena[a..b] == tok {
                    return id;
                }
            }
            i = (i + 1) & mask;
        }
        let id = self.spans.len() as u32;
        let start = self.arena.len();
        self.arena.extend_from_slice(tok);
        self.spans.push((start, self.arena.len()));
        self.stem_of.push(NONE);
        self.table[i] = (tag << 32) | u64::from(id.wrapping_add(1));
        if self.spans.len() * 2 > self.table.len() {
            self.grow();
        }
        id
    }

    fn grow(&mut self) {
        let mut table = vec![0u64; self.table.len() * 2];
        let mask = table.len() - 1;
        for (id, &(a, b)) in self.spans.iter().enumerate() {
            let hash = Self::hash(&self.arena[a..b]);
            let mut i = hash as usize & mask;
            while table[i] != 0 {
                i = (i + 1) & mask;
            }
            table[i] = ((hash >> 32) << 32) | u64::from((id as u32).wrapping_add(1));
        }
        self.table = table;
    }

    /// The id of the stemmed form of raw token `raw` (= `tok`).
    fn stemmed(&mut self, raw: u32, tok: &[u8]) -> u32 {
        let cached = self.stem_of[raw as usize];
        if cached != NONE {
            return cached;
        }
        let id = if stem_applies(tok) {
            let mut buf = std::mem::take(&mut self.stem_buf);
            stem_ascii_into(tok, &mut buf);
            let id = self.intern(&buf);
            self.stem_buf = buf;
            id
        } else {
            raw
        };
        self.stem_of[raw as usize] = id;
        id
    }
}

/// Positions of each token in a sequence (a CSR index over dense token ids).
#[derive(Default)]
struct PosIndex {
    /// Occurrences per token id (all zero between uses).
    count: Vec<u32>,
    /// Offset into `positions` per token id (valid where `count > 0`).
    start: Vec<u32>,
    /// Token ids present, in first-occurrence order.
    distinct: Vec<u32>,
    positions: Vec<u32>,
}

impl PosIndex {
    fn build(&mut self, seq: &[u32], k: usize) {
        self.clear();
        if self.count.len() < k {
            self.count.resize(k, 0);
            self.start.resize(k, 0);
        }
        for &x in seq {
            let c = &mut self.count[x as usize];
            if *c == 0 {
                self.distinct.push(x);
            }
            *c += 1;
        }
        let mut offset = 0;
        for &x in &self.distinct {
            self.start[x as usize] = offset;
            offset += self.count[x as usize];
        }
        self.positions.clear();
        self.positions.resize(seq.len(), 0);
        for (j, &x) in seq.iter().enumerate() {
            let s = &mut self.start[x as usize];
            self.positions[*s as usize] = j as u32;
            *s += 1;
        }
        for &x in &self.distinct {
            self.start[x as usize] -= self.count[x as usize];
        }
    }

    #[inline]
    fn contains(&self, x: u32) -> bool {
        self.count[x as usize] > 0
    }

    /// Ascending positions of `x`.
    #[inline]
    fn get(&self, x: u32) -> &[u32] {
        let c = self.count[x as usize] as usize;
        if c == 0 {
            return &[];
        }
        let s = self.start[x as usize] as usize;
        &self.positions[s..s + c]
    }

    fn clear(&mut self) {
        for &x in &self.distinct {
            self.count[x as usize] = 0;
        }
        self.distinct.clear();
    }
}

/// Per-thread scratch state.
#[derive(Default)]
struct Workspace {
    interner: Interner,
    scan_buf: Vec<u8>,
    /// Global (interned) id → dense id of this call (`NONE` when unused).
    local_of: Vec<u32>,
    /// Dense id → global id, this call.
    globals: Vec<u32>,
    /// Dense token ids of the target and the prediction.
    target: Vec<u32>,
    prediction: Vec<u32>,
    /// End offsets (into `target` / `prediction`) of the lines that have tokens.
    target_lines: Vec<usize>,
    prediction_lines: Vec<usize>,
    // ROUGE-N
    grams_t: Vec<u32>,
    grams_p: Vec<u32>,
    pair_ids: FxMap<u64, u32>,
    counts_t: Vec<u32>,
    counts_p: Vec<u32>,
    // LCS
    index: PosIndex,
    bits: Vec<u64>,
    mask: Vec<u64>,
    block: Vec<u64>,
    checkpoints: Vec<u64>,
    covered: Vec<bool>,
}

impl Workspace {
    fn score(&mut self, scorer: &RougeScorer, target: &str, prediction: &str) -> RougeScores {
        self.begin();
        let tokenizer = scorer.tokenizer;
        let mut target_tokens = std::mem::take(&mut self.target);
        let mut target_lines = std::mem::take(&mut self.target_lines);
        self.tokenize(tokenizer, target, &mut target_tokens, &mut target_lines);
        let mut pred_tokens = std::mem::take(&mut self.prediction);
        let mut pred_lines = std::mem::take(&mut self.prediction_lines);
        self.tokenize(tokenizer, prediction, &mut pred_tokens, &mut pred_lines);
        let k = self.globals.len();

        let scores = scorer
            .types
            .iter()
            .map(|&ty| {
                let counts = match ty.kind() {
                    Kind::N(n) => self.ngram_counts(&target_tokens, &pred_tokens, n, k),
                    Kind::L => RougeCounts {
                        hits: self.lcs_length(&target_tokens, &pred_tokens, k) as u64,
                        prediction_total: pred_tokens.len() as u64,
                        target_total: target_tokens.len() as u64,
                    },
                    Kind::Lsum => self.lsum_counts(
                        (&target_tokens, &target_lines),
                        (&pred_tokens, &pred_lines),
                        k,
                    ),
                };
                (ty, counts.score())
            })
            .collect();

        self.target = target_tokens;
        self.target_lines = target_lines;
        self.prediction = pred_tokens;
        self.prediction_lines = pred_lines;
        self.end();
        RougeScores { scores }
    }

    /// Makes the per-call state clean (also after a call that unwound midway).
    fn begin(&mut self) {
        for &g in &self.globals {
            if let Some(l) = self.local_of.get_mut(g as usize) {
                *l = NONE;
            }
        }
        self.globals.clear();
        if self.interner.len() > INTERNER_LIMIT || self.interner.arena_len() > INTERNER_BYTES_LIMIT
        {
            self.interner = Interner::default();
            self.local_of = Vec::new();
        }
    }

    fn end(&mut self) {
        for &g in &self.globals {
            self.local_of[g as usize] = NONE;
        }
        self.globals.clear();
        fn trim<T>(v: &mut Vec<T>) {
            if v.capacity() > KEEP_CAPACITY {
                *v = Vec::new();
            }
        }
        trim(&mut self.target);
        trim(&mut self.prediction);
        trim(&mut self.target_lines);
        trim(&mut self.prediction_lines);
        trim(&mut self.grams_t);
        trim(&mut self.grams_p);
        trim(&mut self.counts_t);
        trim(&mut self.counts_p);
        trim(&mut self.bits);
        trim(&mut self.mask);
        trim(&mut self.block);
        trim(&mut self.checkpoints);
        trim(&mut self.covered);
        trim(&mut self.index.positions);
        trim(&mut self.index.distinct);
        if self.index.count.capacity() > KEEP_CAPACITY {
            self.index = PosIndex::default(); // counts are all zero here: nothing to keep
        }
        trim(&mut self.scan_buf);
        if self.pair_ids.capacity() > KEEP_CAPACITY {
            self.pair_ids = FxMap::default();
        }
    }

    /// Tokenizes `text` into dense ids (stemmed when the tokenizer stems) and line ends.
    fn tokenize(
        &mut self,
        tokenizer: RougeTokenizer,
        text: &str,
        out: &mut Vec<u32>,
        lines: &mut Vec<usize>,
    ) {
        out.clear();
        lines.clear();
        let stem = tokenizer.stems();
        let Workspace {
            interner,
            scan_buf,
            local_of,
            globals,
            ..
        } = self;
        let mut line_start = 0;
        tokenizer.scan(text, scan_buf, |piece| match piece {
            Piece::Token(tok) => {
                let raw = interner.intern(tok);
                let id = if stem {
                    interner.stemmed(raw, tok)
                } else {
                    raw
                };
                if local_of.len() < interner.len() {
                    local_of.resize(interner.len(), NONE);
                }
                let local = &mut local_of[id as usize];
                if *local == NONE {
                    *local = globals.len() as u32;
                    globals.push(id);
                }
                out.push(*local);
            }
            Piece::LineBreak => {
                if out.len() > line_start {
                    lines.push(out.len());
                    line_start = out.len();
                }
            }
        });
        if out.len() > line_start {
            lines.push(out.len());
        }
    }

    /// ROUGE-N counts: clipped n-gram overlap and n-gram totals.
    fn ngram_counts(&mut self, t: &[u32], p: &[u32], n: usize, k: usize) -> RougeCounts {
        let total = |len: usize| if n == 0 || len < n { 0 } else { len - n + 1 };
        let (tt, pt) = (total(t.len()), total(p.len()));
        let mut counts = RougeCounts {
            hits: 0,
            prediction_total: pt as u64,
            target_total: tt as u64,
        };
        if tt == 0 || pt == 0 {
            return counts;
        }
        let ids = if n == 1 {
            k
        } else {
            // Level by level: the id of an l-gram is a fresh dense id for the pair
            // (id of the (l-1)-gram at i, token at i + l - 1), shared by both sides.
            self.grams_t.clear();
            self.grams_t.extend_from_slice(t);
            self.grams_p.clear();
            self.grams_p.extend_from_slice(p);
            let mut next = 0u32;
            for level in 2..=n {
                self.pair_ids.clear();
                next = 0;
                for (grams, seq) in [(&mut self.grams_t, t), (&mut self.grams_p, p)] {
                    let len = seq.len() + 1 - level;
                    for i in 0..len {
                        let key = (u64::from(grams[i]) << 32) | u64::from(seq[i + level - 1]);
                        grams[i] = *self.pair_ids.entry(key).or_insert_with(|| {
                            next += 1;
                            next - 1
                        });
                    }
                    grams.truncate(len);
                }
            }
            next as usize
        };
        let (gt, gp): (&[u32], &[u32]) = if n == 1 {
            (t, p)
        } else {
            (&self.grams_t, &self.grams_p)
        };
        let c = &mut self.counts_t;
        c.clear();
        c.resize(ids, 0);
        for &g in gt {
            c[g as usize] += 1;
        }
        let mut hits = 0u64;
        for &g in gp {
            let x = &mut c[g as usize];
            if *x > 0 {
                *x -= 1;
                hits += 1;
            }
        }
        counts.hits = hits;
        counts
    }

    /// LCS length of `t` and `p` (bit-parallel; the shorter sequence along the bits).
    fn lcs_length(&mut self, t: &[u32], p: &[u32], k: usize) -> usize {
        if t.is_empty() || p.is_empty() {
            return 0;
        }
        let (rows, cols) = if p.len() <= t.len() { (t, p) } else { (p, t) };
        let w = cols.len().div_ceil(64);
        self.index.build(cols, k);
        self.bits.clear();
        self.bits.resize(w, !0);
        self.mask.clear();
        self.mask.resize(w, 0);
        for &x in rows {
            let pos = self.index.get(x);
            if !pos.is_empty() {
                advance(&mut self.bits, pos, &mut self.mask);
            }
        }
        self.index.clear();
        prefix_zeros(&self.bits, cols.len())
    }

    /// ROUGE-Lsum counts (rouge-score's `_summary_level_lcs`).
    fn lsum_counts(
        &mut self,
        (t, t_lines): (&[u32], &[usize]),
        (p, p_lines): (&[u32], &[usize]),
        k: usize,
    ) -> RougeCounts {
        let mut counts = RougeCounts {
            hits: 0,
            prediction_total: p.len() as u64,
            target_total: t.len() as u64,
        };
        if t.is_empty() || p.is_empty() {
            return counts;
        }
        // Which target tokens are in the union LCS of their line. rouge-score loops target
        // lines outside, prediction lines inside; the union does not depend on the order,
        // so prediction lines go outside here (each one's index is built once).
        self.covered.clear();
        self.covered.resize(t.len(), false);
        let mut p_start = 0;
        for &p_end in p_lines {
            let cand = &p[p_start..p_end];
            p_start = p_end;
            self.index.build(cand, k);
            let w = cand.len().div_ceil(64);
            self.mask.clear();
            self.mask.resize(w, 0);
            let mut t_start = 0;
            for &t_end in t_lines {
                let r = &t[t_start..t_end];
                let covered = &mut self.covered[t_start..t_end];
                t_start = t_end;
                if !r.iter().any(|&x| self.index.contains(x)) {
                    continue; // empty LCS
                }
                union_lcs(
                    r,
                    cand,
                    &self.index,
                    &mut self.mask,
                    (&mut self.block, &mut self.checkpoints),
                    covered,
                    block_rows(r.len(), w),
                );
            }
        }
        self.index.clear();
        // Clipped hits, target lines in order, indices ascending within a line.
        let (ct, cp) = (&mut self.counts_t, &mut self.counts_p);
        ct.clear();
        ct.resize(k, 0);
        cp.clear();
        cp.resize(k, 0);
        for &x in t {
            ct[x as usize] += 1;
        }
        for &x in p {
            cp[x as usize] += 1;
        }
        let mut hits = 0u64;
        for (&x, &cov) in t.iter().zip(&self.covered) {
            let x = x as usize;
            if cov && cp[x] > 0 && ct[x] > 0 {
                hits += 1;
                cp[x] -= 1;
                ct[x] -= 1;
            }
        }
        counts.hits = hits;
        counts
    }
}

/// One row of the bit-vector LCS (Hyyrö 2004): `v ← (v + (v & m)) | (v & !m)` where `m` has
/// the bits of `positions`. Bit `j` of row `i` is 0 iff `T[i][j+1] = T[i][j] + 1`, where `T`
/// is the LCS DP table, so `T[i][j]` = number of zero bits below bit `j`. `mask` must be
/// all zero (it is again on return); `positions` ascending and non-empty.
#[inline]
fn advance(v: &mut [u64], positions: &[u32], mask: &mut [u64]) {
    for &j in positions {
        mask[j as usize / 64] |= 1 << (j % 64);
    }
    let first = positions[0] as usize / 64;
    let last = positions[positions.len() - 1] as usize / 64;
    let mut carry = 0u64;
    let mut i = first;
    // Words below `first` see no match and no carry; above `last` only a carry changes them.
    while i < v.len() && (i <= last || carry != 0) {
        let x = v[i];
        let m = mask[i];
        let u = x & m;
        let (s1, c1) = x.overflowing_add(u);
        let (s2, c2) = s1.overflowing_add(carry);
        v[i] = s2 | (x & !m);
        carry = u64::from(c1 | c2);
        i += 1;
    }
    for &j in positions {
        mask[j as usize / 64] = 0;
    }
}

/// Rows per block for [`union_lcs`]: all of them when `(|r| + 1) · w` words fit in
/// [`ROW_BUDGET_WORDS`], else about `√|r|`, which keeps memory near `2√|r| · w` words.
fn block_rows(rows: usize, w: usize) -> usize {
    if (rows + 1).saturating_mul(w) <= ROW_BUDGET_WORDS {
        rows
    } else {
        ((rows as f64).sqrt().ceil() as usize).max(1)
    }
}

/// `T[i][j]` from bit row `i`: the zero bits among bits `0..j`.
#[inline]
fn prefix_zeros(v: &[u64], j: usize) -> usize {
    let full = j / 64;
    let mut ones: usize = v[..full].iter().map(|x| x.count_ones() as usize).sum();
    let rem = j % 64;
    if rem > 0 {
        ones += (v[full] & ((1u64 << rem) - 1)).count_ones() as usize;
    }
    j - ones
}

/// Marks in `covered` the indices of `r` on the LCS of `(r, c)` that rouge-score's
/// `_backtrack_norec` reads out: from `(|r|, |c|)`, take a match when `r[i-1] == c[j-1]`,
/// else step left when `T[i][j-1] > T[i-1][j]`, else up. `index` is `c`'s position index.
///
/// The DP rows are bit rows, kept in blocks of `b` rows ([`block_rows`]): only every
/// `b`-th row is stored on the way down, and each block is recomputed from its checkpoint
/// when the backtrack enters it (with `b = |r|`, one block: every row computed once).
/// `r` must not be empty.
fn union_lcs(
    r: &[u32],
    c: &[u32],
    index: &PosIndex,
    mask: &mut [u64],
    (block, checkpoints): (&mut Vec<u64>, &mut Vec<u64>),
    covered: &mut [bool],
    b: usize,
) {
    let w = c.len().div_ceil(64);
    let rows = r.len();
    let b = b.clamp(1, rows.max(1));
    let blocks = rows.div_ceil(b);
    // Checkpoint q = row q·b.
    checkpoints.clear();
    checkpoints.resize(blocks * w, !0);
    if blocks > 1 {
        block.clear();
        block.resize(w, !0);
        for i in 1..=(blocks - 1) * b {
            let pos = index.get(r[i - 1]);
            if !pos.is_empty() {
                advance(block, pos, mask);
            }
            if i % b == 0 {
                let q = i / b;
                checkpoints[q * w..(q + 1) * w].copy_from_slice(block);
            }
        }
    }
    // Rows base..=min(base + b, rows) of block q into `block`; returns base.
    let mut load = |q: usize, block: &mut Vec<u64>| -> usize {
        let base = q * b;
        block.clear();
        block.extend_from_slice(&checkpoints[q * w..(q + 1) * w]);
        for i in base + 1..=(base + b).min(rows) {
            let prev = block.len() - w;
            block.extend_from_within(prev..);
            let pos = index.get(r[i - 1]);
            if !pos.is_empty() {
                let len = block.len();
                advance(&mut block[len - w..], pos, mask);
            }
        }
        base
    };
    let mut q = blocks - 1;
    let mut base = load(q, block);
    let (mut i, mut j) = (rows, c.len());
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            covered[i - 1] = true;
            i -= 1;
            j -= 1;
        } else {
            let row_i = &block[(i - base) * w..(i - base + 1) * w];
            let row_up = &block[(i - 1 - base) * w..(i - base) * w];
            if prefix_zeros(row_i, j - 1) > prefix_zeros(row_up, j) {
                j -= 1;
            } else {
                i -= 1;
            }
        }
        if i > 0 && i <= base {
            q -= 1;
            base = load(q, block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rouge-score's full DP table and backtrack, written the plain way.
    fn reference_lcs_indices(r: &[u32], c: &[u32]) -> Vec<usize> {
        let mut t = vec![vec![0usize; c.len() + 1]; r.len() + 1];
        for i in 1..=r.len() {
            for j in 1..=c.len() {
                t[i][j] = if r[i - 1] == c[j - 1] {
                    t[i - 1][j - 1] + 1
                } else {
                    t[i - 1][j].max(t[i][j - 1])
                };
            }
        }
        let (mut i, mut j) = (r.len(), c.len());
        let mut out = Vec::new();
        while i > 0 && j > 0 {
            if r[i - 1] == c[j - 1] {
                out.push(i - 1);
                i -= 1;
                j -= 1;
            } else if t[i][j - 1] > t[i - 1][j] {
                j -= 1;
            } else {
                i -= 1;
            }
        }
        out.reverse();
        out
    }

    /// `union_lcs` on one line pair with block size `b`, as sorted covered indices.
    fn bit_lcs_indices(r: &[u32], c: &[u32], b: usize) -> Vec<usize> {
        let k = r
            .iter()
            .chain(c)
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        let mut index = PosIndex::default();
        index.build(c, k);
        let mut mask = vec![0u64; c.len().div_ceil(64)];
        let (mut block, mut ck) = (Vec::new(), Vec::new());
        let mut covered = vec![false; r.len()];
        if !r.is_empty() {
            let (bl, ck) = (&mut block, &mut ck);
            union_lcs(r, c, &index, &mut mask, (bl, ck), &mut covered, b);
        }
        (0..r.len()).filter(|&i| covered[i]).collect()
    }

    /// Tiny deterministic generator (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn seq(&mut self, max_len: u64, vocab: u64) -> Vec<u32> {
            let n = self.next() % (max_len + 1);
            (0..n).map(|_| (self.next() % vocab) as u32).collect()
        }
    }

    #[test]
    fn bit_parallel_backtrack_matches_plain_dp() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..3000 {
            let max_len = if round % 10 == 0 { 300 } else { 40 };
            let vocab = 1 + rng.next() % 8;
            let r = rng.seq(max_len, vocab);
            let c = rng.seq(max_len, vocab);
            let want = reference_lcs_indices(&r, &c);
            assert_eq!(bit_lcs_indices(&r, &c, r.len()), want, "r={r:?} c={c:?}");
            // The LCS length agrees as well.
            let mut ws = Workspace::default();
            let k = r
                .iter()
                .chain(&c)
                .copied()
                .max()
                .map_or(0, |m| m as usize + 1);
            assert_eq!(ws.lcs_length(&r, &c, k), want.len());
        }
    }

    #[test]
    fn checkpointed_backtrack_matches_plain_dp() {
        let mut rng = Rng(42);
        for _ in 0..30 {
            let r = rng.seq(400, 3);
            let c = rng.seq(400, 3);
            let want = reference_lcs_indices(&r, &c);
            for b in [1usize, 2, 7, 20, 64, 399, 1000] {
                assert_eq!(bit_lcs_indices(&r, &c, b), want, "b={b}");
            }
        }
        assert_eq!(block_rows(10, 1), 10);
        assert_eq!(block_rows(1 << 20, 1 << 10), 1 << 10);
    }

    #[test]
    fn rouge_type_names() {
        for (s, t) in [
            ("rouge1", RougeType::Rouge1),
            ("rouge2", RougeType::Rouge2),
            ("rouge3", RougeType::RougeN(3)),
            ("rougeL", RougeType::RougeL),
            ("rougeLsum", RougeType::RougeLsum),
        ] {
            assert_eq!(s.parse::<RougeType>().unwrap(), t);
            assert_eq!(t.to_string(), s);
        }
        assert_eq!(RougeType::RougeN(1), RougeType::Rouge1);
        for bad in [
            "rouge0", "rouge", "rougel", "rouge-1", "ROUGE1", "rouge+1", "",
        ] {
            assert!(bad.parse::<RougeType>().is_err(), "{bad}");
        }
    }

    #[test]
    fn no_panics_on_odd_input() {
        let scorer = RougeScorer::new(
            &[
                RougeType::Rouge1,
                RougeType::RougeN(0),
                RougeType::RougeN(5),
                RougeType::RougeL,
                RougeType::RougeLsum,
            ],
            true,
        );
        for (t, p) in [
            ("", ""),
            ("\n\n\n", "a\n\nb"),
            ("a", "a a a a a a"),
            ("ß 東 İİ \u{212A}", "\u{0}\u{FFFF}"),
        ] {
            let s = scorer.score(t, p);
            assert_eq!(s.len(), 5);
            assert_eq!(
                s.get(RougeType::RougeN(0)).unwrap().counts,
                RougeCounts::default()
            );
        }
    }
}
