//! Decoding: greedy and seeded sampling over a batch of prompts (left-padded, one KV cache),
//! and beam search following transformers 5's vectorised `_beam_search` step for step (top
//! `2 * num_beams` continuations, finished candidates scored `sum log p / new_len^length_penalty`
//! among the top `num_beams` only, the early-stopping heuristic, `early_stopping` true / false /
//! "never").

use std::time::Instant;

use candle_core::{DType, Tensor};

use super::config::{EarlyStopping, GenerationConfig};
use super::processors::{processors_for, LogitsProcessor};
use super::InferError;
use crate::model::{Decoder, DeepseekOcr, ForwardOptions, KvCache};
use crate::rng::Rng;

/// A causal language model that can be stepped with a KV cache.
pub trait LanguageModel {
    /// Embeddings of `ids`: `[1, n, hidden]`.
    fn embed_ids(&self, ids: &[u32]) -> candle_core::Result<Tensor>;
    /// Logits of the last position, `[B, vocab]` f32, appending to `cache`.
    fn step_logits(
        &self,
        embeds: &Tensor,
        positions: &Tensor,
        key_mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor>;
    /// An empty cache.
    fn empty_cache(&self) -> KvCache;
}

impl LanguageModel for Decoder {
    fn embed_ids(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let t = Tensor::from_slice(ids, (1, ids.len()), self.device())?;
        self.embed(&t)
    }

    fn step_logits(
        &self,
        embeds: &Tensor,
        positions: &Tensor,
        key_mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let opts = ForwardOptions {
            last_only: true,
            ..Default::default()
        };
        self.forward(embeds, positions, key_mask, Some(cache), opts)?
            .logits
            .squeeze(1)
    }

    fn empty_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }
}

impl LanguageModel for DeepseekOcr {
    fn embed_ids(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        self.decoder.embed_ids(ids)
    }

    fn step_logits(
        &self,
        embeds: &Tensor,
        positions: &Tensor,
        key_mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        self.decoder.step_logits(embeds, positions, key_mask, cache)
    }

    fn empty_cache(&self) -> KvCache {
        self.decoder.empty_cache()
    }
}

/// One prompt: its embeddings (images merged) and its token ids (for the processors).
#[derive(Clone, Debug)]
pub struct PromptInput {
    /// `[L, hidden]`.
    pub embeds: Tensor,
    /// The `L` prompt ids.
    pub ids: Vec<u32>,
}

impl PromptInput {
    /// A text-only prompt.
    pub fn from_ids(lm: &dyn LanguageModel, ids: &[u32]) -> candle_core::Result<Self> {
        Ok(Self {
            embeds: lm.embed_ids(ids)?.squeeze(0)?,
            ids: ids.to_vec(),
        })
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An EOS token was produced (it is the last token).
    Eos,
    /// `max_new_tokens` was reached.
    MaxTokens,
}

/// The result for one prompt.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Generated {
    /// New tokens (EOS included when finished by it).
    pub tokens: Vec<u32>,
    /// Why it stopped.
    pub finish: FinishReason,
    /// Beam search: the final length-penalised score.
    pub score: Option<f64>,
    /// Seconds of the prompt pass (shared by the batch).
    pub prefill_s: f64,
    /// Seconds of the decoding steps (shared by the batch).
    pub decode_s: f64,
}

/// Per-token callback: `(prompt index, token)`.
pub type OnToken<'a> = &'a mut dyn FnMut(usize, u32);

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn sample(v: &[f32], rng: &mut Rng) -> u32 {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f64> = v.iter().map(|&x| ((x - max) as f64).exp()).collect();
    let total: f64 = w.iter().sum();
    let mut u = rng.next_f64() * total;
    for (i, p) in w.iter().enumerate() {
        if *p > 0.0 {
            if u < *p {
                return i as u32;
            }
            u -= p;
        }
    }
    argmax(v)
}

fn log_softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = (v.iter().map(|&x| ((x - max) as f64).exp()).sum::<f64>()).ln() as f32 + max;
    v.iter_mut().for_each(|x| *x -= lse);
}

fn apply(procs: &[Box<dyn LogitsProcessor>], seq: &[u32], new: usize, scores: &mut [f32]) {
    for p in procs {
        p.process(seq, new, scores);
    }
}

/// Generates for every prompt (beam search runs one prompt at a time).
pub fn generate(
    lm: &dyn LanguageModel,
    prompts: &[PromptInput],
    cfg: &GenerationConfig,
    mut on_token: Option<OnToken>,
) -> Result<Vec<Generated>, InferError> {
    cfg.validate()?;
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    if prompts.iter().any(|p| p.ids.is_empty()) {
        return Err(InferError::Input("empty prompt".into()));
    }
    if cfg.num_beams > 1 {
        let mut out = Vec::with_capacity(prompts.len());
        for (i, p) in prompts.iter().enumerate() {
            let g = beam_search(lm, p, cfg)?;
            if let Some(cb) = on_token.as_mut() {
                g.tokens.iter().for_each(|&t| cb(i, t));
            }
            out.push(g);
        }
        return Ok(out);
    }
    batched(lm, prompts, cfg, on_token)
}

fn batched(
    lm: &dyn LanguageModel,
    prompts: &[PromptInput],
    cfg: &GenerationConfig,
    mut on_token: Option<OnToken>,
) -> Result<Vec<Generated>, InferError> {
    let b = prompts.len();
    let procs = processors_for(cfg);
    let mut rng = Rng::new(cfg.seed);
    let max_len = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    let hidden = prompts[0].embeds.dim(1)?;
    let dev = prompts[0].embeds.device().clone();
    let dtype = prompts[0].embeds.dtype();
    // Left padding.
    let mut rows = Vec::with_capacity(b);
    let mut mask = Vec::with_capacity(b * max_len);
    let mut pos = Vec::with_capacity(b * max_len);
    let mut last_pos = Vec::with_capacity(b);
    for p in prompts {
        let pad = max_len - p.ids.len();
        let e = if pad > 0 {
            Tensor::cat(&[&Tensor::zeros((pad, hidden), dtype, &dev)?, &p.embeds], 0)?
        } else {
            p.embeds.clone()
        };
        rows.push(e);
        mask.extend(std::iter::repeat_n(0u8, pad).chain(std::iter::repeat_n(1u8, p.ids.len())));
        pos.extend((0..max_len).map(|j| j.saturating_sub(pad) as u32));
        last_pos.push(p.ids.len() as u32 - 1);
    }
    let padded = b > 1 && prompts.iter().any(|p| p.ids.len() != max_len);
    let mut key_mask: Option<Vec<u8>> = padded.then_some(mask);
    let embeds = Tensor::stack(&rows, 0)?;
    let positions = Tensor::from_vec(pos, (b, max_len), &dev)?;
    let mut cache = lm.empty_cache();
    let mask_t = |m: &Option<Vec<u8>>, len: usize| -> candle_core::Result<Option<Tensor>> {
        m.as_ref()
            .map(|v| Tensor::from_slice(v, (b, len), &dev))
            .transpose()
    };
    let t0 = Instant::now();
    let mut logits = lm.step_logits(
        &embeds,
        &positions,
        mask_t(&key_mask, max_len)?.as_ref(),
        &mut cache,
    )?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut seqs: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
    let mut done = vec![None; b];
    let mut total = max_len;
    for step in 0..cfg.max_new_tokens {
        let host: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
        let mut next = vec![cfg.pad_token_id; b];
        for r in 0..b {
            if done[r].is_some() {
                continue;
            }
            let mut scores = host[r].clone();
            apply(&procs, &seqs[r], step, &mut scores);
            let t = if cfg.do_sample {
                sample(&scores, &mut rng)
            } else {
                argmax(&scores)
            };
            next[r] = t;
            seqs[r].push(t);
            out[r].push(t);
            if let Some(cb) = on_token.as_mut() {
                cb(r, t);
            }
            if cfg.eos_token_ids.contains(&t) {
                done[r] = Some(FinishReason::Eos);
            }
        }
        if done.iter().all(Option::is_some) || step + 1 == cfg.max_new_tokens {
            break;
        }
        let e = lm.embed_ids(&next)?.reshape((b, 1, hidden))?;
        for p in last_pos.iter_mut() {
            *p += 1;
        }
        let positions = Tensor::from_slice(&last_pos, (b, 1), &dev)?;
        total += 1;
        if let Some(m) = key_mask.as_mut() {
            // Append one real position per row (row-major [b, total]).
            let old = total - 1;
            let mut grown = Vec::with_capacity(b * total);
            for r in 0..b {
                grown.extend_from_slice(&m[r * old..(r + 1) * old]);
                grown.push(1);
            }
            *m = grown;
        }
        logits = lm.step_logits(
            &e,
            &positions,
            mask_t(&key_mask, total)?.as_ref(),
            &mut cache,
        )?;
    }
    let decode_s = t1.elapsed().as_secs_f64();
    Ok(out
        .into_iter()
        .zip(done)
        .map(|(tokens, d)| Generated {
            tokens,
            finish: d.unwrap_or(FinishReason::MaxTokens),
            score: None,
            prefill_s,
            decode_s,
        })
        .collect())
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
fn top_k_desc(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    let k = k.min(v.len());
    idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| {
        v[b].total_cmp(&v[a]).then(a.cmp(&b))
    });
    idx.truncate(k);
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx
}

fn beam_search(
    lm: &dyn LanguageModel,
    p: &PromptInput,
    cfg: &GenerationConfig,
) -> Result<Generated, InferError> {
    let nb = cfg.num_beams;
    let procs = processors_for(cfg);
    let prompt_len = p.ids.len();
    let max_length = prompt_len + cfg.max_new_tokens;
    let k = 2.max(1 + cfg.eos_token_ids.len()) * nb;
    let hidden = p.embeds.dim(1)?;
    let dev = p.embeds.device().clone();
    let lp = cfg.length_penalty;

    let mut cache = lm.empty_cache();
    let t0 = Instant::now();
    let positions = Tensor::from_vec(
        (0..prompt_len as u32).collect::<Vec<_>>(),
        (1, prompt_len),
        &dev,
    )?;
    let first = lm.step_logits(&p.embeds.unsqueeze(0)?, &positions, None, &mut cache)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    cache.select_rows(&Tensor::from_vec(vec![0u32; nb], nb, &dev)?)?;
    let first: Vec<f32> = first.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let mut logits: Vec<Vec<f32>> = vec![first; nb];

    let mut running: Vec<Vec<u32>> = vec![p.ids.clone(); nb];
    let mut running_scores = vec![-1e9f32; nb];
    running_scores[0] = 0.0;
    let mut finished: Vec<(Vec<u32>, f32, bool)> = vec![(Vec::new(), -1e9, false); nb];
    let mut heuristic_unsatisfied = true;
    let mut cur_len = prompt_len;
    loop {
        let v = logits[0].len();
        let mut acc = Vec::with_capacity(nb * v);
        for (i, row) in logits.iter().enumerate() {
            let mut s = row.clone();
            log_softmax(&mut s);
            apply(&procs, &running[i], cur_len - prompt_len, &mut s);
            acc.extend(s.iter().map(|x| x + running_scores[i]));
        }
        let top = top_k_desc(&acc, k);
        let cand: Vec<(usize, u32, f32)> = top
            .iter()
            .map(|&j| (j / v, (j % v) as u32, acc[j]))
            .collect();
        let hits: Vec<bool> = cand
            .iter()
            .map(|&(_, t, _)| cfg.eos_token_ids.contains(&t) || cur_len + 1 >= max_length)
            .collect();
        // Running beams for the next step: best nb candidates that did not stop.
        let masked: Vec<f32> = cand
            .iter()
            .zip(&hits)
            .map(|(&(_, _, s), &h)| if h { s - 1e9 } else { s })
            .collect();
        let next = top_k_desc(&masked, nb);
        // Finished beams: merge the top-nb candidates that stopped.
        let full = finished.iter().all(|f| f.2) && cfg.early_stopping == EarlyStopping::Bool(true);
        let mut merged = finished.clone();
        for (rank, (&(beam, tok, s), &h)) in cand.iter().zip(&hits).enumerate() {
            let mut score = s / ((cur_len + 1 - prompt_len) as f64).powf(lp) as f32;
            if full {
                score -= 1e9;
            }
            if !heuristic_unsatisfied {
                score -= 1e9;
            }
            let just = h && rank < nb;
            if !just {
                score -= 1e9;
            }
            let mut seq = running[beam].clone();
            seq.push(tok);
            merged.push((seq, score, just));
        }
        let scores: Vec<f32> = merged.iter().map(|m| m.1).collect();
        finished = top_k_desc(&scores, nb)
            .into_iter()
            .map(|i| merged[i].clone())
            .collect();

        let new_running: Vec<Vec<u32>> = next
            .iter()
            .map(|&j| {
                let (beam, tok, _) = cand[j];
                let mut s = running[beam].clone();
                s.push(tok);
                s
            })
            .collect();
        running_scores = next.iter().map(|&j| masked[j]).collect();
        let beam_idx: Vec<u32> = next.iter().map(|&j| cand[j].0 as u32).collect();
        running = new_running;
        cur_len += 1;

        // Early-stop heuristic (sticky).
        let best_len = match cfg.early_stopping {
            EarlyStopping::Never(_) if lp > 0.0 => max_length - prompt_len,
            _ => cur_len - prompt_len,
        };
        let best_possible = running_scores[0] / (best_len as f64).powf(lp) as f32;
        let worst = finished.iter().map(|f| f.1).fold(f32::INFINITY, f32::min);
        let any_better = finished
            .iter()
            .any(|f| best_possible > if f.2 { worst } else { -1e9 });
        heuristic_unsatisfied = heuristic_unsatisfied && any_better;
        let open =
            !(finished.iter().all(|f| f.2) && cfg.early_stopping == EarlyStopping::Bool(true));
        let valid = !hits.iter().all(|&h| h);
        if !(heuristic_unsatisfied && open && valid) || cur_len >= max_length {
            break;
        }
        // Next step over the surviving beams.
        cache.select_rows(&Tensor::from_vec(beam_idx, nb, &dev)?)?;
        let last: Vec<u32> = running
            .iter()
            .map(|s| *s.last().expect("non-empty"))
            .collect();
        let e = lm.embed_ids(&last)?.reshape((nb, 1, hidden))?;
        let positions = Tensor::from_vec(vec![(cur_len - 1) as u32; nb], (nb, 1), &dev)?;
        let l = lm.step_logits(&e, &positions, None, &mut cache)?;
        logits = l.to_dtype(DType::F32)?.to_vec2()?;
    }
    let decode_s = t1.elapsed().as_secs_f64();
    let (seq, score, ok) = finished.into_iter().next().expect("num_beams >= 1");
    if !ok {
        return Err(InferError::Input("beam search finished no sequence".into()));
    }
    let tokens = seq[prompt_len..].to_vec();
    let finish = if tokens.last().is_some_and(|t| cfg.eos_token_ids.contains(t)) {
        FinishReason::Eos
    } else {
        FinishReason::MaxTokens
    };
    Ok(Generated {
        tokens,
        finish,
        score: Some(score as f64),
        prefill_s,
        decode_s,
    })
}
