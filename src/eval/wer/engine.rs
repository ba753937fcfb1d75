//! The alignment engine: RapidFuzz-compatible Levenshtein opcodes (prefix/suffix stripping,
//! banded bit-parallel distance, Hirschberg split) reduced to hit/sub/del/ins counts.

use super::band::HalfPasses;
use super::bitpar::*;
use super::*;

/// The alignment engine with its reusable buffers.
#[derive(Default)]
pub(super) struct Engine {
    pub(super) pm: PatternMatch,
    pub(super) pm_dense: Vec<u64>,
    pub(super) pm_row: Vec<u64>,
    pub(super) pm_row2: Vec<u64>,
    pub(super) vp: Vec<u64>,
    pub(super) vn: Vec<u64>,
    // Recorded band matrix: per row the first word and the offset of its words.
    pub(super) rec_vp: Vec<u64>,
    pub(super) rec_vn: Vec<u64>,
    pub(super) row_fw: Vec<u32>,
    pub(super) row_lw: Vec<u32>,
    pub(super) row_off: Vec<usize>,
    pub(super) rev1: Vec<u32>,
    pub(super) rev2: Vec<u32>,
    /// The Hirschberg split's forward (left half) and backward (right half) passes.
    pub(super) halves: HalfPasses,
    pub(super) vocab: usize,
    /// Moving average of distance / length over recent long pairs (to size the band).
    pub(super) rate_ema: f64,
    pub(super) subs: u64,
    pub(super) dels: u64,
    pub(super) ins: u64,
}

impl Engine {
    /// Counts for `s1` (reference) vs `s2` (hypothesis), symbols being ids below `vocab`.
    pub(super) fn counts(&mut self, s1: &[u32], s2: &[u32], vocab: usize) -> EditCounts {
        self.vocab = vocab;
        self.subs = 0;
        self.dels = 0;
        self.ins = 0;
        // levenshtein_editops: score_cutoff = max(len1, len2) (no score_hint from jiwer).
        self.align(s1, s2, s1.len().max(s2.len()), false);
        self.trim();
        let (s, d, i) = (self.subs, self.dels, self.ins);
        EditCounts {
            hits: s1.len() as u64 - s - d,
            substitutions: s,
            deletions: d,
            insertions: i,
        }
    }

    /// `levenshtein_align_hirschberg`; `exact` when `max` is the distance itself (a
    /// sub-problem of a split), not just a bound.
    pub(super) fn align(&mut self, s1: &[u32], s2: &[u32], max: usize, exact: bool) {
        let (s1, s2) = strip_affixes(s1, s2);
        let (l1, l2) = (s1.len(), s2.len());

        let max = max.min(l1.max(l2));
        let full_band = l1.min(max.saturating_mul(2).saturating_add(1)) as u128;
        let matrix_size = 2 * full_band * l2 as u128 / 8;
        if matrix_size < 1024 * 1024 || l1 < 65 || l2 < 10 {
            self.align_direct(s1, s2, max);
        } else {
            let (s1_mid, s2_mid, left_score, right_score) = self.hirschberg_pos(s1, s2, max, exact);
            // The two half scores at the split are exact distances of the halves.
            self.align(&s1[..s1_mid], &s2[..s2_mid], left_score, true);
            self.align(&s1[s1_mid..], &s2[s2_mid..], right_score, true);
        }
    }

    /// Builds the pattern-match rows of `s1`; returns `Some(rows)` when the dense table is
    /// used (symbols at or above `rows` match nowhere), `None` for the sparse lists.
    pub(super) fn build_pm(&mut self, s1: &[u32]) -> Option<usize> {
        let words = s1.len().div_ceil(64);
        if let Some(rows) = dense_pattern(s1, words, &mut self.pm_dense) {
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
    pub(super) fn run_rows(
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

    /// `find_hirschberg_pos`: split s2 in the middle and take the first s1 position with the
    /// smallest sum of the two half distances. Returns (s1_mid, s2_mid, left, right).
    ///
    /// The half rows are first computed in a narrow band; the best sum `b` bounds the
    /// distance from above, so if `b` fits the band the split is RapidFuzz's (every optimal
    /// split point lies in the band with its exact values, and no other point can reach `b`),
    /// else a second pass with the band for `b` (or `max`) is exact. When `max` is known to
    /// be the distance (`exact`), one pass with its band is exact.
    pub(super) fn hirschberg_pos(
        &mut self,
        s1: &[u32],
        s2: &[u32],
        max: usize,
        exact: bool,
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
        let mut band = if exact {
            max
        } else {
            (l1.abs_diff(l2) + 128).min(max)
        };
        let best = loop {
            let halves = &mut self.halves;
            halves.run([s1, &rev1], [&s2[..left_size], &rev2], l2, band, self.vocab);
            let [left, right] = &halves.out;
            let mut best = (FAR, 0, 0, 0);
            for i in 0..=l1 {
                let (l, r) = (left[i], right[l1 - i]);
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
    pub(super) fn align_direct(&mut self, s1: &[u32], s2: &[u32], max: usize) {
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

    pub(super) fn record(&mut self, s: u64, d: u64, i: u64, longer: usize) {
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
    pub(super) fn fill_and_walk(&mut self, s1: &[u32], s2: &[u32], max: usize) -> (u64, u64, u64) {
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
    pub(super) fn test_vp(&self, row: usize, col: usize) -> bool {
        let (w, fw) = (col / 64, self.row_fw[row] as usize);
        if w < fw || w > self.row_lw[row] as usize {
            return true;
        }
        let word = self.rec_vp[self.row_off[row] + w - fw];
        (word >> (col % 64)) & 1 == 1
    }

    /// Recorded VN bit of (row, col); outside the band, unset.
    #[inline]
    pub(super) fn test_vn(&self, row: usize, col: usize) -> bool {
        let (w, fw) = (col / 64, self.row_fw[row] as usize);
        if w < fw || w > self.row_lw[row] as usize {
            return false;
        }
        let word = self.rec_vn[self.row_off[row] + w - fw];
        (word >> (col % 64)) & 1 == 1
    }

    /// Frees buffers a huge input left behind (the scorer lives in a thread-local).
    pub(super) fn trim(&mut self) {
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
            self.halves = Default::default();
            self.rev1 = Vec::new();
            self.rev2 = Vec::new();
        }
    }
}
