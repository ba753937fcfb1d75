//! The render report: what was drawn, and every character no font covered.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A character that no font in the chain covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingChar {
    /// The character.
    pub ch: char,
    /// `U+XXXX` form, for characters that do not print.
    pub codepoint: String,
    /// How many times it occurs.
    pub count: usize,
    /// Byte offset of its first occurrence in the input text.
    pub first_offset: usize,
}

/// Per-document summary of a render.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderReport {
    /// Pages produced.
    pub pages: usize,
    /// Lines laid out (empty lines from blank paragraphs included).
    pub lines: usize,
    /// Characters drawn with a glyph (whitespace and ignorable characters excluded,
    /// replacement glyphs included).
    pub chars_drawn: usize,
    /// Control and default-ignorable characters skipped (e.g. U+200B, U+FEFF, C0 controls).
    pub chars_ignored: usize,
    /// Characters no font covers, in order of first occurrence.
    pub missing: Vec<MissingChar>,
    /// Glyphs drawn per font of the chain (font name -> count).
    pub glyphs_per_font: BTreeMap<String, usize>,
}

impl RenderReport {
    /// True when every character had a glyph.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// Total occurrences of uncovered characters.
    pub fn missing_count(&self) -> usize {
        self.missing.iter().map(|m| m.count).sum()
    }

    pub(crate) fn note_missing(&mut self, ch: char, offset: usize) {
        match self.missing.iter_mut().find(|m| m.ch == ch) {
            Some(m) => m.count += 1,
            None => self.missing.push(MissingChar {
                ch,
                codepoint: format!("U+{:04X}", ch as u32),
                count: 1,
                first_offset: offset,
            }),
        }
    }

    /// The missing characters as `U+XXXX 'c' xN` items, comma-separated.
    pub fn missing_summary(&self) -> String {
        self.missing
            .iter()
            .map(|m| format!("{} {:?} x{}", m.codepoint, m.ch, m.count))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// An HTML table (for notebooks).
    pub fn to_html(&self) -> String {
        let mut rows = vec![
            ("pages", self.pages.to_string()),
            ("lines", self.lines.to_string()),
            ("characters drawn", self.chars_drawn.to_string()),
            ("characters ignored", self.chars_ignored.to_string()),
            ("missing characters", html_escape(&self.missing_summary())),
        ];
        for (font, n) in &self.glyphs_per_font {
            rows.push(("glyphs from", format!("{} ({n})", html_escape(font))));
        }
        let body: String = rows
            .iter()
            .map(|(k, v)| format!("<tr><th style=\"text-align:left\">{k}</th><td>{v}</td></tr>"))
            .collect();
        format!("<table>{body}</table>")
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl fmt::Display for RenderReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} page(s), {} line(s), {} character(s) drawn",
            self.pages, self.lines, self.chars_drawn
        )?;
        if self.chars_ignored > 0 {
            write!(f, ", {} ignored", self.chars_ignored)?;
        }
        if self.missing.is_empty() {
            write!(f, ", no missing glyphs")
        } else {
            write!(
                f,
                ", {} missing: {}",
                self.missing_count(),
                self.missing_summary()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_chars_are_counted_once_per_char() {
        let mut r = RenderReport::default();
        r.note_missing('\u{E000}', 3);
        r.note_missing('\u{E001}', 7);
        r.note_missing('\u{E000}', 9);
        assert_eq!(r.missing.len(), 2);
        assert_eq!(r.missing[0].count, 2);
        assert_eq!(r.missing[0].first_offset, 3);
        assert_eq!(r.missing[0].codepoint, "U+E000");
        assert_eq!(r.missing_count(), 3);
        assert!(r.to_string().contains("3 missing"));
        assert!(!r.to_html().contains('\u{E000}') || r.to_html().contains("U+E000"));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
