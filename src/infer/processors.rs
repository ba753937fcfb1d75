//! Logits processors, applied in the order transformers' `generate` builds them: repetition
//! penalty, no-repeat n-grams, minimum new tokens; then, when sampling, temperature, top-k and
//! top-p. Each works on one row of scores in place (`-inf` = forbidden).

use super::config::GenerationConfig;

/// One processing step over a row of next-token scores.
pub trait LogitsProcessor: Send + Sync {
    /// `tokens`: the whole sequence so far (prompt included); `new_tokens`: how many of them were
    /// generated.
    fn process(&self, tokens: &[u32], new_tokens: usize, scores: &mut [f32]);
}

/// CTRL's repetition penalty (Keskar et al., 2019): every token already in the sequence has its
/// score divided by `penalty` if positive, multiplied if negative.
pub struct RepetitionPenalty(pub f32);

impl LogitsProcessor for RepetitionPenalty {
    fn process(&self, tokens: &[u32], _: usize, scores: &mut [f32]) {
        let mut seen = std::collections::HashSet::with_capacity(tokens.len());
        for &t in tokens {
            if seen.insert(t) {
                if let Some(s) = scores.get_mut(t as usize) {
                    *s = if *s < 0.0 { *s * self.0 } else { *s / self.0 };
                }
            }
        }
    }
}

/// Forbids the tokens that would repeat an n-gram of the sequence.
pub struct NoRepeatNGram(pub usize);

impl LogitsProcessor for NoRepeatNGram {
    fn process(&self, tokens: &[u32], _: usize, scores: &mut [f32]) {
        let n = self.0;
        // With fewer than n tokens no n-gram is complete yet, so nothing can repeat.
        if n == 0 || tokens.len() < n {
            return;
        }
        let prefix = &tokens[tokens.len() + 1 - n..];
        for start in 0..=tokens.len() - n {
            if &tokens[start..start + n - 1] == prefix {
                if let Some(s) = scores.get_mut(tokens[start + n - 1] as usize) {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// Forbids EOS before `min` new tokens.
pub struct MinNewTokens {
    /// Fewest new tokens.
    pub min: usize,
    /// The EOS ids.
    pub eos: Vec<u32>,
}

impl LogitsProcessor for MinNewTokens {
    fn process(&self, _: &[u32], new_tokens: usize, scores: &mut [f32]) {
        if new_tokens < self.min {
            for &e in &self.eos {
                if let Some(s) = scores.get_mut(e as usize) {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// Divides scores by the temperature.
pub struct Temperature(pub f32);

impl LogitsProcessor for Temperature {
    fn process(&self, _: &[u32], _: usize, scores: &mut [f32]) {
        scores.iter_mut().for_each(|s| *s /= self.0);
    }
}

/// Keeps the `k` highest scores (ties with the k-th kept), at least `min_keep`.
pub struct TopK {
    /// Tokens to keep.
    pub k: usize,
    /// Never keep fewer.
    pub min_keep: usize,
}

impl LogitsProcessor for TopK {
    fn process(&self, _: &[u32], _: usize, scores: &mut [f32]) {
        let k = self.k.max(self.min_keep).min(scores.len());
        if k == 0 || k >= scores.len() {
            return;
        }
        let mut sorted: Vec<f32> = scores.to_vec();
        let (_, kth, _) = sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        let kth = *kth;
        scores
            .iter_mut()
            .filter(|s| **s < kth)
            .for_each(|s| *s = f32::NEG_INFINITY);
    }
}

/// Nucleus filtering (Holtzman et al., 2019): drops the lowest-probability tokens whose
/// cumulative probability (ascending) is `<= 1 - p`, keeping at least `min_keep`.
pub struct TopP {
    /// Probability mass to keep.
    pub p: f64,
    /// Never keep fewer.
    pub min_keep: usize,
}

impl LogitsProcessor for TopP {
    fn process(&self, _: &[u32], _: usize, scores: &mut [f32]) {
        if self.p >= 1.0 {
            return;
        }
        let mut idx: Vec<usize> = (0..scores.len()).collect();
        // Ascending by score; stable so equal scores keep index order (as torch.sort does on CPU).
        idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let max = scores[*idx.last().expect("non-empty")];
        let exps: Vec<f64> = idx
            .iter()
            .map(|&i| ((scores[i] - max) as f64).exp())
            .collect();
        let total: f64 = exps.iter().sum();
        let mut cum = 0.0;
        let n = idx.len();
        for (rank, (&i, e)) in idx.iter().zip(&exps).enumerate() {
            cum += e / total;
            let removable = rank + self.min_keep < n;
            if cum <= 1.0 - self.p && removable {
                scores[i] = f32::NEG_INFINITY;
            }
        }
    }
}

/// The processors `cfg` asks for, in transformers' order.
pub fn processors_for(cfg: &GenerationConfig) -> Vec<Box<dyn LogitsProcessor>> {
    let mut v: Vec<Box<dyn LogitsProcessor>> = Vec::new();
    if cfg.repetition_penalty != 1.0 {
        v.push(Box::new(RepetitionPenalty(cfg.repetition_penalty as f32)));
    }
    if cfg.no_repeat_ngram_size > 0 {
        v.push(Box::new(NoRepeatNGram(cfg.no_repeat_ngram_size)));
    }
    if cfg.min_new_tokens > 0 {
        v.push(Box::new(MinNewTokens {
            min: cfg.min_new_tokens,
            eos: cfg.eos_token_ids.clone(),
        }));
    }
    if cfg.do_sample {
        let min_keep = if cfg.num_beams > 1 { 2 } else { 1 };
        if cfg.temperature != 1.0 {
            v.push(Box::new(Temperature(cfg.temperature as f32)));
        }
        if cfg.top_k > 0 {
            v.push(Box::new(TopK {
                k: cfg.top_k,
                min_keep,
            }));
        }
        if cfg.top_p < 1.0 {
            v.push(Box::new(TopP {
                p: cfg.top_p,
                min_keep,
            }));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEG: f32 = f32::NEG_INFINITY;

    #[test]
    fn repetition_penalty_hand_computed() {
        let mut s = vec![2.0, -1.0, 0.5, 3.0];
        RepetitionPenalty(2.0).process(&[0, 1, 1], 0, &mut s);
        assert_eq!(s, vec![1.0, -2.0, 0.5, 3.0]);
    }

    #[test]
    fn no_repeat_ngram_hand_computed() {
        // Sequence 5 6 7 5 6: the bigram-prefix "5 6" was followed by 7, so trigrams ban 7.
        let mut s = vec![0.0; 9];
        NoRepeatNGram(3).process(&[5, 6, 7, 5, 6], 2, &mut s);
        assert_eq!(s[7], NEG);
        assert_eq!(s.iter().filter(|v| v.is_infinite()).count(), 1);
        // Bigrams: last token 6 was followed by 7 -> ban 7; unigram size 1 bans everything seen.
        let mut s = vec![0.0; 9];
        NoRepeatNGram(2).process(&[5, 6, 7, 5, 6], 2, &mut s);
        assert_eq!(s[7], NEG);
        let mut s = vec![0.0; 9];
        NoRepeatNGram(1).process(&[5, 6, 7], 0, &mut s);
        assert_eq!([s[5], s[6], s[7], s[0]], [NEG, NEG, NEG, 0.0]);
        // Too short for the n-gram: nothing banned.
        let mut s = vec![0.0; 9];
        NoRepeatNGram(4).process(&[5, 6], 0, &mut s);
        assert!(s.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn min_new_tokens_temperature_top_k_top_p_hand_computed() {
        let mut s = vec![1.0, 1.0, 1.0];
        MinNewTokens {
            min: 2,
            eos: vec![1],
        }
        .process(&[], 1, &mut s);
        assert_eq!(s, vec![1.0, NEG, 1.0]);
        let mut s = vec![1.0, 1.0, 1.0];
        MinNewTokens {
            min: 2,
            eos: vec![1],
        }
        .process(&[], 2, &mut s);
        assert_eq!(s, vec![1.0, 1.0, 1.0]);
        let mut s = vec![2.0, -4.0];
        Temperature(0.5).process(&[], 0, &mut s);
        assert_eq!(s, vec![4.0, -8.0]);
        let mut s = vec![0.1, 0.4, 0.3, 0.4, 0.2];
        TopK { k: 2, min_keep: 1 }.process(&[], 0, &mut s);
        assert_eq!(s, vec![NEG, 0.4, NEG, 0.4, NEG]);
        // probs of ln([1, 2, 3, 4]) = [.1, .2, .3, .4]; top_p 0.65 drops the ascending prefix
        // whose cumulative probability is <= 0.35: .1 and .1 + .2 = .3.
        let mut s: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().map(|v| v.ln()).collect();
        TopP {
            p: 0.65,
            min_keep: 1,
        }
        .process(&[], 0, &mut s);
        assert_eq!(s[0], NEG);
        assert_eq!(s[1], NEG);
        assert!(s[2].is_finite() && s[3].is_finite());
        let mut s = vec![0.0, 10.0];
        TopP {
            p: 0.01,
            min_keep: 1,
        }
        .process(&[], 0, &mut s);
        assert_eq!(s, vec![NEG, 10.0]);
    }

    #[test]
    fn order_follows_transformers() {
        let mut c = GenerationConfig::sampling();
        c.no_repeat_ngram_size = 3;
        c.min_new_tokens = 1;
        assert_eq!(processors_for(&c).len(), 6);
        assert!(processors_for(&GenerationConfig::default()).is_empty());
    }
}
