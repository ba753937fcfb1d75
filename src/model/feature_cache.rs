//! [`FeatureCache`]: the frozen vision tower's output per page, so that a page seen again (the
//! next epoch, the next evaluation) skips SAM and CLIP.
//!
//! Keys are the page's pixels (two independent 64-bit hashes of every value's bits plus the
//! shapes), so a cached entry is only ever used for the same input. The encoder is
//! deterministic, so a hit returns exactly what encoding again would. Only valid while the
//! vision weights do not change: [`crate::train::run`] turns it on for LoRA fine-tuning (whose
//! adapters are all in the decoder) and off when it returns.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{DType, Tensor};

use super::ImageInput;

/// Page features by pixel content, up to a byte budget (entries beyond it are not kept).
#[derive(Debug)]
pub struct FeatureCache {
    entries: Mutex<Entries>,
    budget_bytes: usize,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<[u64; 2], Tensor>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

/// Counters of a [`FeatureCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to encode.
    pub misses: u64,
    /// Pages held.
    pub entries: usize,
    /// Bytes held.
    pub bytes: usize,
}

fn mix(h: u64, w: u64, k: u64) -> u64 {
    (h ^ w).wrapping_mul(k).rotate_left(29)
}

fn hash_into(t: &Tensor, h: &mut [u64; 2]) -> candle_core::Result<()> {
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

impl FeatureCache {
    /// An empty cache keeping at most `budget_bytes` of features.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            budget_bytes,
        }
    }

    /// The key of one image: its global view and tiles (values and shapes) and tile grid.
    pub fn key(image: &ImageInput) -> candle_core::Result<[u64; 2]> {
        let mut h = [0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344];
        hash_into(&image.global, &mut h)?;
        if let Some((tiles, (c, r))) = &image.tiles {
            hash_into(tiles, &mut h)?;
            h[0] = mix(h[0], (*c as u64) << 32 | *r as u64, 0x9e37_79b9_7f4a_7c15);
            h[1] = mix(h[1], (*r as u64) << 32 | *c as u64, 0xc2b2_ae3d_27d4_eb4f);
        }
        Ok(h)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The features stored under `key`, counting a hit or a miss.
    pub fn get(&self, key: &[u64; 2]) -> Option<Tensor> {
        let mut e = self.lock();
        let found = e.map.get(key).cloned();
        if found.is_some() {
            e.hits += 1;
        } else {
            e.misses += 1;
        }
        found
    }

    /// Stores `features` under `key` if the budget allows.
    pub fn insert(&self, key: [u64; 2], features: &Tensor) {
        let bytes = features.elem_count() * features.dtype().size_in_bytes();
        let mut e = self.lock();
        if e.bytes + bytes <= self.budget_bytes && !e.map.contains_key(&key) {
            e.bytes += bytes;
            e.map.insert(key, features.detach());
        }
    }

    /// Hits, misses and size so far.
    pub fn stats(&self) -> CacheStats {
        let e = self.lock();
        CacheStats {
            hits: e.hits,
            misses: e.misses,
            entries: e.map.len(),
            bytes: e.bytes,
        }
    }
}
