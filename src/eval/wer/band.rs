//! The two half passes of a Hirschberg split (forward over the left half of s2, backward
//! over the reversed right half), run together.
//!
//! Each pass is Hyyrö's banded block algorithm keeping the absolute score of the band's last
//! cell; the last row's scores are read back from its vertical vectors. Both passes have the
//! same band geometry row by row, so their vectors are stored interleaved and every word step
//! works on both at once ([`W2`], one SIMD register), and each
//! sweep advances two rows (row b reads row a's vertical vectors word by word): the carry
//! chain of one row no longer sets the pace.

use std::ops::Range;

use super::bitpar::*;
use super::w2::W2;

/// Horizontal carries (hp, hn) entering a word; a row starts with +1.
type Carry = (W2, W2);

/// One word step of Hyyrö's block algorithm on both lanes; returns the word's horizontal
/// vectors (hp, hn).
#[inline(always)]
fn step(pm: W2, vp: &mut W2, vn: &mut W2, carry: &mut Carry) -> (W2, W2) {
    let (v_p, v_n) = (*vp, *vn);
    let x = pm | carry.1;
    let d0 = ((x & v_p).wrapping_add(v_p) ^ v_p) | x | v_n;
    let hp = v_n | !(d0 | v_p);
    let hn = d0 & v_p;
    let hp_shift = hp.shl1() | carry.0;
    let hn_shift = hn.shl1() | carry.1;
    *carry = (hp.shr63(), hn.shr63());
    *vp = hn_shift | !(d0 | hp_shift);
    *vn = hp_shift & d0;
    (hp, hn)
}

/// One row of both passes over words `range` (patterns `pm[lane]`); returns the last word's
/// horizontal vectors.
#[inline(always)]
fn run(
    pm: [&[u64]; 2],
    vp: &mut [W2],
    vn: &mut [W2],
    range: Range<usize>,
    c: &mut Carry,
) -> (W2, W2) {
    let mut h = Default::default();
    let (p0, p1) = (&pm[0][range.clone()], &pm[1][range.clone()]);
    let (vp, vn) = (&mut vp[range.clone()], &mut vn[range]);
    for (((a, b), v), n) in p0.iter().zip(p1).zip(vp.iter_mut()).zip(vn.iter_mut()) {
        let (mut v1, mut n1) = (*v, *n);
        h = step(W2::new(*a, *b), &mut v1, &mut n1, c);
        (*v, *n) = (v1, n1);
    }
    h
}

/// Rows a then b of both passes over words `range`, word by word.
#[inline(always)]
fn run_both(
    pa: [&[u64]; 2],
    pb: [&[u64]; 2],
    vp: &mut [W2],
    vn: &mut [W2],
    range: Range<usize>,
    ca: &mut Carry,
    cb: &mut Carry,
) {
    let r = range;
    let a = pa[0][r.clone()].iter().zip(&pa[1][r.clone()]);
    let b = pb[0][r.clone()].iter().zip(&pb[1][r.clone()]);
    let v = vp[r.clone()].iter_mut().zip(vn[r].iter_mut());
    let (mut xa, mut xb) = (*ca, *cb);
    for ((a, b), (v, n)) in a.zip(b).zip(v) {
        let (mut v1, mut n1) = (*v, *n);
        step(W2::new(*a.0, *a.1), &mut v1, &mut n1, &mut xa);
        step(W2::new(*b.0, *b.1), &mut v1, &mut n1, &mut xb);
        (*v, *n) = (v1, n1);
    }
    (*ca, *cb) = (xa, xb);
}

/// The pattern-match table of one pass's s1.
#[derive(Default)]
struct Pattern {
    pm: PatternMatch,
    pm_dense: Vec<u64>,
    /// `Some(rows)` when the dense table is used (symbols at or above `rows` match nowhere).
    dense: Option<usize>,
    /// Pattern rows of the sparse table, filled per row and cleared after it.
    scratch: [Vec<u64>; 2],
}

impl Pattern {
    fn build(&mut self, s1: &[u32], vocab: usize, words: usize) {
        self.dense = dense_pattern(s1, words, &mut self.pm_dense);
        if self.dense.is_none() {
            self.pm.build(s1, vocab);
            for row in &mut self.scratch {
                row.clear();
                row.resize(words, 0);
            }
        }
    }

    /// Loads the sparse pattern row of symbol `c` over `band` into scratch `k`.
    fn load(&mut self, k: usize, c: u32, band: (usize, usize)) {
        if self.dense.is_none() {
            for &(w, m) in self.pm.entries(c, band.0, band.1) {
                self.scratch[k][w] = m;
            }
        }
    }

    /// Clears what [`Pattern::load`] set.
    fn unload(&mut self, k: usize, c: u32, band: (usize, usize)) {
        if self.dense.is_none() {
            for &(w, _) in self.pm.entries(c, band.0, band.1) {
                self.scratch[k][w] = 0;
            }
        }
    }

    /// The pattern row of symbol `c` (scratch `k`, loaded, for the sparse table).
    fn row(&self, k: usize, c: u32, words: usize) -> &[u64] {
        match self.dense {
            Some(n) => {
                let c = (c as usize).min(n);
                &self.pm_dense[c * words..(c + 1) * words]
            }
            None => &self.scratch[k],
        }
    }
}

/// The shape shared by both passes.
#[derive(Clone, Copy)]
struct Geometry {
    l1: usize,
    words: usize,
    last_bit: u32,
    lo: i64,
    hi: i64,
}

impl Geometry {
    fn bottom(&self, w: usize) -> usize {
        ((w + 1) * 64).min(self.l1)
    }

    /// The change of the bottom cell of word `w` across a row, from that word's horizontal
    /// vectors (`hp`, `hn` of one lane).
    fn delta(&self, w: usize, hp: u64, hn: u64) -> isize {
        let bit = if w + 1 == self.words {
            self.last_bit
        } else {
            63
        };
        ((hp >> bit) & 1) as isize - ((hn >> bit) & 1) as isize
    }

    /// Band words of row `r` after a row with band `prev`, the last word never moving back.
    fn row_band(&self, r: usize, prev: (usize, usize)) -> (usize, usize) {
        let (f, l) = band_words(r, self.l1, self.lo, self.hi);
        (f, if r == 0 { l } else { l.max(prev.1) })
    }
}

/// The two passes: patterns, interleaved vectors, and per pass the band of its last row, the
/// score of that band's last cell and, at the end, its scores.
#[derive(Default)]
pub(super) struct HalfPasses {
    pats: [Pattern; 2],
    vp: Vec<W2>,
    vn: Vec<W2>,
    band: [(usize, usize); 2],
    last: [usize; 2],
    /// `D(i, rows)` for i = 0..=len(s1) of each pass after [`HalfPasses::run`] ([`FAR`]
    /// outside the band).
    pub(super) out: [Vec<usize>; 2],
}

/// Words `from..=to` entering the band of lane `lanes` start from "+1 per row down" below
/// the band's last cell (an upper bound).
fn enter(
    vp: &mut [W2],
    vn: &mut [W2],
    last: &mut [usize; 2],
    lanes: Range<usize>,
    (from, to): (usize, usize),
    g: &Geometry,
) {
    for w in from..=to {
        for k in lanes.clone() {
            vp[w] = vp[w].with(k, !0);
            vn[w] = vn[w].with(k, 0);
            last[k] += g.bottom(w) - w * 64;
        }
    }
}

impl HalfPasses {
    /// `D(i, rows[0].len())` over `s1s[0]` into `out[0]` and `D(i, rows[1].len())` over
    /// `s1s[1]` into `out[1]` (`s1s` of one length), computing only the band of diagonals of
    /// the `len(s1)` × `l2` problem whose cells lie on paths of cost <= `max` + 2 (cells
    /// outside get [`FAR`]; cells inside are upper bounds, exact on paths of cost <= `max`).
    pub(super) fn run(
        &mut self,
        s1s: [&[u32]; 2],
        rows: [&[u32]; 2],
        l2: usize,
        max: usize,
        vocab: usize,
    ) {
        let l1 = s1s[0].len();
        let (lo, hi) = band_diagonals(l1, l2, max);
        let g = Geometry {
            l1,
            words: l1.div_ceil(64),
            last_bit: ((l1 - 1) % 64) as u32,
            lo,
            hi,
        };
        for (p, s1) in self.pats.iter_mut().zip(s1s) {
            p.build(s1, vocab, g.words);
        }
        self.vp.clear();
        self.vp.resize(g.words, W2::splat(!0));
        self.vn.clear();
        self.vn.resize(g.words, W2::splat(0));
        let both = rows[0].len().min(rows[1].len()) & !1;
        for r in (0..both).step_by(2) {
            self.sweep(
                r,
                [(rows[0][r], rows[0][r + 1]), (rows[1][r], rows[1][r + 1])],
                &g,
            );
        }
        for (k, rows) in rows.into_iter().enumerate() {
            for (r, &c) in rows.iter().enumerate().skip(both) {
                self.row(k, r, c, &g);
            }
            self.finish(k, rows.len(), &g);
        }
    }

    /// Rows `r` and `r + 1` of both passes (`syms[pass] = (row r symbol, row r + 1 symbol)`).
    fn sweep(&mut self, r: usize, syms: [(u32, u32); 2], g: &Geometry) {
        let fa = g.row_band(r, self.band[0]);
        let fb = g.row_band(r + 1, fa);
        if r == 0 {
            self.last = [g.bottom(fa.1); 2];
        } else {
            let from = self.band[0].1 + 1;
            enter(
                &mut self.vp,
                &mut self.vn,
                &mut self.last,
                0..2,
                (from, fa.1),
                g,
            );
        }
        self.band = [fb; 2];
        for (p, s) in self.pats.iter_mut().zip(syms) {
            p.load(0, s.0, fa);
            p.load(1, s.1, fb);
        }
        let [p0, p1] = &self.pats;
        let pa = [p0.row(0, syms[0].0, g.words), p1.row(0, syms[1].0, g.words)];
        let pb = [p0.row(1, syms[0].1, g.words), p1.row(1, syms[1].1, g.words)];
        let (vp, vn, last) = (&mut self.vp, &mut self.vn, &mut self.last);
        let add = |last: &mut [usize; 2], w: usize, (hp, hn): (W2, W2)| {
            for (k, l) in last.iter_mut().enumerate() {
                *l = l.wrapping_add_signed(g.delta(w, hp.get(k), hn.get(k)));
            }
        };
        let start = (W2::splat(1), W2::splat(0));
        let (mut ca, mut cb) = (start, start);
        if fb.0 <= fa.1 {
            // Row a alone before row b's band starts, then both rows word by word.
            run(pa, vp, vn, fa.0..fb.0, &mut ca);
            run_both(pa, pb, vp, vn, fb.0..fa.1, &mut ca, &mut cb);
            // Row a's last word, the words entering at row b, then row b's tail.
            let h = run(pa, vp, vn, fa.1..fa.1 + 1, &mut ca);
            add(last, fa.1, h);
            enter(vp, vn, last, 0..2, (fa.1 + 1, fb.1), g);
            let h = run(pb, vp, vn, fa.1..fb.1 + 1, &mut cb);
            add(last, fb.1, h);
        } else {
            let h = run(pa, vp, vn, fa.0..fa.1 + 1, &mut ca);
            add(last, fa.1, h);
            enter(vp, vn, last, 0..2, (fa.1 + 1, fb.1), g);
            let h = run(pb, vp, vn, fb.0..fb.1 + 1, &mut cb);
            add(last, fb.1, h);
        }
        for (p, s) in self.pats.iter_mut().zip(syms) {
            p.unload(0, s.0, fa);
            p.unload(1, s.1, fb);
        }
    }

    /// Row `r` (symbol `c`) of pass `k` alone.
    fn row(&mut self, k: usize, r: usize, c: u32, g: &Geometry) {
        let band = g.row_band(r, self.band[k]);
        if r == 0 {
            self.last[k] = g.bottom(band.1);
        } else {
            let from = self.band[k].1 + 1;
            enter(
                &mut self.vp,
                &mut self.vn,
                &mut self.last,
                k..k + 1,
                (from, band.1),
                g,
            );
        }
        self.band[k] = band;
        self.pats[k].load(0, c, band);
        let pm = self.pats[k].row(0, c, g.words);
        let (mut hp_c, mut hn_c) = (1u64, 0u64);
        let mut h = (0, 0);
        for (w, &p) in pm.iter().enumerate().take(band.1 + 1).skip(band.0) {
            let (mut v_p, mut v_n) = (self.vp[w].get(k), self.vn[w].get(k));
            h = word_step(p, &mut v_p, &mut v_n, &mut hp_c, &mut hn_c);
            self.vp[w] = self.vp[w].with(k, v_p);
            self.vn[w] = self.vn[w].with(k, v_n);
        }
        self.last[k] = self.last[k].wrapping_add_signed(g.delta(band.1, h.0, h.1));
        self.pats[k].unload(0, c, band);
    }

    /// `D(i, rows)` of pass `k` for every i, from its last row's state.
    fn finish(&mut self, k: usize, rows: usize, g: &Geometry) {
        let out = &mut self.out[k];
        out.clear();
        out.resize(g.l1 + 1, FAR);
        if rows == 0 {
            for (i, o) in out.iter_mut().enumerate() {
                *o = i;
            }
            return;
        }
        let band = self.band[k];
        let mut val = self.last[k];
        for w in (band.0..=band.1).rev() {
            let (vp, vn) = (self.vp[w].get(k), self.vn[w].get(k));
            for i in (w * 64 + 1..=g.bottom(w)).rev() {
                out[i] = val;
                let b = (i - 1) % 64;
                val = val
                    .wrapping_add(((vn >> b) & 1) as usize)
                    .wrapping_sub(((vp >> b) & 1) as usize);
            }
        }
        if band.0 == 0 {
            out[0] = val;
        }
    }
}
