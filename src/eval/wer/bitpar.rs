//! Bit-parallel Levenshtein building blocks (Myers/Hyyrö): pattern-match vectors, one word
//! step, row advance over a band, and the band geometry.

pub(super) const NONE: u32 = u32::MAX;

/// Pattern-match bit vectors of one sequence (the "s1" side), 64 positions per word: for
/// each distinct symbol, its (word, mask) entries in word order.
#[derive(Default)]
pub(super) struct PatternMatch {
    /// Symbol (dense id below the engine's `vocab`) -> local index, or [`NONE`].
    pub(super) local: Vec<u32>,
    /// Symbols given a local index by the last build (reset by the next one).
    pub(super) touched: Vec<u32>,
    pub(super) start: Vec<usize>,
    pub(super) entries: Vec<(usize, u64)>,
    pub(super) last_word: Vec<usize>,
    pub(super) cursor: Vec<usize>,
    pub(super) words: usize,
}

impl PatternMatch {
    pub(super) fn build(&mut self, s1: &[u32], vocab: usize) {
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
    pub(super) fn entries(&self, c: u32, fw: usize, lw: usize) -> &[(usize, u64)] {
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
/// and the horizontal carries; returns the word's horizontal vectors (hp, hn).
#[inline(always)]
pub(super) fn word_step(
    pm: u64,
    vp: &mut u64,
    vn: &mut u64,
    hp_carry: &mut u64,
    hn_carry: &mut u64,
) -> (u64, u64) {
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
    (hp, hn)
}

/// One row `a` (words `fa.0..=fa.1`) and optionally the next row `b` (words `fb.0..=fb.1`,
/// with `fa.0 <= fb.0 <= fa.1 + 1` and `fa.1 <= fb.1`), interleaved word by word so the two
/// carry chains overlap. The horizontal carry entering each row's first word is +1 (exact on
/// the top border, an upper bound inside the matrix). New vertical vectors also go to the
/// `rec_*` slices (indexed from the row's first word) when they are non-empty.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn advance_rows(
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
pub(super) fn split_two(
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
pub(super) const FAR: usize = usize::MAX / 4;

/// Diagonals `i - j` (s1 index minus s2 index, 1-based cells) of the cells of an
/// `l1` × `l2` matrix that lie on some path of cost <= `max` + 2: `lo..=hi`.
pub(super) fn band_diagonals(l1: usize, l2: usize, max: usize) -> (i64, i64) {
    let diff = l1 as i64 - l2 as i64;
    let k = ((max as i64).saturating_add(2) - diff.abs()).max(0) / 2;
    (diff.min(0) - k, diff.max(0) + k)
}

/// First and last word (64 cells of s1 each) holding band cells of row `r` (0-based, so
/// j = r + 1).
#[inline]
pub(super) fn band_words(r: usize, l1: usize, lo: i64, hi: i64) -> (usize, usize) {
    let j = r as i64 + 1;
    let first_col = (j + lo).clamp(1, l1 as i64) as usize;
    let last_col = (j + hi).clamp(1, l1 as i64) as usize;
    let fw = (first_col - 1) / 64;
    (fw, ((last_col - 1) / 64).max(fw))
}

/// Dense table size limit (u64 entries).
pub(super) const DENSE_PM_LIMIT: usize = 1 << 16;

/// Fills `table` with the dense pattern-match rows of `s1` (`words` words per symbol, one
/// all-zero row after the largest symbol) and returns `Some(rows)`, or `None` when that table
/// would pass [`DENSE_PM_LIMIT`] (then the sparse [`PatternMatch`] is used).
pub(super) fn dense_pattern(s1: &[u32], words: usize, table: &mut Vec<u64>) -> Option<usize> {
    let rows = s1.iter().max().map_or(0, |&m| m as usize + 1);
    if rows.saturating_mul(words) > DENSE_PM_LIMIT {
        return None;
    }
    table.clear();
    table.resize((rows + 1) * words, 0);
    for (p, &c) in s1.iter().enumerate() {
        table[c as usize * words + p / 64] |= 1u64 << (p % 64);
    }
    Some(rows)
}

/// `s1` and `s2` without their common prefix and suffix.
pub(super) fn strip_affixes<'a>(s1: &'a [u32], s2: &'a [u32]) -> (&'a [u32], &'a [u32]) {
    let prefix = s1.iter().zip(s2).take_while(|(a, b)| a == b).count();
    let (s1, s2) = (&s1[prefix..], &s2[prefix..]);
    let suffix = s1
        .iter()
        .rev()
        .zip(s2.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    (&s1[..s1.len() - suffix], &s2[..s2.len() - suffix])
}
