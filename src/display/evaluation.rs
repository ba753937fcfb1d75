//! Notebook display of evaluation results: the summary table and a bar chart.

use super::{emit, Bar, BarChart};

impl crate::eval::Evaluation {
    /// evcxr hook: the summary as an HTML table.
    #[cfg(feature = "frames")]
    pub fn evcxr_display(&self) {
        match self.summary_frame() {
            Ok(df) => super::Table::new(df).evcxr_display(),
            Err(e) => emit(
                "text/plain",
                &format!("Evaluation (table unavailable: {e})"),
            ),
        }
    }

    /// evcxr hook: the summary as text (this build has no DataFrames).
    #[cfg(not(feature = "frames"))]
    pub fn evcxr_display(&self) {
        emit("text/plain", &self.summary_text());
    }

    /// A bar chart of the corpus scores on a 0-100 scale (ROUGE F, BLEU, chrF, WER and CER as
    /// percentages) with their bootstrap intervals.
    pub fn chart(&self) -> BarChart {
        let bars = self
            .summary
            .iter()
            .filter(|r| matches!(r.statistic.as_str(), "fmeasure" | "corpus" | "micro"))
            .map(|r| {
                let scale = if matches!(r.metric.as_str(), "bleu" | "chrf") {
                    1.0
                } else {
                    100.0
                };
                let label = r.metric.clone();
                Bar {
                    label,
                    value: r.value * scale,
                    interval: Some((r.low * scale, r.high * scale)),
                }
            })
            .collect();
        BarChart::new(
            format!("{} records", self.records.len()),
            "score (0-100)",
            bars,
        )
    }
}
