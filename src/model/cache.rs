//! [`TensorCache`]: what a run computes once per distinct input and reuses, kept under one byte
//! budget with least-recently-used eviction.
//!
//! Two kinds of entries share the budget:
//! - [`CacheKind::Page`]: a document rendered and preprocessed for an image mode, keyed by its
//!   content (the text, the render settings and fonts, the mode; see
//!   `train::ExampleEncoder`), never by an example id, so two datasets whose ids collide
//!   never see each other's pages;
//! - [`CacheKind::Features`]: the frozen vision tower's output for a page, keyed by the page's
//!   pixels ([`TensorCache::pixel_key`]), so a cached entry is only ever used for the same
//!   input. The encoder is deterministic, so a hit returns exactly what encoding again would.
//!   Only valid while the vision weights do not change: `train::run` turns it on for LoRA
//!   fine-tuning (whose adapters are all in the decoder) and off when it returns.
//!
//! When an insertion would exceed the budget, the least recently used entries (of either kind)
//! are dropped first; an entry larger than the whole budget is not kept.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Tensor};

use super::ImageInput;

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheKind {
    /// A rendered, preprocessed page.
    Page,
    /// The vision tower's output for a page.
    Features,
}

/// A 128-bit content key.
pub type CacheKey = [u64; 2];

/// Counters of one kind of entry in a [`TensorCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to compute.
    pub misses: u64,
    /// Entries dropped to stay within the budget.
    pub evictions: u64,
    /// Entries held.
    pub entries: usize,
    /// Bytes held.
    pub bytes: usize,
}

struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    bytes: usize,
    last_use: u64,
}

#[derive(Default)]
struct State {
    map: HashMap<(CacheKind, CacheKey), Entry>,
    /// `last_use` -> key, oldest first.
    order: BTreeMap<u64, (CacheKind, CacheKey)>,
    tick: u64,
    bytes: usize,
    budget: usize,
    stats: BTreeMap<CacheKind, CacheStats>,
}

impl State {
    fn touch(&mut self, key: (CacheKind, CacheKey)) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.map.get_mut(&key) {
            self.order.remove(&e.last_use);
            e.last_use = tick;
            self.order.insert(tick, key);
        }
    }

    /// Drops least recently used entries until `extra` more bytes fit.
    fn make_room(&mut self, extra: usize) {
        while self.bytes + extra > self.budget {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.map.remove(&key) {
                self.bytes -= e.bytes;
                let s = self.stats.entry(key.0).or_default();
                s.evictions += 1;
                s.entries -= 1;
                s.bytes -= e.bytes;
            }
        }
    }
}

/// Values by content key, up to a byte budget shared by every kind, least recently used
/// dropped first. Thread-safe; share it with `Arc`.
pub struct TensorCache {
    state: Mutex<State>,
}

impl std::fmt::Debug for TensorCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("TensorCache")
            .field("budget", &s.budget)
            .field("bytes", &s.bytes)
            .field("entries", &s.map.len())
            .finish()
    }
}

fn mix(h: u64, w: u64, k: u64) -> u64 {
    (h ^ w).wrapping_mul(k).rotate_left(29)
}

fn hash_into(t: &Tensor, h: &mut CacheKey) -> candle_core::Result<()> {
    for &d in t.dims() {
        h[0] = mix(h[0], d as u64, 0x9e37_79b9_7f4a_7c15);
        h[1] = mix(h[1], d as u64, 0xc2b2_ae3d_27d4_eb4f);
    }
    let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    for x in v {
        let w = x.to_bits() as u64;
        h[0] = mix(h[0], w, 0x9e37_79b9_7f4a_7c15);
        h[1] = mix(h[1], w ^ 0x5555_5555, 0xc2b2_ae3d_27d4_eb4f);
    }
    Ok(())
}

impl TensorCache {
    /// An empty cache keeping at most `budget_bytes`.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State {
                budget: budget_bytes,
                ..State::default()
            }),
        }
    }

    /// The key of one image's pixels: its global view and tiles (values and shapes) and grid.
    pub fn pixel_key(image: &ImageInput) -> candle_core::Result<CacheKey> {
        let mut h = [0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344];
        hash_into(&image.global, &mut h)?;
        if let Some((tiles, (c, r))) = &image.tiles {
            hash_into(tiles, &mut h)?;
            h[0] = mix(h[0], (*c as u64) << 32 | *r as u64, 0x9e37_79b9_7f4a_7c15);
            h[1] = mix(h[1], (*r as u64) << 32 | *c as u64, 0xc2b2_ae3d_27d4_eb4f);
        }
        Ok(h)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value stored under `(kind, key)` (counting a hit or a miss), if it is a `T`.
    pub fn get<T: Any + Send + Sync>(&self, kind: CacheKind, key: &CacheKey) -> Option<Arc<T>> {
        let mut s = self.lock();
        let found = s
            .map
            .get(&(kind, *key))
            .and_then(|e| e.value.clone().downcast::<T>().ok());
        let st = s.stats.entry(kind).or_default();
        if found.is_some() {
            st.hits += 1;
            s.touch((kind, *key));
        } else {
            st.misses += 1;
        }
        found
    }

    /// Stores `value` (`bytes` large) under `(kind, key)`, dropping least recently used
    /// entries to make room; not kept if it alone exceeds the budget.
    pub fn insert<T: Any + Send + Sync>(
        &self,
        kind: CacheKind,
        key: CacheKey,
        value: Arc<T>,
        bytes: usize,
    ) {
        let mut s = self.lock();
        if bytes > s.budget || s.map.contains_key(&(kind, key)) {
            return;
        }
        s.make_room(bytes);
        s.tick += 1;
        let tick = s.tick;
        s.map.insert(
            (kind, key),
            Entry {
                value,
                bytes,
                last_use: tick,
            },
        );
        s.order.insert(tick, (kind, key));
        s.bytes += bytes;
        let st = s.stats.entry(kind).or_default();
        st.entries += 1;
        st.bytes += bytes;
    }

    /// Vision features for `key`, if cached.
    pub fn features(&self, key: &CacheKey) -> Option<Tensor> {
        self.get::<Tensor>(CacheKind::Features, key)
            .map(|t| (*t).clone())
    }

    /// Stores vision features (detached: nothing trains through a cached entry).
    pub fn insert_features(&self, key: CacheKey, features: &Tensor) {
        let bytes = features.elem_count() * features.dtype().size_in_bytes();
        self.insert(CacheKind::Features, key, Arc::new(features.detach()), bytes);
    }

    /// The byte budget.
    pub fn budget(&self) -> usize {
        self.lock().budget
    }

    /// Changes the byte budget, evicting least recently used entries down to it.
    pub fn set_budget(&self, bytes: usize) {
        let mut s = self.lock();
        s.budget = bytes;
        s.make_room(0);
    }

    /// Counters of one kind of entry.
    pub fn stats(&self, kind: CacheKind) -> CacheStats {
        self.lock().stats.get(&kind).copied().unwrap_or_default()
    }

    /// Bytes held, all kinds together.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first_across_kinds() {
        let c = TensorCache::new(100);
        c.insert(CacheKind::Page, [1, 0], Arc::new(1u8), 40);
        c.insert(CacheKind::Features, [2, 0], Arc::new(2u8), 40);
        // Touch the page: the features become the oldest entry.
        assert_eq!(c.get::<u8>(CacheKind::Page, &[1, 0]).as_deref(), Some(&1));
        c.insert(CacheKind::Page, [3, 0], Arc::new(3u8), 40);
        assert!(c.get::<u8>(CacheKind::Features, &[2, 0]).is_none());
        assert!(c.get::<u8>(CacheKind::Page, &[1, 0]).is_some());
        assert!(c.get::<u8>(CacheKind::Page, &[3, 0]).is_some());
        assert_eq!(c.bytes(), 80);
        assert_eq!(c.stats(CacheKind::Features).evictions, 1);
        assert_eq!(c.stats(CacheKind::Page).entries, 2);
        // Same key in the other kind is another entry; wrong type is a miss.
        assert!(c.get::<u8>(CacheKind::Features, &[1, 0]).is_none());
        assert!(c.get::<u16>(CacheKind::Page, &[1, 0]).is_none());
    }

    #[test]
    fn oversized_entries_are_not_kept_and_shrinking_evicts() {
        let c = TensorCache::new(50);
        c.insert(CacheKind::Page, [1, 1], Arc::new(0u8), 51);
        assert_eq!(c.bytes(), 0);
        for i in 0..5 {
            c.insert(CacheKind::Page, [i, 2], Arc::new(i), 10);
        }
        assert_eq!(c.bytes(), 50);
        c.set_budget(20);
        assert_eq!(c.bytes(), 20);
        assert!(c.get::<u64>(CacheKind::Page, &[4, 2]).is_some());
        assert!(c.get::<u64>(CacheKind::Page, &[0, 2]).is_none());
    }
}
