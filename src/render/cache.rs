//! Per-worker caches: character -> glyph resolution with metrics, and glyph coverage bitmaps.
//!
//! A cache belongs to one renderer at a time (it is cleared when used with another), so its
//! contents are a pure function of (fonts, size, glyph, subpixel offset): rendering is
//! byte-for-byte the same with a cold cache, a warm one, or one per thread.

use crate::fxhash::FxMap;

/// What kind of thing a character is for layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A glyph with (possibly) ink.
    Ink,
    /// Whitespace: advances the pen, draws nothing, never counts toward line width.
    Space,
    /// Horizontal tab: pen moves to the next tab stop.
    Tab,
    /// Control or default-ignorable character: skipped.
    Ignored,
    /// No font covers it: drawn with the replacement glyph.
    Missing,
}

/// A character resolved to a font and glyph, with the metrics layout needs (pixels).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolved {
    pub kind: Kind,
    pub font: u8,
    pub glyph: u16,
    pub advance: f32,
    /// Right edge of the glyph's outline relative to its origin (0 if it has none).
    pub ink_right: f32,
}

/// A glyph's antialiased coverage, positioned relative to (pen x, baseline).
#[derive(Debug, Default)]
pub(crate) struct Bitmap {
    pub left: i32,
    pub top: i32,
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Reusable scratch state for rendering; keep one per thread for batch work.
///
/// [`super::Renderer::render`] makes a fresh one per call; pass your own to
/// [`super::Renderer::render_with`] to reuse resolved glyphs and bitmaps across documents.
#[derive(Default)]
pub struct RenderCache {
    owner: u64,
    ascii: Vec<Option<Resolved>>,
    chars: FxMap<char, Resolved>,
    bitmaps: FxMap<u32, Bitmap>,
}

impl RenderCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of glyph bitmaps held.
    pub fn bitmap_count(&self) -> usize {
        self.bitmaps.len()
    }

    /// Clears the cache if it was filled by another renderer.
    pub(crate) fn bind(&mut self, renderer_id: u64) {
        if self.owner != renderer_id {
            self.ascii.clear();
            self.ascii.resize(128, None);
            self.chars.clear();
            self.bitmaps.clear();
            self.owner = renderer_id;
        }
    }

    pub(crate) fn resolved(&mut self, ch: char, make: impl FnOnce(char) -> Resolved) -> Resolved {
        let code = ch as usize;
        if code < 128 {
            if let Some(r) = self.ascii[code] {
                return r;
            }
            let r = make(ch);
            self.ascii[code] = Some(r);
            return r;
        }
        *self.chars.entry(ch).or_insert_with(|| make(ch))
    }

    pub(crate) fn bitmap(&mut self, key: u32, make: impl FnOnce() -> Bitmap) -> &Bitmap {
        self.bitmaps.entry(key).or_insert_with(make)
    }
}

impl std::fmt::Debug for RenderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderCache")
            .field(
                "chars",
                &(self.chars.len() + self.ascii.iter().flatten().count()),
            )
            .field("bitmaps", &self.bitmaps.len())
            .finish()
    }
}
