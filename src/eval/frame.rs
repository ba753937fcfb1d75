//! Evaluation results as polars DataFrames, and saved as Parquet (atomically).

use std::path::Path;

use polars::prelude::{Column, DataFrame, ParquetWriter};

use super::{EvalError, Evaluation};
use crate::fsutil::atomic_write;

impl Evaluation {
    /// One row per record: `id`, then per ROUGE type `<type>_precision`, `_recall`,
    /// `_fmeasure`; `bleu` and `chrf` (sentence scores); `wer`, `wer_hits`,
    /// `wer_substitutions`, `wer_deletions`, `wer_insertions`; the same for `cer`.
    pub fn records_frame(&self) -> Result<DataFrame, EvalError> {
        let n = self.records.len();
        let mut cols = vec![Column::new(
            "id".into(),
            self.records
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
        )];
        for (k, t) in self.rouge_types.iter().enumerate() {
            let col = |suffix: &str, get: fn(&super::RougeScore) -> f64| {
                let values: Vec<f64> = self.records.iter().map(|r| get(&r.rouge[k])).collect();
                Column::new(format!("{t}_{suffix}").into(), values)
            };
            cols.push(col("precision", |s| s.precision));
            cols.push(col("recall", |s| s.recall));
            cols.push(col("fmeasure", |s| s.fmeasure));
        }
        if self.records.first().is_some_and(|r| r.bleu.is_some()) {
            let v: Vec<Option<f64>> = self.records.iter().map(|r| r.bleu.map(|b| b.1)).collect();
            cols.push(Column::new("bleu".into(), v));
        }
        if self.records.first().is_some_and(|r| r.chrf.is_some()) {
            let v: Vec<Option<f64>> = self
                .records
                .iter()
                .map(|r| r.chrf.as_ref().map(|c| c.1))
                .collect();
            cols.push(Column::new("chrf".into(), v));
        }
        for (name, pick) in [
            ("wer", (|r: &super::RecordScores| r.wer) as fn(&_) -> _),
            ("cer", |r: &super::RecordScores| r.cer),
        ] {
            if self.records.first().is_none_or(|r| pick(r).is_none()) {
                continue;
            }
            let counts: Vec<_> = self.records.iter().map(pick).collect();
            let rate: Vec<Option<f64>> = counts.iter().map(|c| c.map(|c| c.error_rate())).collect();
            cols.push(Column::new(name.into(), rate));
            type Get = fn(&super::EditCounts) -> u64;
            let parts: [(&str, Get); 4] = [
                ("hits", |c| c.hits),
                ("substitutions", |c| c.substitutions),
                ("deletions", |c| c.deletions),
                ("insertions", |c| c.insertions),
            ];
            for (part, get) in parts {
                let v: Vec<Option<u64>> = counts.iter().map(|c| c.as_ref().map(get)).collect();
                cols.push(Column::new(format!("{name}_{part}").into(), v));
            }
        }
        DataFrame::new(n, cols).map_err(|e| EvalError::Frame(e.to_string()))
    }

    /// One row per corpus statistic: `metric`, `statistic`, `value`, `low`, `mid`, `high`, `n`.
    pub fn summary_frame(&self) -> Result<DataFrame, EvalError> {
        let s = &self.summary;
        let f = |get: fn(&super::SummaryRow) -> f64| s.iter().map(get).collect::<Vec<f64>>();
        let cols = vec![
            Column::new(
                "metric".into(),
                s.iter().map(|r| r.metric.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "statistic".into(),
                s.iter().map(|r| r.statistic.as_str()).collect::<Vec<_>>(),
            ),
            Column::new("value".into(), f(|r| r.value)),
            Column::new("low".into(), f(|r| r.low)),
            Column::new("mid".into(), f(|r| r.mid)),
            Column::new("high".into(), f(|r| r.high)),
            Column::new("n".into(), s.iter().map(|r| r.n as u64).collect::<Vec<_>>()),
        ];
        DataFrame::new(s.len(), cols).map_err(|e| EvalError::Frame(e.to_string()))
    }

    /// Writes the per-record table as Parquet, atomically (the summary goes to
    /// `<stem>.summary.parquet` beside it).
    pub fn write_parquet(&self, path: &Path) -> Result<(), EvalError> {
        let summary_path = path.with_extension("summary.parquet");
        for (mut df, p) in [
            (self.records_frame()?, path.to_owned()),
            (self.summary_frame()?, summary_path),
        ] {
            let mut bytes = Vec::new();
            ParquetWriter::new(&mut bytes)
                .finish(&mut df)
                .map_err(|e| EvalError::Frame(e.to_string()))?;
            atomic_write(&p, &bytes)?;
        }
        Ok(())
    }
}
