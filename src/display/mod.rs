//! Rich notebook output through evcxr's protocol.
//!
//! evcxr calls `evcxr_display(&self)` on a cell's last expression when its type has one; the
//! method prints `EVCXR_BEGIN_CONTENT <mime>` ... `EVCXR_END_CONTENT` blocks, which become one
//! Jupyter result with those MIME types. Every type here also prints `text/plain`, and nothing
//! here panics: if an image cannot be encoded, the text says why.

mod chart;
mod evaluation;
mod grid;
mod line;
mod report;
#[cfg(feature = "frames")]
mod table;

use std::io::Write;

use base64::Engine;

pub use chart::{Bar, BarChart};
pub use grid::PageGrid;
pub use line::{LineChart, Series, SERIES_COLORS};
pub use report::{SampleRow, TrainingReport};
#[cfg(feature = "frames")]
pub use table::Table;

use crate::render::{Page, PngCompression, RenderReport, Rendered};

/// One evcxr content block: `EVCXR_BEGIN_CONTENT <mime>`, the content, `EVCXR_END_CONTENT`.
///
/// A content line equal to the end marker would end the block early; it is indented by a space.
pub fn content_block(mime: &str, content: &str) -> String {
    let mut out = format!("EVCXR_BEGIN_CONTENT {mime}\n");
    for line in content.lines() {
        if line == "EVCXR_END_CONTENT" {
            out.push(' ');
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("EVCXR_END_CONTENT\n");
    out
}

/// Prints one evcxr content block.
pub fn emit(mime: &str, content: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout is the only failure; there is nothing useful to do about it here.
    let _ = out.write_all(content_block(mime, content).as_bytes());
    let _ = out.flush();
}

/// Prints a PNG image block (base64), or a text note if `png` failed.
pub fn emit_png(png: Result<Vec<u8>, impl std::fmt::Display>, text: &str) {
    match png {
        Ok(bytes) => {
            emit(
                "image/png",
                &base64::engine::general_purpose::STANDARD.encode(bytes),
            );
            emit("text/plain", text);
        }
        Err(e) => emit("text/plain", &format!("{text} (image unavailable: {e})")),
    }
}

/// HTML shown as a cell result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Html(pub String);

impl Html {
    /// evcxr hook: shows the HTML.
    pub fn evcxr_display(&self) {
        emit("text/html", &self.0);
        emit("text/plain", &self.0);
    }
}

impl Page {
    /// evcxr hook: shows the page as an inline PNG.
    pub fn evcxr_display(&self) {
        let text = format!("{self:?}");
        emit_png(self.to_png(PngCompression::Fast), &text);
    }
}

impl Rendered {
    /// evcxr hook: shows the pages as a grid (up to 3 per row) with the report as text.
    pub fn evcxr_display(&self) {
        PageGrid::new(&self.pages, 3, 1200).show_with_text(&self.report.to_string());
    }
}

impl RenderReport {
    /// evcxr hook: shows the report as an HTML table.
    pub fn evcxr_display(&self) {
        emit("text/html", &self.to_html());
        emit("text/plain", &self.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_follow_the_evcxr_protocol() {
        assert_eq!(
            content_block("text/plain", "a\nb"),
            "EVCXR_BEGIN_CONTENT text/plain\na\nb\nEVCXR_END_CONTENT\n"
        );
        let tricky = content_block("text/plain", "x\nEVCXR_END_CONTENT\ny");
        assert_eq!(tricky.matches("\nEVCXR_END_CONTENT\n").count(), 1);
    }
}
