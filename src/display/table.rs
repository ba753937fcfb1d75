//! DataFrames as HTML tables (polars has no HTML output in Rust).

use polars::prelude::{AnyValue, DataFrame};

use super::emit;
use crate::render::html_escape;

/// A DataFrame shown as an HTML table in notebooks (first and last rows when long).
#[derive(Clone, Debug)]
pub struct Table {
    df: DataFrame,
    max_rows: usize,
}

impl Table {
    /// Wraps a DataFrame; up to 20 rows are shown.
    pub fn new(df: DataFrame) -> Self {
        Self { df, max_rows: 20 }
    }

    /// Shows up to `rows` rows (half from the top, half from the bottom when cut).
    pub fn with_max_rows(mut self, rows: usize) -> Self {
        self.max_rows = rows.max(2);
        self
    }

    /// The wrapped DataFrame.
    pub fn frame(&self) -> &DataFrame {
        &self.df
    }

    /// The HTML table.
    pub fn to_html(&self) -> String {
        let (h, w) = self.df.shape();
        let mut out = String::from("<table><thead><tr>");
        for name in self.df.get_column_names() {
            out.push_str(&format!("<th>{}</th>", html_escape(name.as_str())));
        }
        out.push_str("</tr></thead><tbody>");
        let rows: Vec<Option<usize>> = if h <= self.max_rows {
            (0..h).map(Some).collect()
        } else {
            let top = self.max_rows / 2;
            (0..top)
                .map(Some)
                .chain(std::iter::once(None))
                .chain((h - (self.max_rows - top)..h).map(Some))
                .collect()
        };
        for row in rows {
            out.push_str("<tr>");
            match row {
                None => out.push_str(&format!("<td colspan=\"{w}\">&hellip;</td>")),
                Some(i) => {
                    for col in self.df.columns() {
                        let cell = col.get(i).map(|v| cell_text(&v)).unwrap_or_default();
                        out.push_str(&format!("<td>{}</td>", html_escape(&cell)));
                    }
                }
            }
            out.push_str("</tr>");
        }
        out.push_str(&format!(
            "</tbody></table><p>{h} rows &times; {w} columns</p>"
        ));
        out
    }

    /// evcxr hook: HTML table, with polars' text rendering as the plain-text fallback.
    pub fn evcxr_display(&self) {
        emit("text/html", &self.to_html());
        emit("text/plain", &format!("{}", self.df));
    }
}

impl From<DataFrame> for Table {
    fn from(df: DataFrame) -> Self {
        Self::new(df)
    }
}

fn cell_text(v: &AnyValue<'_>) -> String {
    match v {
        AnyValue::Null => String::new(),
        AnyValue::String(s) => (*s).to_owned(),
        AnyValue::StringOwned(s) => s.to_string(),
        AnyValue::Float64(x) => format_float(*x),
        AnyValue::Float32(x) => format_float(f64::from(*x)),
        other => other.to_string(),
    }
}

/// Six significant digits, no exponent for ordinary magnitudes.
fn format_float(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return x.to_string();
    }
    let digits = (6 - 1 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{x:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::Column;

    #[test]
    fn html_escapes_and_elides_long_tables() {
        let names: Vec<String> = (0..30).map(|i| format!("<r{i}>")).collect();
        let values: Vec<f64> = (0..30).map(|i| i as f64 / 3.0).collect();
        let df = DataFrame::new(
            30,
            vec![
                Column::new("name".into(), names),
                Column::new("v".into(), values),
            ],
        )
        .unwrap();
        let html = Table::new(df).with_max_rows(4).to_html();
        assert!(html.contains("<td>&lt;r0&gt;</td><td>0</td>"), "{html}");
        assert!(
            html.contains("<td>&lt;r1&gt;</td><td>0.333333</td>"),
            "{html}"
        );
        assert!(html.contains("&hellip;"));
        assert!(html.contains("&lt;r29&gt;"));
        assert!(!html.contains("&lt;r2&gt;"));
        assert!(html.contains("30 rows &times; 2 columns"));
    }
}
