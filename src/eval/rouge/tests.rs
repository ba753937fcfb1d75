//! Unit tests of the ROUGE internals against plain reference implementations.

use super::lcs::*;
use super::workspace::*;
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
