//! Interning words and characters to dense ids for the alignment engine.

/// Interns the words of one reference–hypothesis pair into dense ids: an open-addressing
/// table of (hash, id, stamp) reused across calls (a new stamp empties it).
#[derive(Default)]
pub(super) struct Interner {
    pub(super) table: Vec<(u64, u32, u32)>,
    pub(super) bits: u32,
    pub(super) stamp: u32,
    /// For each id: (side, start, end) of its first occurrence.
    pub(super) words: Vec<(usize, usize, usize)>,
}

impl Interner {
    pub(super) fn reset(&mut self, n: usize) {
        self.words.clear();
        let want = (2 * n + 16).next_power_of_two();
        if self.table.len() < want || self.stamp == u32::MAX {
            self.table.clear();
            self.table.resize(want.max(self.table.len()), (0, 0, 0));
            self.bits = self.table.len().trailing_zeros();
            self.stamp = 0;
        }
        self.stamp += 1;
    }

    pub(super) fn len(&self) -> usize {
        self.words.len()
    }

    #[inline]
    pub(super) fn intern(&mut self, texts: [&str; 2], side: usize, a: usize, b: usize) -> u32 {
        let word = &texts[side].as_bytes()[a..b];
        let h = hash_bytes(word);
        let mask = self.table.len() - 1;
        let mut idx = (h >> (64 - self.bits)) as usize;
        loop {
            let (eh, id, stamp) = self.table[idx];
            if stamp != self.stamp {
                let id = self.words.len() as u32;
                self.table[idx] = (h, id, self.stamp);
                self.words.push((side, a, b));
                return id;
            }
            if eh == h {
                let (s, x, y) = self.words[id as usize];
                if bytes_eq(&texts[s].as_bytes()[x..y], word) {
                    return id;
                }
            }
            idx = (idx + 1) & mask;
        }
    }
}

/// Byte-string equality, inlined for short words (no `memcmp` call).
#[inline]
pub(super) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && if a.len() <= 16 {
            a.iter().zip(b).all(|(x, y)| x == y)
        } else {
            a == b
        }
}

/// FxHash-style hash of a byte string (8 bytes per round, length mixed in).
#[inline]
pub(super) fn hash_bytes(bytes: &[u8]) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = 0u64;
        for (k, &x) in rest.iter().enumerate() {
            w |= u64::from(x) << (8 * k);
        }
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// Byte range of `part` (a subslice) inside `whole`.
#[inline]
pub(super) fn span_of(whole: &str, part: &str) -> (usize, usize) {
    let a = part.as_ptr() as usize - whole.as_ptr() as usize;
    (a, a + part.len())
}
