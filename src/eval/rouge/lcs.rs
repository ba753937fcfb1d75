//! Longest common subsequences, bit-parallel (Hyyrö 2004): LCS length for ROUGE-L and the
//! union-LCS with rouge-score's backtrack tie-breaking for ROUGE-Lsum.

/// Words of stored LCS bit rows above which ROUGE-Lsum keeps only checkpoint rows (and
/// recomputes the rows between them during the backtrack): 32 MiB.
pub(super) const ROW_BUDGET_WORDS: usize = 1 << 22;

/// Positions of each token in a sequence (a CSR index over dense token ids).
#[derive(Default)]
pub(super) struct PosIndex {
    /// Occurrences per token id (all zero between uses).
    pub(super) count: Vec<u32>,
    /// Offset into `positions` per token id (valid where `count > 0`).
    pub(super) start: Vec<u32>,
    /// Token ids present, in first-occurrence order.
    pub(super) distinct: Vec<u32>,
    pub(super) positions: Vec<u32>,
}

impl PosIndex {
    pub(super) fn build(&mut self, seq: &[u32], k: usize) {
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
    pub(super) fn contains(&self, x: u32) -> bool {
        self.count[x as usize] > 0
    }

    /// Ascending positions of `x`.
    #[inline]
    pub(super) fn get(&self, x: u32) -> &[u32] {
        let c = self.count[x as usize] as usize;
        if c == 0 {
            return &[];
        }
        let s = self.start[x as usize] as usize;
        &self.positions[s..s + c]
    }

    pub(super) fn clear(&mut self) {
        for &x in &self.distinct {
            self.count[x as usize] = 0;
        }
        self.distinct.clear();
    }
}

/// One row of the bit-vector LCS (Hyyrö 2004): `v ← (v + (v & m)) | (v & !m)` where `m` has
/// the bits of `positions`. Bit `j` of row `i` is 0 iff `T[i][j+1] = T[i][j] + 1`, where `T`
/// is the LCS DP table, so `T[i][j]` = number of zero bits below bit `j`. `mask` must be
/// all zero (it is again on return); `positions` ascending and non-empty.
#[inline]
pub(super) fn advance(v: &mut [u64], positions: &[u32], mask: &mut [u64]) {
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
pub(super) fn block_rows(rows: usize, w: usize) -> usize {
    if (rows + 1).saturating_mul(w) <= ROW_BUDGET_WORDS {
        rows
    } else {
        ((rows as f64).sqrt().ceil() as usize).max(1)
    }
}

/// `T[i][j]` from bit row `i`: the zero bits among bits `0..j`.
#[inline]
pub(super) fn prefix_zeros(v: &[u64], j: usize) -> usize {
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
pub(super) fn union_lcs(
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
