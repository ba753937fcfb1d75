//! Whole documents on the one page image a vision mode reads.
//!
//! A document is rendered with [`page_config_for`] its mode (the page grows with the text up to
//! the size the mode reads without losing detail: 1024 px square for Base, 1280 x 1920 for
//! Gundam, which tiles it 2 x 3 at native scale). Text that still does not fit would continue
//! on further pages; [`OnOverflow`] says what happens then, and [`FittedPage`] records how much
//! of the document the model sees, so truncation is never silent.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::preprocess::ImageMode;
use super::DataError;
use crate::render::{Margins, Page, PageMode, Preset, RenderConfig, Renderer};

/// What to do with a document that does not fit on one page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnOverflow {
    /// Fail with [`DataError::Overflow`].
    Error,
    /// Keep the first page (the beginning of the document) and count what was left out.
    ///
    /// The default: summaries of news and reports draw mostly on a document's beginning (lead
    /// bias), so the first page keeps most of the signal, while skipping would bias a dataset
    /// towards short documents and failing would stop a long run on its first long document.
    #[default]
    Truncate,
    /// Leave the document out (a training run lists it among its skipped examples).
    Skip,
}

impl OnOverflow {
    /// Every policy, in the order the CLI lists them.
    pub const ALL: [OnOverflow; 3] = [Self::Error, Self::Truncate, Self::Skip];

    /// The policy's name (`error`, `truncate`, `skip`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Truncate => "truncate",
            Self::Skip => "skip",
        }
    }

    /// Looks a policy up by name; the error lists the valid names.
    pub fn from_name(name: &str) -> Result<Self, DataError> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| DataError::Invalid {
                what: "overflow policy".into(),
                reason: format!("unknown `{name}` (valid: error, truncate, skip)"),
            })
    }
}

/// One document on one page.
#[derive(Clone, Debug)]
pub struct FittedPage {
    /// The page the model reads.
    pub page: Page,
    /// Byte range of the document shown on it.
    pub shown: Range<usize>,
    /// Characters of the document shown.
    pub shown_chars: usize,
    /// Characters left out (0 unless truncated; whitespace at the cut is not counted).
    pub truncated_chars: usize,
    /// Pages the whole document would need.
    pub pages_needed: usize,
}

impl FittedPage {
    /// The part of `text` (the document this page was fitted from) the page shows.
    pub fn shown_text<'t>(&self, text: &'t str) -> &'t str {
        &text[self.shown.clone()]
    }
}

/// The render settings whose page is what `mode` reads: the presets for the named modes
/// (Tiny, Small, Base, Large: a page as wide as the view and at most as tall; Gundam: 1280 x up
/// to 1920, two tiles wide and three tall), and for other sizes a page of the view's size with
/// the font scaled like the presets' (about 1.8% of the side, at least 6 px).
pub fn page_config_for(mode: &ImageMode) -> RenderConfig {
    if mode.crop_mode {
        if *mode == ImageMode::GUNDAM {
            return RenderConfig::preset(Preset::Gundam);
        }
        let t = mode.image_size;
        let font = (18.0 * t as f32 / 640.0).round().max(6.0);
        return RenderConfig::preset(Preset::Gundam)
            .with_font_size(font)
            .with_margins(Margins::uniform((32 * t / 640).max(2)))
            .with_page(PageMode::Grow {
                width: 2 * t,
                max_height: 3 * t,
                fit_width: false,
            });
    }
    let s = mode.image_size;
    for p in [Preset::Tiny, Preset::Small, Preset::Base, Preset::Large] {
        let c = RenderConfig::preset(p);
        if c.page_width() == s {
            return c;
        }
    }
    RenderConfig::preset(Preset::Base)
        .with_font_size((s as f32 * 0.0176).round().max(6.0))
        .with_margins(Margins::uniform((s / 32).max(2)))
        .with_page(PageMode::Grow {
            width: s,
            max_height: s,
            fit_width: false,
        })
}

/// Renders `text` onto one page; a document needing more pages is truncated to the first or
/// refused ([`DataError::Overflow`]) as `on_overflow` says (the caller skips on
/// [`OnOverflow::Skip`]). Empty or whitespace-only text is refused.
pub fn fit_document(
    renderer: &Renderer,
    text: &str,
    on_overflow: OnOverflow,
) -> Result<FittedPage, DataError> {
    if text.trim().is_empty() {
        return Err(DataError::Invalid {
            what: "document".into(),
            reason: "the text is empty".into(),
        });
    }
    let rendered = renderer.render(text)?;
    let pages_needed = rendered.pages.len();
    let shown_end = rendered
        .page_sources
        .first()
        .map(|r| r.end)
        .unwrap_or(text.len());
    let shown_end = if pages_needed <= 1 {
        text.len()
    } else {
        shown_end
    };
    let shown_chars = text[..shown_end].chars().count();
    let truncated_chars = text[shown_end..].trim().chars().count();
    if truncated_chars > 0 && on_overflow != OnOverflow::Truncate {
        return Err(DataError::Overflow {
            pages: pages_needed,
            shown_chars,
            total_chars: text.chars().count(),
        });
    }
    let page = rendered
        .pages
        .into_iter()
        .next()
        .ok_or_else(|| DataError::Invalid {
            what: "document".into(),
            reason: "rendered to no page".into(),
        })?;
    Ok(FittedPage {
        page,
        shown: 0..shown_end,
        shown_chars,
        truncated_chars,
        pages_needed,
    })
}

/// Renders `text` with the first of `layouts` (renderer, image mode) whose page holds the whole
/// document; when none does, the last one with `on_overflow`. Returns the page and the index
/// of the layout used. `--mode auto` is `[Base page in Base mode, Gundam page in Gundam mode]`:
/// short documents keep Base's 273 positions, long ones get a 1280 x 1920 page read as a
/// global view plus 2 x 3 tiles at native scale.
pub fn fit_first(
    layouts: &[(&Renderer, &ImageMode)],
    text: &str,
    on_overflow: OnOverflow,
) -> Result<(FittedPage, usize), DataError> {
    let last = layouts
        .len()
        .checked_sub(1)
        .ok_or_else(|| DataError::Invalid {
            what: "page layouts".into(),
            reason: "none given".into(),
        })?;
    for (i, (renderer, _)) in layouts.iter().enumerate() {
        let policy = if i == last {
            on_overflow
        } else {
            OnOverflow::Error
        };
        match fit_document(renderer, text, policy) {
            Err(DataError::Overflow { .. }) if i < last => continue,
            other => return other.map(|f| (f, i)),
        }
    }
    unreachable!("the last layout always returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_modes_get_their_presets() {
        assert_eq!(
            page_config_for(&ImageMode::BASE),
            RenderConfig::preset(Preset::Base)
        );
        assert_eq!(
            page_config_for(&ImageMode::TINY),
            RenderConfig::preset(Preset::Tiny)
        );
        assert_eq!(
            page_config_for(&ImageMode::GUNDAM),
            RenderConfig::preset(Preset::Gundam)
        );
        let c = page_config_for(&ImageMode::plain(256));
        assert_eq!((c.page_width(), c.page_max_height()), (256, 256));
        assert_eq!(c.font_size, 6.0);
        let c = page_config_for(&ImageMode::tiled(1024, 320, 320));
        assert_eq!((c.page_width(), c.page_max_height()), (640, 960));
    }

    #[test]
    fn long_documents_follow_the_policy() {
        let r = Renderer::from_preset(Preset::Tiny).unwrap();
        let words: Vec<String> = (0..3000).map(|i| format!("word{i}")).collect();
        let text = words.join(" ");
        let f = fit_document(&r, &text, OnOverflow::Truncate).unwrap();
        assert!(f.pages_needed > 1);
        assert!(f.truncated_chars > 0);
        // Shown and left-out characters account for the whole text but the space at the cut.
        let total = text.chars().count();
        assert!(total - f.shown_chars - f.truncated_chars <= 1);
        // The shown text is a prefix ending at a word boundary.
        let shown = f.shown_text(&text);
        assert!(shown.ends_with(' ') || text[shown.len()..].starts_with(' '));
        for p in [OnOverflow::Error, OnOverflow::Skip] {
            let e = fit_document(&r, &text, p).unwrap_err();
            assert!(matches!(e, DataError::Overflow { .. }), "{e}");
        }
        // A short document is shown whole whatever the policy.
        let f = fit_document(&r, "A short page.", OnOverflow::Error).unwrap();
        assert_eq!((f.truncated_chars, f.pages_needed), (0, 1));
        assert_eq!(f.shown_text("A short page."), "A short page.");
        assert!(fit_document(&r, "  \n ", OnOverflow::Truncate).is_err());
        assert_eq!(OnOverflow::from_name("skip").unwrap(), OnOverflow::Skip);
        // Auto: a short text stays on the first layout, a long one moves to the second.
        let big = Renderer::from_preset(Preset::Gundam).unwrap();
        let layouts = [(&r, &ImageMode::TINY), (&big, &ImageMode::GUNDAM)];
        assert_eq!(
            fit_first(&layouts, "Short.", OnOverflow::Error).unwrap().1,
            0
        );
        let medium: String = words[..800].join(" ");
        let (f, i) = fit_first(&layouts, &medium, OnOverflow::Error).unwrap();
        assert_eq!((i, f.truncated_chars), (1, 0));
        let (f, i) = fit_first(&layouts, &text, OnOverflow::Truncate).unwrap();
        assert!(i == 1 && f.truncated_chars > 0);
        let e = OnOverflow::from_name("drop").unwrap_err().to_string();
        assert!(e.contains("error, truncate, skip"), "{e}");
    }
}
