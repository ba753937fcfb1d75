//! Corpus aggregation: means and seeded bootstrap confidence intervals.
//!
//! The bootstrap follows rouge-score's `BootstrapAggregator` (resample records with replacement,
//! take the mean of each resample, report the 2.5/50/97.5 percentiles of those means with numpy's
//! default linear interpolation), but with our own seeded generator, so intervals are
//! reproducible run to run (numpy's global, unseeded MT19937 makes rouge-score's are not).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Bootstrap settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Number of resamples (rouge-score: 1000).
    pub samples: usize,
    /// Confidence level in (0, 1) (rouge-score: 0.95).
    pub confidence: f64,
    /// Seed of the resampling generator.
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Self {
            samples: 1000,
            confidence: 0.95,
            seed: 0,
        }
    }
}

/// A statistic with its bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Plain mean over records.
    pub mean: f64,
    /// Lower percentile of the bootstrap means.
    pub low: f64,
    /// Median of the bootstrap means (rouge-score's "mid").
    pub mid: f64,
    /// Upper percentile of the bootstrap means.
    pub high: f64,
}

/// Arithmetic mean (0 for no values), summed in order like Python's `sum(xs) / len(xs)`.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// numpy's `percentile(values, q)` with the default linear method; `values` must be sorted.
pub fn percentile_sorted(values: &[f64], q: f64) -> f64 {
    match values.len() {
        0 => f64::NAN,
        1 => values[0],
        n => {
            let pos = (q / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            let frac = pos - lo as f64;
            values[lo] + (values[hi] - values[lo]) * frac
        }
    }
}

/// Mean and bootstrap interval of per-record `values`.
pub fn bootstrap(values: &[f64], cfg: &Bootstrap) -> Interval {
    let m = mean(values);
    let (low, mid, high) = bootstrap_statistic(values.len(), cfg, &|idx: &[usize]| {
        idx.iter().map(|&i| values[i]).sum::<f64>() / idx.len() as f64
    });
    Interval {
        mean: m,
        low,
        mid,
        high,
    }
}

/// Bootstrap percentiles (low, median, high) of any corpus statistic.
///
/// `stat` receives the record indices of one resample (drawn with replacement, `n` of them) and
/// returns the statistic; with no records or no samples, every bound is `stat` of all records.
/// Each resample draws from its own generator seeded from (`cfg.seed`, resample number), so the
/// result does not depend on the thread count.
pub fn bootstrap_statistic(
    n: usize,
    cfg: &Bootstrap,
    stat: &(dyn Fn(&[usize]) -> f64 + Sync),
) -> (f64, f64, f64) {
    if n == 0 || cfg.samples == 0 {
        let all: Vec<usize> = (0..n).collect();
        let v = stat(&all);
        return (v, v, v);
    }
    let mut values: Vec<f64> = (0..cfg.samples)
        .into_par_iter()
        .map_init(
            || Vec::with_capacity(n),
            |idx, s| {
                let mut rng = SplitMix64(
                    SplitMix64(cfg.seed ^ (s as u64).wrapping_mul(0xA24B_AED4_963E_E407)).next(),
                );
                idx.clear();
                idx.extend((0..n).map(|_| rng.below(n)));
                stat(idx)
            },
        )
        .collect();
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - cfg.confidence.clamp(0.0, 1.0)) / 2.0 * 100.0;
    (
        percentile_sorted(&values, tail),
        percentile_sorted(&values, 50.0),
        percentile_sorted(&values, 100.0 - tail),
    )
}

/// SplitMix64: small, fast, and fully determined by its seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; bias < n / 2^64).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], [2.5, 50, 97.5]) == [1.075, 2.5, 3.925]
        let v = [1.0, 2.0, 3.0, 4.0];
        assert!((percentile_sorted(&v, 2.5) - 1.075).abs() < 1e-12);
        assert_eq!(percentile_sorted(&v, 50.0), 2.5);
        assert!((percentile_sorted(&v, 97.5) - 3.925).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let values: Vec<f64> = (0..500).map(|i| ((i * 37) % 101) as f64 / 100.0).collect();
        let cfg = Bootstrap::default();
        let a = bootstrap(&values, &cfg);
        assert_eq!(a, bootstrap(&values, &cfg));
        assert_ne!(a, bootstrap(&values, &Bootstrap { seed: 1, ..cfg }));
        assert!(a.low < a.mean && a.mean < a.high, "{a:?}");
        assert!((a.mid - a.mean).abs() < 0.01);
        // The 95% interval of a mean of 500 values with sd ~0.29 is about +-0.025.
        assert!((a.high - a.low - 2.0 * 1.96 * 0.2917 / 500f64.sqrt()).abs() < 0.01);
        let constant = bootstrap(&[0.5; 10], &cfg);
        assert_eq!((constant.low, constant.high), (0.5, 0.5));
    }
}
