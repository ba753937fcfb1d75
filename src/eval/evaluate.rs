//! Scoring a corpus of pairs with several metrics at once: per-record scores, corpus scores
//! the way each peer aggregates them, and seeded bootstrap intervals.
//!
//! Corpus values follow the peers: ROUGE is the mean of per-record scores (rouge-score's
//! `BootstrapAggregator` "mean"), BLEU and chrF are sacrebleu's corpus scores over summed
//! statistics, WER and CER are jiwer's micro averages (total edits / total reference units).
//! Every interval resamples records with replacement and recomputes the same statistic.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::aggregate::{bootstrap_statistic, Bootstrap};
use super::{
    Bleu, BleuStats, Chrf, ChrfStats, EditCounts, RougeScore, RougeScorer, RougeTokenizer,
    RougeType, WerScorer,
};
use crate::data::Pair;

/// A metric the [`Evaluator`] can compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// ROUGE-1 (rouge-score).
    Rouge1,
    /// ROUGE-2.
    Rouge2,
    /// ROUGE-L.
    RougeL,
    /// ROUGE-Lsum (newline-separated sentences).
    RougeLsum,
    /// BLEU (sacrebleu; sentence BLEU per record, corpus BLEU overall).
    Bleu,
    /// chrF (sacrebleu).
    Chrf,
    /// Word error rate (jiwer).
    Wer,
    /// Character error rate (jiwer).
    Cer,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 8] = [
        Metric::Rouge1,
        Metric::Rouge2,
        Metric::RougeL,
        Metric::RougeLsum,
        Metric::Bleu,
        Metric::Chrf,
        Metric::Wer,
        Metric::Cer,
    ];

    /// The peer's name: `rouge1`, `rouge2`, `rougeL`, `rougeLsum`, `bleu`, `chrf`, `wer`, `cer`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Rouge1 => "rouge1",
            Metric::Rouge2 => "rouge2",
            Metric::RougeL => "rougeL",
            Metric::RougeLsum => "rougeLsum",
            Metric::Bleu => "bleu",
            Metric::Chrf => "chrf",
            Metric::Wer => "wer",
            Metric::Cer => "cer",
        }
    }

    /// Parses a name (case-insensitive; `rouge-l`, `rougel`, `chrF` are accepted).
    pub fn from_name(name: &str) -> Option<Metric> {
        let key: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        Metric::ALL
            .into_iter()
            .find(|m| m.name().to_ascii_lowercase() == key)
    }

    fn rouge_type(self) -> Option<RougeType> {
        match self {
            Metric::Rouge1 => Some(RougeType::Rouge1),
            Metric::Rouge2 => Some(RougeType::Rouge2),
            Metric::RougeL => Some(RougeType::RougeL),
            Metric::RougeLsum => Some(RougeType::RougeLsum),
            _ => None,
        }
    }

    /// True when larger is better (false for WER and CER).
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::Wer | Metric::Cer)
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Evaluation settings.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EvalConfig {
    /// Metrics to compute, in output order.
    pub metrics: Vec<Metric>,
    /// ROUGE tokenizer (default: rouge-score's, no stemming, as `RougeScorer(types)`).
    pub rouge_tokenizer: RougeTokenizer,
    /// Bootstrap settings for the intervals (`samples: 0` turns them off).
    pub bootstrap: Bootstrap,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            metrics: Metric::ALL.to_vec(),
            rouge_tokenizer: RougeTokenizer::RougeScore { stem: false },
            bootstrap: Bootstrap::default(),
        }
    }
}

impl EvalConfig {
    /// Only these metrics.
    pub fn with_metrics(mut self, metrics: &[Metric]) -> Self {
        self.metrics = metrics.to_vec();
        self
    }

    /// rouge-score's tokenizer with the Porter stemmer (`use_stemmer=True`).
    pub fn with_stemmer(mut self, stem: bool) -> Self {
        self.rouge_tokenizer = match self.rouge_tokenizer {
            RougeTokenizer::RougeScore { .. } => RougeTokenizer::RougeScore { stem },
            other => other,
        };
        self
    }

    /// Another ROUGE tokenizer (e.g. [`RougeTokenizer::Unicode`] for non-English text).
    pub fn with_rouge_tokenizer(mut self, tokenizer: RougeTokenizer) -> Self {
        self.rouge_tokenizer = tokenizer;
        self
    }

    /// Bootstrap settings.
    pub fn with_bootstrap(mut self, bootstrap: Bootstrap) -> Self {
        self.bootstrap = bootstrap;
        self
    }
}

/// Scores of one record.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordScores {
    /// Record id.
    pub id: String,
    /// ROUGE per requested type, in [`Evaluation::rouge_types`] order.
    pub rouge: Vec<RougeScore>,
    /// BLEU statistics and sentence BLEU (`sacrebleu.sentence_bleu`).
    pub bleu: Option<(BleuStats, f64)>,
    /// chrF statistics and sentence chrF.
    pub chrf: Option<(ChrfStats, f64)>,
    /// Word edit counts.
    pub wer: Option<EditCounts>,
    /// Character edit counts.
    pub cer: Option<EditCounts>,
}

/// One corpus-level number with its bootstrap interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Metric name.
    pub metric: String,
    /// `fmeasure`, `precision`, `recall` (ROUGE), `corpus` (BLEU, chrF) or `micro` (WER, CER).
    pub statistic: String,
    /// The value (ROUGE in 0..1, BLEU and chrF in 0..100, WER and CER as ratios).
    pub value: f64,
    /// Lower bound of the bootstrap interval.
    pub low: f64,
    /// Median of the bootstrap distribution.
    pub mid: f64,
    /// Upper bound of the bootstrap interval.
    pub high: f64,
    /// Records aggregated.
    pub n: usize,
}

/// Per-record and corpus results.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The metrics computed.
    pub metrics: Vec<Metric>,
    /// The ROUGE types computed, in [`RecordScores::rouge`] order.
    pub rouge_types: Vec<RougeType>,
    /// One entry per input pair, in input order.
    pub records: Vec<RecordScores>,
    /// Corpus values with intervals.
    pub summary: Vec<SummaryRow>,
}

impl Evaluation {
    /// The summary row of a metric and statistic.
    pub fn get(&self, metric: Metric, statistic: &str) -> Option<&SummaryRow> {
        self.summary
            .iter()
            .find(|r| r.metric == metric.name() && r.statistic == statistic)
    }
}

/// Scores pairs with the configured metrics (multi-threaded over records).
#[derive(Clone, Debug)]
pub struct Evaluator {
    config: EvalConfig,
    rouge: RougeScorer,
    rouge_types: Vec<RougeType>,
}

impl Evaluator {
    /// An evaluator for `config`.
    pub fn new(config: EvalConfig) -> Self {
        let rouge_types: Vec<RougeType> = config
            .metrics
            .iter()
            .filter_map(|m| m.rouge_type())
            .collect();
        let rouge = RougeScorer::with_tokenizer(&rouge_types, config.rouge_tokenizer);
        Self {
            config,
            rouge,
            rouge_types,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EvalConfig {
        &self.config
    }

    /// Scores one pair.
    pub fn score_pair(&self, pair: &Pair, wer: &mut WerScorer) -> RecordScores {
        let has = |m: Metric| self.config.metrics.contains(&m);
        let rouge = if self.rouge_types.is_empty() {
            Vec::new()
        } else {
            let scores = self.rouge.score(&pair.reference, &pair.prediction);
            self.rouge_types
                .iter()
                .map(|t| scores.get(*t).unwrap_or_default())
                .collect()
        };
        let refs = [pair.reference.as_str()];
        let bleu = has(Metric::Bleu).then(|| {
            let sentence = Bleu::sentence();
            let stats = sentence.segment_stats(&pair.prediction, &refs);
            (stats, sentence.score_from_stats(&stats, Some(1)).score)
        });
        let chrf = has(Metric::Chrf).then(|| {
            let chrf = Chrf::default();
            let stats = chrf.segment_stats(&pair.prediction, &refs);
            let score = chrf.f_score(&stats);
            (stats, score)
        });
        RecordScores {
            id: pair.id.clone(),
            rouge,
            bleu,
            chrf,
            wer: has(Metric::Wer).then(|| wer.process_words(&pair.reference, &pair.prediction)),
            cer: has(Metric::Cer)
                .then(|| wer.process_characters(&pair.reference, &pair.prediction)),
        }
    }

    /// Scores every pair and aggregates.
    pub fn evaluate(&self, pairs: &[Pair]) -> Evaluation {
        let records: Vec<RecordScores> = pairs
            .par_iter()
            .map_init(WerScorer::new, |wer, p| self.score_pair(p, wer))
            .collect();
        let summary = self.summarise(&records);
        Evaluation {
            metrics: self.config.metrics.clone(),
            rouge_types: self.rouge_types.clone(),
            records,
            summary,
        }
    }

    fn summarise(&self, records: &[RecordScores]) -> Vec<SummaryRow> {
        let n = records.len();
        let boot = &self.config.bootstrap;
        let row = |metric: Metric, statistic: &str, f: &(dyn Fn(&[usize]) -> f64 + Sync)| {
            let all: Vec<usize> = (0..n).collect();
            let value = f(&all);
            let (low, mid, high) = bootstrap_statistic(n, boot, f);
            SummaryRow {
                metric: metric.name().to_owned(),
                statistic: statistic.to_owned(),
                value,
                low,
                mid,
                high,
                n,
            }
        };
        let mut rows = Vec::new();
        for &metric in &self.config.metrics {
            if let Some(t) = metric.rouge_type() {
                let Some(k) = self.rouge_types.iter().position(|x| *x == t) else {
                    continue;
                };
                let mean_of = |get: fn(&RougeScore) -> f64| {
                    move |idx: &[usize]| {
                        let total: f64 = idx.iter().map(|&i| get(&records[i].rouge[k])).sum();
                        if idx.is_empty() {
                            0.0
                        } else {
                            total / idx.len() as f64
                        }
                    }
                };
                rows.push(row(metric, "fmeasure", &mean_of(|s| s.fmeasure)));
                rows.push(row(metric, "precision", &mean_of(|s| s.precision)));
                rows.push(row(metric, "recall", &mean_of(|s| s.recall)));
                continue;
            }
            match metric {
                Metric::Bleu => {
                    let corpus = Bleu::default();
                    rows.push(row(metric, "corpus", &|idx: &[usize]| {
                        let stats: BleuStats = idx
                            .iter()
                            .filter_map(|&i| records[i].bleu.map(|b| b.0))
                            .sum();
                        corpus.score_from_stats(&stats, Some(1)).score
                    }));
                }
                Metric::Chrf => {
                    let chrf = Chrf::default();
                    rows.push(row(metric, "corpus", &|idx: &[usize]| {
                        let mut stats = ChrfStats::default();
                        for &i in idx {
                            if let Some((s, _)) = &records[i].chrf {
                                stats.add(s);
                            }
                        }
                        chrf.f_score(&stats)
                    }));
                }
                Metric::Wer | Metric::Cer => {
                    let pick = move |r: &RecordScores| {
                        if metric == Metric::Wer {
                            r.wer
                        } else {
                            r.cer
                        }
                    };
                    rows.push(row(metric, "micro", &|idx: &[usize]| {
                        let total: EditCounts = idx.iter().filter_map(|&i| pick(&records[i])).sum();
                        total.error_rate()
                    }));
                }
                _ => {}
            }
        }
        rows
    }
}
