//! Held-out evaluation: summaries generated for each example and scored with every evaluator
//! metric (ROUGE-1/2/L/Lsum, BLEU, chrF, CER, WER), and the held-out loss. An example that
//! cannot be prepared or generated for is left out of the scores and listed in the report.

use std::collections::BTreeMap;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::distributed::{gather_strided, Collective};
use super::example_log::{Phase, SkippedExample, TruncatedExample};
use super::examples::{Example, ExampleEncoder, Shown};
use super::TrainError;
use crate::data::Pair;
use crate::eval::{Bootstrap, EvalConfig, Evaluator, Metric};
use crate::infer::{generate, GenerationConfig, PromptInput};
use crate::model::{DeepseekOcr, ForwardOptions};

/// One generated summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalSample {
    /// Position among the evaluated examples.
    pub index: usize,
    /// The example's id.
    pub id: String,
    /// The reference summary.
    pub reference: String,
    /// The generated summary.
    pub generated: String,
}

/// One evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Optimiser step.
    pub step: u64,
    /// `loss` (held-out cross-entropy) and every evaluator metric, by name (ROUGE as F1, BLEU
    /// and chrF as corpus scores, CER and WER as micro averages).
    pub metrics: BTreeMap<String, f64>,
    /// The summary of every example that was scored.
    #[serde(deserialize_with = "samples_compat")]
    pub samples: Vec<EvalSample>,
    /// Examples left out (their page or generation failed).
    #[serde(default)]
    pub skipped: Vec<SkippedExample>,
    /// Examples whose page shows only the beginning of the document.
    #[serde(default)]
    pub truncated: Vec<TruncatedExample>,
}

/// Samples as written now, or as `[reference, generated]` pairs (checkpoints of earlier
/// versions, which listed every example in order).
fn samples_compat<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<EvalSample>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Sample(EvalSample),
        Pair(String, String),
    }
    let v: Vec<Repr> = Vec::deserialize(d)?;
    Ok(v.into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Repr::Sample(s) => s,
            Repr::Pair(reference, generated) => EvalSample {
                index: i,
                id: String::new(),
                reference,
                generated,
            },
        })
        .collect())
}

impl EvalReport {
    /// The summary generated for the example at `index`, if it was scored.
    pub fn sample(&self, index: usize) -> Option<&EvalSample> {
        self.samples.iter().find(|s| s.index == index)
    }
}

/// The statistic of `m` an evaluation reports.
fn statistic(m: Metric) -> &'static str {
    match m {
        Metric::Cer | Metric::Wer => "micro",
        Metric::Bleu | Metric::Chrf => "corpus",
        _ => "fmeasure",
    }
}

fn skipped(index: usize, ex: &Example, reason: String) -> SkippedExample {
    SkippedExample {
        phase: Phase::Eval,
        index,
        id: ex.id.clone(),
        reason,
        step: 0,
    }
}

/// Generates a summary of one example.
fn summarise(
    model: &DeepseekOcr,
    enc: &ExampleEncoder,
    ex: &Example,
    generation: &GenerationConfig,
) -> Result<String, TrainError> {
    let (prompt, page) = enc.inference(ex)?;
    let dev = model.device();
    let it = Tensor::from_slice(&prompt.input_ids, (1, prompt.len()), dev)?;
    let mt = Tensor::from_slice(&prompt.image_mask, (1, prompt.len()), dev)?;
    let feats = model.encode_images(&[vec![page]])?;
    let embeds = model.merge_embeddings(&it, &mt, &feats)?;
    let input = PromptInput {
        embeds: embeds.squeeze(0)?,
        ids: prompt.input_ids.clone(),
    };
    let mut g = generation.clone();
    g.eos_token_ids = vec![enc.special_ids().eos];
    let example_err = |reason: String| TrainError::Example {
        id: ex.id.clone(),
        reason,
    };
    let out = generate(model, &[input], &g, None)
        .map_err(|e| example_err(format!("generation failed: {e}")))?
        .pop()
        .ok_or_else(|| example_err("generation returned nothing".into()))?;
    Ok(enc
        .codec()
        .decode(&out.tokens, true)
        .map_err(|e| example_err(format!("decoding the summary failed: {e}")))?
        .trim()
        .to_string())
}

/// What evaluating one example gave: its summary, what its page shows and its teacher-forced
/// loss (mean cross-entropy, scored tokens), or why it was skipped. Ranks of a sharded
/// evaluation exchange these.
#[derive(Serialize, Deserialize)]
enum Outcome {
    Scored {
        text: String,
        shown: Shown,
        loss: Option<(f32, usize)>,
    },
    Skipped(String),
}

/// Summarises and scores the loss of one example; an example's own failure is an
/// [`Outcome::Skipped`], any other error ends the evaluation.
fn evaluate_one(
    model: &DeepseekOcr,
    enc: &ExampleEncoder,
    ex: &Example,
    generation: &GenerationConfig,
) -> Result<Outcome, TrainError> {
    let text = match summarise(model, enc, ex, generation) {
        Ok(t) => t,
        Err(e) => match e.example_reason() {
            Some(reason) => return Ok(Outcome::Skipped(reason.to_string())),
            None => return Err(e),
        },
    };
    let shown = enc.shown(ex)?;
    // One example at a time, so the loss has no padding in it.
    let loss = batch_loss(model, enc, std::slice::from_ref(ex))?;
    Ok(Outcome::Scored { text, shown, loss })
}

/// The report of `outcomes` (one per example of `examples`, in order): every evaluator metric
/// over the scored examples and their token-weighted held-out loss.
fn assemble(examples: &[Example], outcomes: Vec<Outcome>) -> EvalReport {
    let mut report = EvalReport {
        step: 0,
        metrics: BTreeMap::new(),
        samples: Vec::with_capacity(examples.len()),
        skipped: Vec::new(),
        truncated: Vec::new(),
    };
    let mut pairs = Vec::with_capacity(examples.len());
    let (mut loss_sum, mut tokens) = (0f64, 0usize);
    for (i, (ex, outcome)) in examples.iter().zip(outcomes).enumerate() {
        match outcome {
            Outcome::Scored { text, shown, loss } => {
                if shown.truncated_chars > 0 {
                    report.truncated.push(TruncatedExample {
                        phase: Phase::Eval,
                        index: i,
                        id: ex.id.clone(),
                        shown,
                    });
                }
                pairs.push(Pair::new(ex.id.clone(), ex.summary.clone(), text.clone()));
                report.samples.push(EvalSample {
                    index: i,
                    id: ex.id.clone(),
                    reference: ex.summary.clone(),
                    generated: text,
                });
                if let Some((l, n)) = loss {
                    loss_sum += l as f64 * n as f64;
                    tokens += n;
                }
            }
            Outcome::Skipped(reason) => report.skipped.push(skipped(i, ex, reason)),
        }
    }
    if pairs.is_empty() {
        return report;
    }
    let ev = Evaluator::new(
        EvalConfig::default()
            .with_metrics(&Metric::ALL)
            .with_bootstrap(Bootstrap {
                samples: 0,
                ..Default::default()
            }),
    )
    .evaluate(&pairs);
    for m in Metric::ALL {
        if let Some(r) = ev.get(m, statistic(m)) {
            report.metrics.insert(m.name().to_string(), r.value);
        }
    }
    report
        .metrics
        .insert("loss".into(), loss_sum / tokens.max(1) as f64);
    report
}

/// Generates summaries for `examples` and scores them with every evaluator metric; also the
/// held-out loss. Examples that fail are listed in [`EvalReport::skipped`] and left out of
/// every score; any other error ends the evaluation.
pub fn evaluate(
    model: &DeepseekOcr,
    enc: &ExampleEncoder,
    examples: &[Example],
    generation: &GenerationConfig,
) -> Result<EvalReport, TrainError> {
    let outcomes = examples
        .iter()
        .map(|ex| evaluate_one(model, enc, ex, generation))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(assemble(examples, outcomes))
}

/// [`evaluate`] split across the ranks of `group`: rank `r` evaluates examples `r`, `r +
/// world`, ..., the ranks gather each other's per-example results, and every rank returns the
/// report a single process would (the same summaries, the same metrics bit for bit).
pub fn evaluate_sharded(
    model: &DeepseekOcr,
    enc: &ExampleEncoder,
    examples: &[Example],
    generation: &GenerationConfig,
    group: &dyn Collective,
) -> Result<EvalReport, TrainError> {
    let (rank, world) = (group.rank(), group.world_size());
    let mine = examples
        .iter()
        .skip(rank)
        .step_by(world)
        .map(|ex| evaluate_one(model, enc, ex, generation))
        .collect::<Result<Vec<_>, _>>()?;
    let outcomes = gather_strided(group, &mine, examples.len(), "evaluation results")?;
    Ok(assemble(examples, outcomes))
}

/// Token-weighted mean cross-entropy of `examples` (teacher forcing), in batches; examples
/// that cannot be prepared are left out.
pub fn held_out_loss(
    model: &DeepseekOcr,
    enc: &ExampleEncoder,
    examples: &[Example],
    batch_size: usize,
) -> Result<f64, TrainError> {
    let (mut sum, mut tokens) = (0f64, 0usize);
    for chunk in examples.chunks(batch_size.max(1)) {
        if let Some((l, n)) = batch_loss(model, enc, chunk)? {
            sum += l as f64 * n as f64;
            tokens += n;
        }
    }
    Ok(sum / tokens.max(1) as f64)
}

/// The teacher-forced loss of `examples` as one batch (mean cross-entropy, scored tokens),
/// leaving out the ones that cannot be prepared; `None` when none can or nothing is scored.
fn batch_loss(
    model: &DeepseekOcr,
    enc: &ExampleEncoder,
    examples: &[Example],
) -> Result<Option<(f32, usize)>, TrainError> {
    let mut prepared = Vec::with_capacity(examples.len());
    for ex in examples {
        match enc.training(ex) {
            Ok(p) => prepared.push(p),
            Err(e) if e.example_reason().is_some() => {}
            Err(e) => return Err(e),
        }
    }
    if prepared.is_empty() {
        return Ok(None);
    }
    let batch = enc.collate(prepared)?;
    let out = model.forward(&batch, ForwardOptions::default())?;
    Ok(match out.loss {
        Some(l) => Some((l.to_scalar::<f32>()?, out.loss_tokens)),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_of_earlier_versions_still_load() {
        let old = r#"{"step": 4, "metrics": {"loss": 2.5}, "samples": [["ref a", "gen a"]]}"#;
        let r: EvalReport = serde_json::from_str(old).unwrap();
        assert_eq!(r.samples[0].generated, "gen a");
        assert_eq!(r.sample(0).unwrap().reference, "ref a");
        let back: EvalReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
