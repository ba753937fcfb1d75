//! Unit tests of WER/CER internals against plain reference implementations.

use super::engine::*;
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
