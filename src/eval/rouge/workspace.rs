//! Per-thread scratch state: tokenising, n-gram counting and LCS scoring of one pair.

use crate::fxhash::FxMap;

use super::intern::*;
use super::lcs::*;
use super::*;

/// Scratch vectors bigger than this (in elements) are freed after a call.
pub(super) const KEEP_CAPACITY: usize = 1 << 20;

/// Per-thread scratch state.
#[derive(Default)]
pub(super) struct Workspace {
    pub(super) interner: Interner,
    pub(super) scan_buf: Vec<u8>,
    /// Global (interned) id → dense id of this call (`NONE` when unused).
    pub(super) local_of: Vec<u32>,
    /// Dense id → global id, this call.
    pub(super) globals: Vec<u32>,
    /// Dense token ids of the target and the prediction.
    pub(super) target: Vec<u32>,
    pub(super) prediction: Vec<u32>,
    /// End offsets (into `target` / `prediction`) of the lines that have tokens.
    pub(super) target_lines: Vec<usize>,
    pub(super) prediction_lines: Vec<usize>,
    // ROUGE-N
    pub(super) grams_t: Vec<u32>,
    pub(super) grams_p: Vec<u32>,
    pub(super) pair_ids: FxMap<u64, u32>,
    pub(super) counts_t: Vec<u32>,
    pub(super) counts_p: Vec<u32>,
    // LCS
    pub(super) index: PosIndex,
    pub(super) bits: Vec<u64>,
    pub(super) mask: Vec<u64>,
    pub(super) block: Vec<u64>,
    pub(super) checkpoints: Vec<u64>,
    pub(super) covered: Vec<bool>,
}

impl Workspace {
    pub(super) fn score(
        &mut self,
        scorer: &RougeScorer,
        target: &str,
        prediction: &str,
    ) -> RougeScores {
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
    pub(super) fn begin(&mut self) {
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

    pub(super) fn end(&mut self) {
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
    pub(super) fn tokenize(
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
    pub(super) fn ngram_counts(&mut self, t: &[u32], p: &[u32], n: usize, k: usize) -> RougeCounts {
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
    pub(super) fn lcs_length(&mut self, t: &[u32], p: &[u32], k: usize) -> usize {
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
    pub(super) fn lsum_counts(
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
