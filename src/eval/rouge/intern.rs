//! Token interning: token strings to dense ids, with cached Porter stems.

use std::hash::Hasher;

use crate::fxhash::FxHasher;

use super::super::porter::stem_ascii_into;
use super::super::tokenize::stem_applies;

/// Id meaning "none yet".
pub(super) const NONE: u32 = u32::MAX;
/// The interner is emptied (between calls) once it holds this many distinct tokens...
pub(super) const INTERNER_LIMIT: usize = 1 << 20;
/// ... or this many bytes of token text.
pub(super) const INTERNER_BYTES_LIMIT: usize = 1 << 26;

/// Token strings → ids, with the Porter stem of each id cached: an open-addressing table
/// (linear probing, load ≤ 1/2) over a byte arena, so a lookup is one hash of the token,
/// usually one probe and one `memcmp`, without pointer chasing.
#[derive(Default)]
pub(super) struct Interner {
    /// All token bytes, back to back.
    pub(super) arena: Vec<u8>,
    /// Id → (start, end) in `arena`.
    pub(super) spans: Vec<(usize, usize)>,
    /// Slots: 0 = empty, else (upper 32 bits of the hash) << 32 | (id + 1).
    pub(super) table: Vec<u64>,
    /// Raw id → id of its stem (`NONE` until computed).
    pub(super) stem_of: Vec<u32>,
    pub(super) stem_buf: Vec<u8>,
}

impl Interner {
    pub(super) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Bytes held (arena), to bound memory between calls.
    pub(super) fn arena_len(&self) -> usize {
        self.arena.len()
    }

    /// Hash of a token: whole 8-byte words, the tail read as one (overlapping) word rather
    /// than copied byte by byte, then the length.
    #[inline]
    pub(super) fn hash(tok: &[u8]) -> u64 {
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

    pub(super) fn intern(&mut self, tok: &[u8]) -> u32 {
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

    pub(super) fn grow(&mut self) {
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
    pub(super) fn stemmed(&mut self, raw: u32, tok: &[u8]) -> u32 {
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
