//! Layout: paragraphs -> wrapped lines -> pages of positioned glyphs.
//!
//! Wrapping is greedy over UAX #14 break opportunities, measured with real advances, pair
//! kerning and each glyph's ink extent, so no drawn pixel passes the right margin. A piece
//! between two opportunities that is wider than the line is broken by character (never before a
//! zero-width mark). Paragraphs with right-to-left text are reordered per line (UAX #9) and
//! right-aligned when their base direction is RTL; they are laid out without kerning so the
//! measured and placed widths agree.

use std::ops::Range;

use unicode_bidi::BidiInfo;

use super::cache::{Kind, Resolved};
use super::report::RenderReport;
use super::{MissingGlyphs, PageMode, RenderCache, RenderError, Renderer};

/// A glyph at its place on a page.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlacedGlyph {
    /// The source character (the uncovered one, for replacement glyphs).
    pub ch: char,
    /// Index of the font in the chain.
    pub font: u8,
    /// Glyph id in that font.
    pub glyph: u16,
    /// Pen x position in pixels (subpixel).
    pub x: f32,
    /// Baseline y position in pixels.
    pub baseline: i32,
}

/// One laid-out line.
#[derive(Clone, Debug, PartialEq)]
pub struct LineInfo {
    /// Byte range of the input text this line shows (trailing spaces included).
    pub source: Range<usize>,
    /// Baseline y in pixels.
    pub baseline: i32,
    /// Drawn width in pixels from the line start (ink and advances).
    pub width: f32,
    /// Glyphs of this line in the page's glyph list.
    pub glyphs: Range<usize>,
}

/// One page: its size, lines and glyphs.
#[derive(Clone, Debug, PartialEq)]
pub struct PageLayout {
    /// Page width in pixels.
    pub width: u32,
    /// Page height in pixels.
    pub height: u32,
    /// Lines, top to bottom.
    pub lines: Vec<LineInfo>,
    /// All glyphs on the page (whitespace excluded).
    pub glyphs: Vec<PlacedGlyph>,
}

/// A whole document laid out.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Pages in reading order.
    pub pages: Vec<PageLayout>,
    /// What will be drawn.
    pub report: RenderReport,
}

impl Layout {
    /// The text of every line, in order (for inspection and tests).
    pub fn line_texts<'t>(&self, text: &'t str) -> Vec<&'t str> {
        self.pages
            .iter()
            .flat_map(|p| p.lines.iter())
            .map(|l| &text[l.source.clone()])
            .collect()
    }
}

/// A character of a paragraph with its resolution.
#[derive(Clone, Copy)]
struct Item {
    /// Byte offset in the paragraph.
    offset: usize,
    ch: char,
    r: Resolved,
}

/// A line being filled. Glyph x positions are relative to the line start.
#[derive(Clone, Default)]
struct LineBuf {
    glyphs: Vec<(char, Resolved, f32)>,
    pen: f32,
    extent: f32,
    visible: usize,
    prev: Option<(u8, u16)>,
    start: usize,
}

#[derive(Clone, Copy)]
struct Mark {
    len: usize,
    pen: f32,
    extent: f32,
    visible: usize,
    prev: Option<(u8, u16)>,
}

/// A finished line before page placement (x relative to the line start).
struct Line {
    glyphs: Vec<(char, Resolved, f32)>,
    width: f32,
    source: Range<usize>,
    align_right: bool,
}

impl LineBuf {
    fn new(start: usize) -> Self {
        Self {
            start,
            ..Self::default()
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            len: self.glyphs.len(),
            pen: self.pen,
            extent: self.extent,
            visible: self.visible,
            prev: self.prev,
        }
    }

    fn restore(&mut self, m: Mark) {
        self.glyphs.truncate(m.len);
        self.pen = m.pen;
        self.extent = m.extent;
        self.visible = m.visible;
        self.prev = m.prev;
    }

    fn push(&mut self, ch: char, r: Resolved, ctx: &Ctx<'_>) {
        match r.kind {
            Kind::Ignored => return,
            Kind::Tab => {
                self.pen = ((self.pen / ctx.tab_px).floor() + 1.0) * ctx.tab_px;
                self.prev = None;
                return;
            }
            Kind::Ink | Kind::Space | Kind::Missing => {}
        }
        if ctx.kerning {
            if let Some((font, left)) = self.prev {
                if font == r.font {
                    self.pen += ctx.renderer.kern(font, left, r.glyph);
                }
            }
        }
        let x = self.pen;
        self.pen += r.advance;
        self.prev = Some((r.font, r.glyph));
        if r.kind != Kind::Space {
            self.extent = self.extent.max(x + r.advance.max(r.ink_right));
            self.visible += 1;
        }
        self.glyphs.push((ch, r, x));
    }

    fn finish(mut self, end: usize, align_right: bool) -> Line {
        while self.glyphs.last().is_some_and(|g| g.1.kind == Kind::Space) {
            self.glyphs.pop();
        }
        Line {
            glyphs: self.glyphs,
            width: self.extent,
            source: self.start..end,
            align_right,
        }
    }
}

struct Ctx<'a> {
    renderer: &'a Renderer,
    width: f32,
    tab_px: f32,
    kerning: bool,
}

impl Renderer {
    /// The advance width in pixels of `text` set on one line (no wrapping): the sum of glyph
    /// advances, pair kerning (if enabled) and tab stops. Newlines and ignorable characters
    /// count as nothing.
    pub fn measure(&self, text: &str) -> f32 {
        let mut cache = RenderCache::new();
        cache.bind(self.id);
        let ctx = Ctx {
            renderer: self,
            width: f32::INFINITY,
            tab_px: self.tab_px,
            kerning: self.config.kerning,
        };
        let mut line = LineBuf::new(0);
        for ch in text.chars().filter(|&c| c != '\n') {
            let r = self.resolve(ch, &mut cache);
            line.push(ch, r, &ctx);
        }
        line.pen
    }

    /// Lays `text` out, reusing `cache`.
    pub fn layout_with(&self, text: &str, cache: &mut RenderCache) -> Result<Layout, RenderError> {
        cache.bind(self.id);
        let cfg = &self.config;
        let m = cfg.margins;
        let content_width = (cfg.page_width() - m.left - m.right) as f32;
        let mut report = RenderReport::default();
        let mut lines = Vec::new();
        for (start, para) in paragraphs(text) {
            let items: Vec<Item> = para
                .char_indices()
                .map(|(offset, ch)| {
                    let r = self.resolve(ch, cache);
                    match r.kind {
                        Kind::Ignored => report.chars_ignored += 1,
                        Kind::Missing => report.note_missing(ch, start + offset),
                        _ => {}
                    }
                    Item { offset, ch, r }
                })
                .collect();
            self.wrap_paragraph(para, start, &items, content_width, cache, &mut lines);
        }
        if cfg.missing_glyphs == MissingGlyphs::Error && !report.missing.is_empty() {
            return Err(RenderError::MissingGlyphs {
                count: report.missing_count(),
                summary: report.missing_summary(),
                missing: report.missing,
            });
        }
        let pages = self.paginate(lines, &mut report);
        Ok(Layout { pages, report })
    }

    fn wrap_paragraph(
        &self,
        para: &str,
        start: usize,
        items: &[Item],
        width: f32,
        cache: &mut RenderCache,
        out: &mut Vec<Line>,
    ) {
        let bidi = has_rtl(items).then(|| BidiInfo::new(para, None));
        let rtl_base = bidi
            .as_ref()
            .is_some_and(|b| b.paragraphs.first().is_some_and(|p| p.level.is_rtl()));
        let ctx = Ctx {
            renderer: self,
            width,
            tab_px: self.tab_px,
            kerning: self.config.kerning && bidi.is_none(),
        };
        let first = out.len();
        let mut line = LineBuf::new(start);
        let mut seg_start = 0usize;
        let mut breaks = unicode_linebreak::linebreaks(para)
            .map(|(b, _)| b)
            .peekable();
        // Walk segments: item ranges between consecutive break opportunities.
        while seg_start < items.len() {
            let end_byte = breaks.next().unwrap_or(para.len());
            let seg_end = items[seg_start..]
                .iter()
                .position(|it| it.offset >= end_byte)
                .map_or(items.len(), |p| seg_start + p);
            if seg_end == seg_start {
                continue;
            }
            let seg = &items[seg_start..seg_end];
            let mut seg_mark = line.mark();
            seg.iter().for_each(|it| line.push(it.ch, it.r, &ctx));
            if line.extent > width && seg_mark.visible > 0 {
                line.restore(seg_mark);
                let new_start = start + seg[0].offset;
                let done = std::mem::replace(&mut line, LineBuf::new(new_start));
                out.push(done.finish(new_start, rtl_base));
                seg_mark = line.mark();
                seg.iter().for_each(|it| line.push(it.ch, it.r, &ctx));
            }
            if line.extent > width {
                line.restore(seg_mark);
                break_by_char(seg, start, &ctx, &mut line, out, rtl_base);
            }
            seg_start = seg_end;
        }
        let end = start + para.len();
        out.push(line.finish(end, rtl_base));
        if let Some(bidi) = bidi {
            for l in &mut out[first..] {
                self.reorder_visual(&bidi, para, start, l, cache, &ctx);
            }
        }
    }

    /// Replaces a logical-order line by its visual order (UAX #9 L2).
    fn reorder_visual(
        &self,
        bidi: &BidiInfo<'_>,
        para: &str,
        start: usize,
        line: &mut Line,
        cache: &mut RenderCache,
        ctx: &Ctx<'_>,
    ) {
        let Some(info) = bidi.paragraphs.first() else {
            return;
        };
        let range = (line.source.start - start)..(line.source.end - start).min(para.len());
        let visual = bidi.reorder_line(info, range);
        // Whitespace at either visual end draws nothing: drop it before placing, so it takes no
        // room (trailing logical spaces move to the visual left in RTL lines).
        let visual = visual.trim_matches(char::is_whitespace);
        let mut buf = LineBuf::new(line.source.start);
        for ch in visual.chars() {
            let r = self.resolve(ch, cache);
            buf.push(ch, r, ctx);
        }
        let glyphs = buf.glyphs;
        line.glyphs = glyphs;
        line.width = buf.extent;
    }

    fn paginate(&self, lines: Vec<Line>, report: &mut RenderReport) -> Vec<PageLayout> {
        let cfg = &self.config;
        let m = cfg.margins;
        let pitch = self.pitch;
        let max_h = cfg.page_max_height();
        let per_page = ((max_h - m.top - m.bottom) / pitch).max(1) as usize;
        let widest = lines.iter().map(|l| l.width).fold(0.0f32, f32::max);
        let page_width = match cfg.page {
            PageMode::Grow {
                width,
                fit_width: true,
                ..
            } => (m.left + m.right + widest.ceil() as u32).clamp(m.left + m.right + 1, width),
            _ => cfg.page_width(),
        };
        let content_width = (page_width - m.left - m.right) as f32;
        report.lines = lines.len();
        let mut per_font = vec![0usize; self.chain.fonts().len()];
        let mut pages = Vec::new();
        let mut it = lines.into_iter().peekable();
        loop {
            let chunk: Vec<Line> = it.by_ref().take(per_page).collect();
            if chunk.is_empty() && !pages.is_empty() {
                break;
            }
            let height = match cfg.page {
                PageMode::Paginate { height, .. } => height,
                PageMode::Grow { max_height, .. } => {
                    let rows = chunk.len().max(1) as u32;
                    (m.top + m.bottom + rows * pitch).min(max_height)
                }
            };
            let mut page = PageLayout {
                width: page_width,
                height,
                lines: Vec::with_capacity(chunk.len()),
                glyphs: Vec::new(),
            };
            for (row, line) in chunk.into_iter().enumerate() {
                let baseline =
                    (m.top as f32 + self.ascent).round() as i32 + (row as u32 * pitch) as i32;
                let shift = if line.align_right {
                    (content_width - line.width).max(0.0)
                } else {
                    0.0
                };
                let x0 = m.left as f32 + shift;
                let first = page.glyphs.len();
                for (ch, r, x) in line.glyphs {
                    if r.kind == Kind::Space {
                        continue;
                    }
                    per_font[usize::from(r.font)] += 1;
                    page.glyphs.push(PlacedGlyph {
                        ch,
                        font: r.font,
                        glyph: r.glyph,
                        x: x0 + x,
                        baseline,
                    });
                }
                page.lines.push(LineInfo {
                    source: line.source,
                    baseline,
                    width: line.width,
                    glyphs: first..page.glyphs.len(),
                });
            }
            pages.push(page);
            if it.peek().is_none() {
                break;
            }
        }
        report.pages = pages.len();
        report.chars_drawn = per_font.iter().sum();
        for (font, n) in self.chain.fonts().iter().zip(per_font) {
            if n > 0 {
                report.glyphs_per_font.insert(font.name().to_owned(), n);
            }
        }
        pages
    }
}

/// The segment alone is wider than the line: place it character by character, starting new
/// lines as needed (never before a zero-advance combining mark).
fn break_by_char(
    seg: &[Item],
    start: usize,
    ctx: &Ctx<'_>,
    line: &mut LineBuf,
    out: &mut Vec<Line>,
    rtl_base: bool,
) {
    for it in seg {
        let before = line.mark();
        line.push(it.ch, it.r, ctx);
        let is_mark = it.r.advance == 0.0;
        if line.extent > ctx.width && before.visible > 0 && !is_mark {
            line.restore(before);
            let new_start = start + it.offset;
            let done = std::mem::replace(line, LineBuf::new(new_start));
            out.push(done.finish(new_start, rtl_base));
            line.push(it.ch, it.r, ctx);
        }
    }
}

fn has_rtl(items: &[Item]) -> bool {
    items.iter().any(|it| {
        let c = it.ch as u32;
        // Hebrew, Arabic, Syriac, Thaana, NKo, Samaritan, Mandaic, Arabic ext., presentation forms.
        (0x0590..=0x08FF).contains(&c)
            || (0xFB1D..=0xFDFF).contains(&c)
            || (0xFE70..=0xFEFF).contains(&c)
            || (0x10800..=0x10FFF).contains(&c)
            || (0x1E800..=0x1EFFF).contains(&c)
            || matches!(c, 0x200F | 0x202B | 0x202E | 0x2067)
    })
}

/// Splits on `\n`, `\r\n` and lone `\r`, yielding (byte offset, paragraph).
fn paragraphs(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let bytes = text.as_bytes();
    let mut pos = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let start = pos;
        match bytes[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            Some(rel) => {
                let end = start + rel;
                let crlf = bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n');
                pos = end + if crlf { 2 } else { 1 };
                Some((start, &text[start..end]))
            }
            None => {
                done = true;
                Some((start, &text[start..]))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_split_on_all_newline_styles() {
        let got: Vec<_> = paragraphs("a\r\nb\rc\n\nd").collect();
        assert_eq!(got, vec![(0, "a"), (3, "b"), (5, "c"), (7, ""), (8, "d")]);
        assert_eq!(paragraphs("").collect::<Vec<_>>(), vec![(0, "")]);
    }
}
