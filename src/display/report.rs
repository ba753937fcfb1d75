//! A self-contained HTML report of a fine-tuning run: before/after metrics, loss and ROUGE
//! curves, page previews and sample summaries (images inlined as base64 PNG).

use base64::Engine;

use super::line::{LineChart, Series};
use crate::render::{html_escape, RenderError};
use crate::train::EvalReport;

/// One held-out document's summaries.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleRow {
    /// Document id.
    pub id: String,
    /// Reference summary.
    pub reference: String,
    /// Generated before training.
    pub before: String,
    /// Generated after training.
    pub after: String,
}

/// Everything the report shows.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingReport {
    /// Heading.
    pub title: String,
    /// `(name, value)` settings listed under the heading.
    pub settings: Vec<(String, String)>,
    /// Evaluation of the untrained adapter.
    pub before: EvalReport,
    /// Evaluation after training.
    pub after: EvalReport,
    /// Training loss per step.
    pub train_losses: Vec<(u64, f64)>,
    /// Every evaluation during training.
    pub evals: Vec<EvalReport>,
    /// `(caption, PNG bytes)` page previews.
    pub pages: Vec<(String, Vec<u8>)>,
    /// Sample summaries.
    pub samples: Vec<SampleRow>,
}

impl TrainingReport {
    /// A report of `outcome` (a [`crate::train::run`]) against `before` (the untrained adapter
    /// on `held_out`): previews of the first 3 held-out pages drawn by `renderer` and the first
    /// 12 held-out summaries before and after.
    pub fn from_run(
        title: impl Into<String>,
        settings: Vec<(String, String)>,
        before: &EvalReport,
        outcome: &crate::train::RunOutcome,
        held_out: &[crate::train::Example],
        renderer: &crate::render::Renderer,
    ) -> Self {
        let after = outcome
            .evals
            .last()
            .cloned()
            .unwrap_or_else(|| before.clone());
        let pages = held_out
            .iter()
            .take(3)
            .filter_map(|ex| {
                let r = renderer.render(&ex.text).ok()?;
                let png = r
                    .pages
                    .first()?
                    .to_png(crate::render::PngCompression::Fast)
                    .ok()?;
                Some((ex.id.clone(), png))
            })
            .collect();
        let samples = held_out
            .iter()
            .enumerate()
            .filter_map(|(i, ex)| {
                Some(SampleRow {
                    id: ex.id.clone(),
                    reference: ex.summary.clone(),
                    before: before.sample(i)?.generated.clone(),
                    after: after.sample(i)?.generated.clone(),
                })
            })
            .take(12)
            .collect();
        Self {
            title: title.into(),
            settings,
            before: before.clone(),
            after,
            train_losses: outcome.train_losses.clone(),
            evals: outcome.evals.clone(),
            pages,
            samples,
        }
    }

    fn curve(&self, metric: &str) -> Vec<(f64, f64)> {
        std::iter::once(&self.before)
            .chain(self.evals.iter())
            .filter_map(|e| e.metrics.get(metric).map(|v| (e.step as f64, *v)))
            .collect()
    }

    /// The loss chart: training loss per step and held-out loss at every evaluation.
    pub fn loss_chart(&self) -> LineChart {
        let train = self
            .train_losses
            .iter()
            .map(|&(s, l)| (s as f64, l))
            .collect();
        LineChart::new(
            "Loss",
            "optimiser step",
            "cross-entropy (nats/token)",
            vec![
                Series::new("train", train),
                Series::new("held-out", self.curve("loss")),
            ],
        )
    }

    /// The ROUGE chart: ROUGE-1/2/L F-measure of the held-out summaries at every evaluation.
    pub fn rouge_chart(&self) -> LineChart {
        let s = |m: &str, label: &str| {
            Series::new(
                label,
                self.curve(m)
                    .into_iter()
                    .map(|(x, y)| (x, 100.0 * y))
                    .collect(),
            )
        };
        LineChart::new(
            "Held-out ROUGE",
            "optimiser step",
            "F-measure (%)",
            vec![
                s("rouge1", "ROUGE-1"),
                s("rouge2", "ROUGE-2"),
                s("rougeL", "ROUGE-L"),
            ],
        )
    }

    /// The whole report as one HTML document.
    pub fn to_html(&self) -> Result<String, RenderError> {
        let b64 = |png: &[u8]| base64::engine::general_purpose::STANDARD.encode(png);
        let mut h = String::new();
        h.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
        h.push_str(&html_escape(&self.title));
        h.push_str("</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}\
            table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;\
            vertical-align:top;text-align:left}th{background:#f3f3f3}.num{text-align:right}\
            img{max-width:100%}</style></head><body>\n<h1>");
        h.push_str(&html_escape(&self.title));
        h.push_str("</h1>\n<table>");
        for (k, v) in &self.settings {
            h.push_str(&format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                html_escape(k),
                html_escape(v)
            ));
        }
        h.push_str(
            "</table>\n<h2>Before and after</h2>\n<table><tr><th>metric</th>\
            <th>untrained adapter</th><th>trained</th><th>change</th></tr>",
        );
        for (k, after) in &self.after.metrics {
            let before = self.before.metrics.get(k).copied().unwrap_or(f64::NAN);
            h.push_str(&format!(
                "<tr><td>{}</td><td class=\"num\">{before:.4}</td><td class=\"num\">{after:.4}</td>\
                 <td class=\"num\">{:+.4}</td></tr>",
                html_escape(k),
                after - before
            ));
        }
        h.push_str("</table>\n<h2>Curves</h2>\n");
        for chart in [self.loss_chart(), self.rouge_chart()] {
            h.push_str(&format!(
                "<img alt=\"{}\" src=\"data:image/png;base64,{}\">\n",
                html_escape(&chart.title),
                b64(&chart.to_png()?)
            ));
        }
        if !self.pages.is_empty() {
            h.push_str("<h2>Pages the model reads</h2>\n<div>");
            for (caption, png) in &self.pages {
                h.push_str(&format!(
                    "<figure style=\"display:inline-block;width:31%;margin:0 1%\">\
                     <img src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>",
                    b64(png),
                    html_escape(caption)
                ));
            }
            h.push_str("</div>\n");
        }
        h.push_str(
            "<h2>Sample summaries (held-out)</h2>\n<table><tr><th>document</th>\
            <th>reference</th><th>before</th><th>after</th></tr>",
        );
        for s in &self.samples {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&s.id),
                html_escape(&s.reference),
                html_escape(&s.before),
                html_escape(&s.after)
            ));
        }
        h.push_str("</table>\n</body></html>\n");
        Ok(h)
    }

    /// evcxr hook: the report inline.
    pub fn evcxr_display(&self) {
        match self.to_html() {
            Ok(html) => {
                super::emit("text/html", &html);
                super::emit("text/plain", &self.title);
            }
            Err(e) => super::emit(
                "text/plain",
                &format!("{} (report unavailable: {e})", self.title),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn eval(step: u64, loss: f64, rouge: f64) -> EvalReport {
        let metrics = BTreeMap::from([("loss".to_string(), loss), ("rougeL".to_string(), rouge)]);
        EvalReport {
            step,
            metrics,
            samples: vec![],
            skipped: vec![],
            truncated: vec![],
        }
    }

    #[test]
    fn the_report_has_every_section_and_escapes_text() {
        let r = TrainingReport {
            title: "run <1>".into(),
            settings: vec![("rank".into(), "8".into())],
            before: eval(0, 5.0, 0.1),
            after: eval(20, 3.0, 0.25),
            train_losses: (1..=20).map(|s| (s, 5.0 - s as f64 * 0.1)).collect(),
            evals: vec![eval(10, 4.0, 0.2), eval(20, 3.0, 0.25)],
            pages: vec![("page".into(), b"\x89PNGfake".to_vec())],
            samples: vec![SampleRow {
                id: "d1".into(),
                reference: "a & b".into(),
                before: "<x>".into(),
                after: "a b".into(),
            }],
        };
        assert_eq!(
            r.loss_chart().series[1].points,
            vec![(0.0, 5.0), (10.0, 4.0), (20.0, 3.0)]
        );
        assert_eq!(r.rouge_chart().series[2].points[2], (20.0, 25.0));
        let html = r.to_html().unwrap();
        assert!(html.contains("run &lt;1&gt;"));
        assert!(html.contains("a &amp; b") && html.contains("&lt;x&gt;"));
        // loss: 5 -> 3, change -2; rougeL 0.1 -> 0.25.
        assert!(html.contains("-2.0000") && html.contains("+0.1500"));
        assert_eq!(html.matches("data:image/png;base64,").count(), 3);
    }
}
