//! Render configuration: font size, margins, spacing, colours, page mode, presets.
//!
//! Presets follow DeepSeek-OCR's resolution modes (arXiv 2510.18234, table 1): a page is
//! rendered at the size the encoder reads it, with a font size that stays legible after the
//! encoder's 16x compression of each side.

use serde::{Deserialize, Serialize};

use super::RenderError;

/// Page margins in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Margins {
    /// Top margin.
    pub top: u32,
    /// Right margin.
    pub right: u32,
    /// Bottom margin.
    pub bottom: u32,
    /// Left margin.
    pub left: u32,
}

impl Margins {
    /// The same margin on all four sides.
    pub const fn uniform(px: u32) -> Self {
        Self {
            top: px,
            right: px,
            bottom: px,
            left: px,
        }
    }
}

/// How text is split into pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum PageMode {
    /// One page that grows to fit the text, up to `max_height`; text beyond that continues on
    /// further pages (nothing is dropped). With `fit_width`, the page is only as wide as its
    /// longest line (plus margins), up to `width`.
    Grow {
        /// Page width (or the maximum width with `fit_width`).
        width: u32,
        /// Maximum page height.
        max_height: u32,
        /// Shrink the width to the longest line.
        fit_width: bool,
    },
    /// Fixed-size pages; the last one is padded with background.
    Paginate {
        /// Page width.
        width: u32,
        /// Page height.
        height: u32,
    },
}

/// What to do with characters that no font in the chain covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingGlyphs {
    /// Draw U+FFFD (or the primary font's .notdef box) and list the character in the report.
    #[default]
    Replace,
    /// Fail with [`RenderError::MissingGlyphs`] listing every uncovered character.
    Error,
}

/// Named render presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// DeepSeek-OCR Tiny: 512 px, 64 visual tokens.
    Tiny,
    /// DeepSeek-OCR Small: 640 px, 100 visual tokens.
    Small,
    /// DeepSeek-OCR Base: 1024 px, 256 visual tokens.
    Base,
    /// DeepSeek-OCR Large: 1280 px, 400 visual tokens.
    Large,
    /// DeepSeek-OCR Gundam: 1024 global view + 640 tiles; pages 1280 wide (2 tiles) and up to
    /// 1920 tall (3 tiles), a 2x3 grid within both the HF (2..9) and vLLM (2..6) tile limits.
    Gundam,
    /// The original Python DeepSynth: DejaVu Sans 12 px, width up to 1600, height up to 2400,
    /// margin 40.
    DeepSynth,
}

impl Preset {
    /// Every preset, in size order.
    pub const ALL: [Preset; 6] = [
        Preset::Tiny,
        Preset::Small,
        Preset::Base,
        Preset::Large,
        Preset::Gundam,
        Preset::DeepSynth,
    ];

    /// The preset's lower-case name, as accepted by [`Preset::from_name`] and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Small => "small",
            Preset::Base => "base",
            Preset::Large => "large",
            Preset::Gundam => "gundam",
            Preset::DeepSynth => "deepsynth",
        }
    }

    /// Looks a preset up by name (case-insensitive).
    pub fn from_name(name: &str) -> Result<Self, RenderError> {
        let lower = name.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|p| p.name() == lower)
            .ok_or_else(|| RenderError::UnknownPreset(name.to_owned()))
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that decides how text becomes pages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RenderConfig {
    /// Font size in pixels per em (as PIL's `truetype(size=...)` and CSS `px`).
    pub font_size: f32,
    /// Page margins.
    pub margins: Margins,
    /// Line pitch as a multiple of the primary font's line height (ascent - descent + gap).
    pub line_spacing: f32,
    /// Text colour (RGB).
    pub foreground: [u8; 3],
    /// Page colour (RGB).
    pub background: [u8; 3],
    /// Tab stops every this many space widths.
    pub tab_width: u32,
    /// Apply the fonts' pair kerning (left-to-right paragraphs).
    pub kerning: bool,
    /// Page sizing.
    pub page: PageMode,
    /// Uncovered characters: replace and report, or fail.
    pub missing_glyphs: MissingGlyphs,
}

impl RenderConfig {
    /// The configuration of a named preset.
    pub fn preset(preset: Preset) -> Self {
        let square = |side: u32, font_size: f32, margin: u32| Self {
            font_size,
            margins: Margins::uniform(margin),
            page: PageMode::Grow {
                width: side,
                max_height: side,
                fit_width: false,
            },
            ..Self::base_defaults()
        };
        match preset {
            Preset::Tiny => square(512, 10.0, 16),
            Preset::Small => square(640, 12.0, 20),
            Preset::Base => square(1024, 18.0, 32),
            Preset::Large => square(1280, 22.0, 40),
            Preset::Gundam => Self {
                font_size: 18.0,
                margins: Margins::uniform(32),
                page: PageMode::Grow {
                    width: 1280,
                    max_height: 1920,
                    fit_width: false,
                },
                ..Self::base_defaults()
            },
            Preset::DeepSynth => Self {
                font_size: 12.0,
                margins: Margins::uniform(40),
                page: PageMode::Grow {
                    width: 1600,
                    max_height: 2400,
                    fit_width: true,
                },
                ..Self::base_defaults()
            },
        }
    }

    fn base_defaults() -> Self {
        Self {
            font_size: 18.0,
            margins: Margins::uniform(32),
            line_spacing: 1.0,
            foreground: [0, 0, 0],
            background: [255, 255, 255],
            tab_width: 4,
            kerning: true,
            page: PageMode::Grow {
                width: 1024,
                max_height: 1024,
                fit_width: false,
            },
            missing_glyphs: MissingGlyphs::Replace,
        }
    }

    /// Fixed-size pages of the current width and (maximum) height.
    pub fn paginated(mut self) -> Self {
        self.page = match self.page {
            PageMode::Grow {
                width, max_height, ..
            } => PageMode::Paginate {
                width,
                height: max_height,
            },
            fixed => fixed,
        };
        self
    }

    /// Fail on characters no font covers instead of drawing a replacement.
    pub fn strict(mut self) -> Self {
        self.missing_glyphs = MissingGlyphs::Error;
        self
    }

    /// Sets the font size (pixels per em).
    pub fn with_font_size(mut self, px: f32) -> Self {
        self.font_size = px;
        self
    }

    /// Sets the margins.
    pub fn with_margins(mut self, margins: Margins) -> Self {
        self.margins = margins;
        self
    }

    /// Sets the line spacing multiplier.
    pub fn with_line_spacing(mut self, spacing: f32) -> Self {
        self.line_spacing = spacing;
        self
    }

    /// Sets text and page colours.
    pub fn with_colors(mut self, foreground: [u8; 3], background: [u8; 3]) -> Self {
        self.foreground = foreground;
        self.background = background;
        self
    }

    /// Sets the page mode.
    pub fn with_page(mut self, page: PageMode) -> Self {
        self.page = page;
        self
    }

    /// The page width (maximum width in fit-width mode).
    pub fn page_width(&self) -> u32 {
        match self.page {
            PageMode::Grow { width, .. } | PageMode::Paginate { width, .. } => width,
        }
    }

    /// The page height limit (fixed height when paginating).
    pub fn page_max_height(&self) -> u32 {
        match self.page {
            PageMode::Grow { max_height, .. } => max_height,
            PageMode::Paginate { height, .. } => height,
        }
    }

    /// Checks that the numbers make sense before any text is laid out.
    pub fn validate(&self) -> Result<(), RenderError> {
        let bad =
            |field: &'static str, reason: String| Err(RenderError::InvalidConfig { field, reason });
        if !(self.font_size.is_finite() && self.font_size > 0.0 && self.font_size <= 1000.0) {
            return bad(
                "font_size",
                format!("{} is not in (0, 1000]", self.font_size),
            );
        }
        if !(self.line_spacing.is_finite() && self.line_spacing > 0.0 && self.line_spacing <= 10.0)
        {
            return bad(
                "line_spacing",
                format!("{} is not in (0, 10]", self.line_spacing),
            );
        }
        if self.tab_width == 0 || self.tab_width > 64 {
            return bad("tab_width", format!("{} is not in 1..=64", self.tab_width));
        }
        let (w, h) = (self.page_width(), self.page_max_height());
        const MAX_SIDE: u32 = 16_384;
        if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
            return bad(
                "page",
                format!("{w}x{h} is outside 1..={MAX_SIDE} pixels per side"),
            );
        }
        let m = self.margins;
        if m.left + m.right >= w {
            return bad(
                "margins",
                format!(
                    "left {} + right {} leave no room on a {w} px wide page",
                    m.left, m.right
                ),
            );
        }
        if m.top + m.bottom >= h {
            return bad(
                "margins",
                format!(
                    "top {} + bottom {} leave no room on a {h} px tall page",
                    m.top, m.bottom
                ),
            );
        }
        Ok(())
    }
}

impl Default for RenderConfig {
    /// The Base preset.
    fn default() -> Self {
        Self::preset(Preset::Base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_round_trip_names() {
        for p in Preset::ALL {
            RenderConfig::preset(p).validate().unwrap();
            assert_eq!(Preset::from_name(&p.name().to_uppercase()).unwrap(), p);
        }
        assert!(matches!(
            Preset::from_name("huge"),
            Err(RenderError::UnknownPreset(_))
        ));
    }

    #[test]
    fn bad_values_name_the_field() {
        let cfg = RenderConfig::default().with_font_size(f32::NAN);
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("font_size"), "{err}");
        let cfg = RenderConfig::default().with_margins(Margins::uniform(600));
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("margins"), "{err}");
    }

    #[test]
    fn paginated_keeps_size() {
        let cfg = RenderConfig::preset(Preset::Base).paginated();
        assert_eq!(
            cfg.page,
            PageMode::Paginate {
                width: 1024,
                height: 1024
            }
        );
    }
}
