//! Unit tests of WER/CER internals against plain reference implementations.

use super::engine::*;
use super::*;

/// Plain DP with RapidFuzz's walk-back rules on the exact matrix.
fn reference_counts(s1: &[u32], s2: &[u32]) -> (u64, u64, u64) {
    let (s1, s2) = super::bitpar::strip_affixes(s1, s2);
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
        let (a, b) = super::bitpar::strip_affixes(&s1, &s2);
        if a.is_empty() || b.is_empty() {
            continue;
        }
        e.vocab = alpha as usize;
        let dist = (want.0 + want.1 + want.2) as usize;
        assert_eq!(e.fill_and_walk(a, b, dist), want, "{s1:?} {s2:?}");
    }
}

/// `D(i, rows.len())` for i = 0..=len(s1), by plain DP.
fn last_column(s1: &[u32], rows: &[u32]) -> Vec<usize> {
    let mut col: Vec<usize> = (0..=s1.len()).collect();
    for (j, &c) in rows.iter().enumerate() {
        let mut diag = col[0];
        col[0] = j + 1;
        for i in 1..=s1.len() {
            let up = col[i];
            col[i] = (up + 1)
                .min(col[i - 1] + 1)
                .min(diag + usize::from(s1[i - 1] != c));
            diag = up;
        }
    }
    col
}

/// RapidFuzz's `levenshtein_align_hirschberg` on plain DP: common affixes stripped, split
/// while the banded matrix would reach 1 MB at the middle of s2 and the first s1 position
/// with the smallest sum of the two half distances, the halves walked as on the whole matrix.
fn reference_hirschberg(s1: &[u32], s2: &[u32], max: usize) -> (u64, u64, u64) {
    let (s1, s2) = super::bitpar::strip_affixes(s1, s2);
    let (l1, l2) = (s1.len(), s2.len());
    let max = max.min(l1.max(l2));
    let full_band = l1.min(2 * max + 1);
    if 2 * full_band * l2 / 8 < 1 << 20 || l1 < 65 || l2 < 10 {
        return reference_counts(s1, s2);
    }
    let half = l2 / 2;
    let left = last_column(s1, &s2[..half]);
    let rev1: Vec<u32> = s1.iter().rev().copied().collect();
    let rev2: Vec<u32> = s2[half..].iter().rev().copied().collect();
    let right = last_column(&rev1, &rev2);
    let (mut best, mut at) = (usize::MAX, 0);
    for i in 0..=l1 {
        if left[i] + right[l1 - i] < best {
            (best, at) = (left[i] + right[l1 - i], i);
        }
    }
    let a = reference_hirschberg(&s1[..at], &s2[..half], left[at]);
    let b = reference_hirschberg(&s1[at..], &s2[half..], right[l1 - at]);
    (a.0 + b.0, a.1 + b.1, a.2 + b.2)
}

#[test]
fn hirschberg_splits_match_plain_dp() {
    // Long enough to split (once or twice), with error rates from 2% to 70%, length
    // differences of both signs, odd and even halves, small alphabets (dense pattern table)
    // and large ones (sparse table).
    let mut st = 5u64;
    let mut e = WerScorer::new();
    let mut split_matters = 0;
    for case in 0..14 {
        let alpha = [2, 4, 30, 5000][case % 4];
        let l1 = 2100 + (lcg(&mut st) % 1500) as usize;
        let s1: Vec<u32> = (0..l1).map(|_| (lcg(&mut st) % alpha) as u32).collect();
        let rate = [2, 10, 30, 70][(case / 2) % 4];
        let bias = lcg(&mut st) % 3;
        let mut s2 = Vec::with_capacity(l1 * 2);
        for &c in &s1 {
            if lcg(&mut st) % 100 >= rate {
                s2.push(c);
                continue;
            }
            match (lcg(&mut st) + bias) % 4 {
                0 => s2.push((lcg(&mut st) % alpha) as u32),
                1 => {}
                2 => s2.extend([c, (lcg(&mut st) % alpha) as u32]),
                _ => s2.extend([(lcg(&mut st) % alpha) as u32, c]),
            }
        }
        let got = e.process_ids(&s1, &s2);
        let want = reference_hirschberg(&s1, &s2, l1.max(s2.len()));
        assert_eq!(
            (got.substitutions, got.deletions, got.insertions),
            want,
            "case {case}: {} vs {} symbols",
            s1.len(),
            s2.len()
        );
        // The split point itself, from a bound (the top level) and from the exact distance
        // (sub-problems), on the pair with its common affixes stripped.
        let (a, b) = super::bitpar::strip_affixes(&s1, &s2);
        let half = b.len() / 2;
        let left = last_column(a, &b[..half]);
        let rev1: Vec<u32> = a.iter().rev().copied().collect();
        let rev2: Vec<u32> = b[half..].iter().rev().copied().collect();
        let right = last_column(&rev1, &rev2);
        let sums: Vec<usize> = (0..=a.len())
            .map(|i| left[i] + right[a.len() - i])
            .collect();
        let best = *sums.iter().min().unwrap();
        let at = sums.iter().position(|&v| v == best).unwrap();
        let want = (at, half, left[at], right[a.len() - at]);
        let mut engine = Engine {
            vocab: alpha as usize,
            ..Engine::default()
        };
        let dist = want.2 + want.3;
        assert_eq!(
            engine.hirschberg_pos(a, b, a.len().max(b.len()), false),
            want
        );
        assert_eq!(engine.hirschberg_pos(a, b, dist, true), want, "case {case}");
        split_matters += usize::from(sums.iter().filter(|&&v| v == best).count() > 1);
    }
    // Several split points tie in some cases, so taking the first one is tested.
    assert!(split_matters > 0);
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
