//! Evaluation results saved as JSON (atomically).

use std::path::Path;

use super::{EvalError, Evaluation};
use crate::fsutil::atomic_write;

impl Evaluation {
    /// The summary as an aligned text table (metric, statistic, value, bootstrap interval).
    pub fn summary_text(&self) -> String {
        let mut text = format!(
            "{:<10} {:<10} {:>12} {:>12} {:>12}\n",
            "metric", "statistic", "value", "low", "high"
        );
        for r in &self.summary {
            text += &format!(
                "{:<10} {:<10} {:>12.6} {:>12.6} {:>12.6}\n",
                r.metric, r.statistic, r.value, r.low, r.high
            );
        }
        text
    }

    /// Parquet needs the `frames` feature; this build has none.
    #[cfg(not(feature = "frames"))]
    pub fn write_parquet(&self, path: &Path) -> Result<(), EvalError> {
        Err(EvalError::Frame(format!(
            "{}: {}",
            path.display(),
            crate::NO_FRAMES
        )))
    }

    /// Writes `{"summary": [...], "records": [...]}` as JSON, atomically.
    pub fn write_json(&self, path: &Path) -> Result<(), EvalError> {
        let records: Vec<serde_json::Value> = self
            .records
            .iter()
            .map(|r| {
                let mut obj = serde_json::Map::new();
                obj.insert("id".into(), r.id.clone().into());
                for (t, s) in self.rouge_types.iter().zip(&r.rouge) {
                    obj.insert(
                        t.to_string(),
                        serde_json::json!([s.precision, s.recall, s.fmeasure]),
                    );
                }
                if let Some((_, b)) = r.bleu {
                    obj.insert("bleu".into(), b.into());
                }
                if let Some((_, c)) = &r.chrf {
                    obj.insert("chrf".into(), (*c).into());
                }
                for (name, c) in [("wer", r.wer), ("cer", r.cer)] {
                    if let Some(c) = c {
                        obj.insert(
                            name.into(),
                            serde_json::json!({
                                "rate": c.error_rate(), "hits": c.hits,
                                "substitutions": c.substitutions, "deletions": c.deletions,
                                "insertions": c.insertions,
                            }),
                        );
                    }
                }
                serde_json::Value::Object(obj)
            })
            .collect();
        let doc = serde_json::json!({ "summary": self.summary, "records": records });
        let text =
            serde_json::to_string_pretty(&doc).map_err(|e| EvalError::Frame(e.to_string()))?;
        atomic_write(path, text.as_bytes())?;
        Ok(())
    }
}
