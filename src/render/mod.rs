//! Text to page images.
//!
//! DeepSeek-OCR ([arXiv 2510.18234](https://arxiv.org/abs/2510.18234)) reads a document as an
//! image; this module makes that image. Text is laid out with real glyph advances and pair
//! kerning, wrapped at Unicode line-break opportunities (UAX #14) to the content width,
//! reordered for right-to-left scripts (UAX #9), and rasterised with antialiasing through a
//! per-character fallback chain of bundled fonts ([`FontChain::bundled`]).
//!
//! ```
//! use deepsynth::render::{Preset, Renderer};
//! let renderer = Renderer::from_preset(Preset::Base)?;
//! let out = renderer.render("Bonjour à tous — Привет — 你好")?;
//! assert_eq!(out.pages.len(), 1);
//! assert!(out.report.is_complete());
//! # Ok::<(), deepsynth::Error>(())
//! ```

mod batch;
mod cache;
mod config;
mod fonts;
mod layout;
mod page;
mod raster;
mod report;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use ab_glyph::{Font, GlyphId, PxScale, ScaleFont};

pub use batch::{BatchOptions, BatchSummary, Document, DocumentOutput};
pub use cache::RenderCache;
pub use config::{Margins, MissingGlyphs, PageMode, Preset, RenderConfig};
pub use fonts::{ChainFont, FontChain, DEJAVU_SANS, DROID_SANS_FALLBACK, NOTO_SANS_HEBREW};
pub use layout::{Layout, LineInfo, PageLayout, PlacedGlyph};
pub(crate) use page::encode_png;
pub use page::{Page, PngCompression};
pub use report::{html_escape, MissingChar, RenderReport};

use cache::{Kind, Resolved};

/// Errors from fonts, configuration, layout and image output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// A configuration value is out of range.
    #[error("invalid render config `{field}`: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A preset name that does not exist.
    #[error(
        "unknown render preset `{0}` (expected tiny, small, base, large, gundam or deepsynth)"
    )]
    UnknownPreset(String),
    /// A font file could not be read.
    #[error("cannot read font file {path}: {source}")]
    FontRead {
        /// The font file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A font file is not a usable TrueType/OpenType font.
    #[error("cannot parse font {path}: {reason}")]
    FontParse {
        /// The font file (or bundled font name).
        path: String,
        /// What the parser said.
        reason: String,
    },
    /// Strict mode: characters that no font in the chain covers.
    #[error("no font covers {count} character(s): {summary}")]
    MissingGlyphs {
        /// Total occurrences.
        count: usize,
        /// `U+XXXX 'c' xN` list.
        summary: String,
        /// Each missing character with its first byte offset.
        missing: Vec<MissingChar>,
    },
    /// PNG encoding failed.
    #[error("PNG encoding of a {width}x{height} page failed: {reason}")]
    Png {
        /// Page width.
        width: u32,
        /// Page height.
        height: u32,
        /// The encoder's message.
        reason: String,
    },
    /// Writing an image failed.
    #[error(transparent)]
    Io(#[from] crate::fsutil::IoError),
}

/// The pages of one document and its report.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// Page images, in reading order.
    pub pages: Vec<Page>,
    /// What was drawn, and what could not be.
    pub report: RenderReport,
    /// The byte range of the input text each page shows (from its first line's start to its
    /// last line's end; empty for a page without lines).
    pub page_sources: Vec<std::ops::Range<usize>>,
}

static NEXT_RENDERER_ID: AtomicU64 = AtomicU64::new(1);

/// Lays out and rasterises text with one configuration and font chain.
///
/// Cheap to share across threads (`&Renderer` is `Sync`); per-thread state lives in
/// [`RenderCache`].
#[derive(Clone, Debug)]
pub struct Renderer {
    id: u64,
    config: RenderConfig,
    chain: FontChain,
    scales: Vec<PxScale>,
    pitch: u32,
    ascent: f32,
    tab_px: f32,
    replacement: (u8, GlyphId),
}

impl Renderer {
    /// A renderer with the bundled font chain.
    pub fn new(config: RenderConfig) -> Result<Self, RenderError> {
        Self::with_fonts(config, FontChain::bundled()?)
    }

    /// A renderer for a named preset with the bundled fonts.
    pub fn from_preset(preset: Preset) -> Result<Self, RenderError> {
        Self::new(RenderConfig::preset(preset))
    }

    /// A renderer with a custom font chain.
    pub fn with_fonts(config: RenderConfig, chain: FontChain) -> Result<Self, RenderError> {
        config.validate()?;
        let scales: Vec<PxScale> = chain
            .fonts()
            .iter()
            .map(|f| f.scale_for_em(config.font_size))
            .collect();
        let primary = chain.fonts()[0].font().as_scaled(scales[0]);
        let line_height = primary.ascent() - primary.descent() + primary.line_gap();
        let pitch = (line_height * config.line_spacing).ceil().max(1.0) as u32;
        let (top, bottom) = (config.margins.top, config.margins.bottom);
        if top + bottom + pitch > config.page_max_height() {
            return Err(RenderError::InvalidConfig {
                field: "page",
                reason: format!(
                    "a {pitch} px line does not fit between margins {top}+{bottom} on a {} px page",
                    config.page_max_height()
                ),
            });
        }
        let space = primary.h_advance(primary.glyph_id(' '));
        let space = if space > 0.0 {
            space
        } else {
            config.font_size / 3.0
        };
        let replacement = chain.lookup('\u{FFFD}').unwrap_or((0, GlyphId(0)));
        Ok(Self {
            id: NEXT_RENDERER_ID.fetch_add(1, Ordering::Relaxed),
            tab_px: space * config.tab_width as f32,
            ascent: primary.ascent(),
            pitch,
            scales,
            replacement,
            chain,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RenderConfig {
        &self.config
    }

    /// The font chain.
    pub fn fonts(&self) -> &FontChain {
        &self.chain
    }

    /// Distance between baselines, in pixels.
    pub fn line_pitch(&self) -> u32 {
        self.pitch
    }

    /// Renders `text` into pages (fresh cache).
    pub fn render(&self, text: &str) -> Result<Rendered, RenderError> {
        self.render_with(text, &mut RenderCache::new())
    }

    /// Renders `text` reusing `cache`.
    pub fn render_with(
        &self,
        text: &str,
        cache: &mut RenderCache,
    ) -> Result<Rendered, RenderError> {
        let layout = self.layout_with(text, cache)?;
        let pages = layout
            .pages
            .iter()
            .map(|p| self.rasterize_with(p, cache))
            .collect();
        let page_sources = layout
            .pages
            .iter()
            .map(|p| match (p.lines.first(), p.lines.last()) {
                (Some(a), Some(b)) => a.source.start..b.source.end,
                _ => 0..0,
            })
            .collect();
        Ok(Rendered {
            pages,
            report: layout.report,
            page_sources,
        })
    }

    /// Lays `text` out without drawing (fresh cache).
    pub fn layout(&self, text: &str) -> Result<Layout, RenderError> {
        self.layout_with(text, &mut RenderCache::new())
    }

    /// Draws one laid-out page (fresh cache).
    pub fn rasterize(&self, page: &PageLayout) -> Page {
        self.rasterize_with(page, &mut RenderCache::new())
    }

    fn resolve(&self, ch: char, cache: &mut RenderCache) -> Resolved {
        cache.resolved(ch, |ch| self.resolve_uncached(ch))
    }

    fn resolve_uncached(&self, ch: char) -> Resolved {
        if ch == '\t' {
            return self.blank(Kind::Tab, 0.0);
        }
        if is_ignorable(ch) {
            return self.blank(Kind::Ignored, 0.0);
        }
        match self.chain.lookup(ch) {
            Some((font, id)) => {
                let kind = if ch.is_whitespace() {
                    Kind::Space
                } else {
                    Kind::Ink
                };
                self.metrics(kind, font, id)
            }
            None if ch.is_whitespace() => {
                self.blank(Kind::Space, self.resolve_uncached(' ').advance)
            }
            None => self.metrics(Kind::Missing, self.replacement.0, self.replacement.1),
        }
    }

    fn blank(&self, kind: Kind, advance: f32) -> Resolved {
        Resolved {
            kind,
            font: 0,
            glyph: 0,
            advance,
            ink_right: 0.0,
        }
    }

    fn metrics(&self, kind: Kind, font: u8, id: GlyphId) -> Resolved {
        let f = self.chain.fonts()[usize::from(font)].font();
        let scaled = f.as_scaled(self.scales[usize::from(font)]);
        let ink_right = f
            .outline(id)
            .map(|o| o.bounds.max.x * scaled.h_scale_factor())
            .unwrap_or(0.0);
        Resolved {
            kind,
            font,
            glyph: id.0,
            advance: scaled.h_advance(id),
            ink_right,
        }
    }

    fn kern(&self, font: u8, left: u16, right: u16) -> f32 {
        let f = self.chain.fonts()[usize::from(font)].font();
        f.as_scaled(self.scales[usize::from(font)])
            .kern(GlyphId(left), GlyphId(right))
    }

    /// The pixel box (x0, y0, x1, y1) a placed glyph's outline covers, if it has one.
    pub fn glyph_box(&self, g: &PlacedGlyph) -> Option<(i32, i32, i32, i32)> {
        let f = self.chain.fonts()[usize::from(g.font)].font();
        let glyph = GlyphId(g.glyph).with_scale_and_position(
            self.scales[usize::from(g.font)],
            ab_glyph::point(g.x, g.baseline as f32),
        );
        let b = f.outline_glyph(glyph)?.px_bounds();
        Some((
            b.min.x as i32,
            b.min.y as i32,
            b.max.x as i32,
            b.max.y as i32,
        ))
    }
}

/// Controls and default-ignorable code points: skipped, never reported as missing.
fn is_ignorable(ch: char) -> bool {
    matches!(ch,
        '\u{0}'..='\u{8}' | '\u{B}'..='\u{1F}' | '\u{7F}'..='\u{9F}'
        | '\u{AD}' | '\u{34F}' | '\u{61C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}
