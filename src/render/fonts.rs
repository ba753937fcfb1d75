//! Fonts: the bundled fallback chain (see `fonts/README.md`) and loading font files.
//!
//! Each character is looked up in the chain's fonts in order; the first font whose `cmap`
//! maps it wins. Sizes are em sizes in pixels, converted per font, so glyphs from different
//! fonts in the chain share the same em.

use std::path::Path;
use std::sync::Arc;

use ab_glyph::{Font, FontArc, GlyphId, PxScale};

use super::RenderError;

/// DejaVu Sans 2.37 (Bitstream Vera licence): the default font.
pub static DEJAVU_SANS: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");
/// Noto Sans Hebrew (SIL OFL 1.1).
pub static NOTO_SANS_HEBREW: &[u8] = include_bytes!("../../fonts/NotoSansHebrew-Regular.ttf");
/// Droid Sans Fallback (Apache 2.0): CJK.
pub static DROID_SANS_FALLBACK: &[u8] = include_bytes!("../../fonts/DroidSansFallback.ttf");

/// One font of a chain with the name it is reported under.
#[derive(Clone)]
pub struct ChainFont {
    name: Arc<str>,
    font: FontArc,
}

impl ChainFont {
    /// Parses a font from bytes (TTF/OTF, or one face of a TTC via `index`).
    pub fn from_bytes(name: &str, bytes: Vec<u8>, index: u32) -> Result<Self, RenderError> {
        let font = ab_glyph::FontVec::try_from_vec_and_index(bytes, index).map_err(|e| {
            RenderError::FontParse {
                path: name.into(),
                reason: e.to_string(),
            }
        })?;
        Self::checked(name, FontArc::new(font))
    }

    fn from_static(name: &str, bytes: &'static [u8]) -> Result<Self, RenderError> {
        let font = FontArc::try_from_slice(bytes).map_err(|e| RenderError::FontParse {
            path: name.into(),
            reason: e.to_string(),
        })?;
        Self::checked(name, font)
    }

    /// Reads and parses a font file; errors name the path.
    pub fn from_file(path: &Path) -> Result<Self, RenderError> {
        let bytes = std::fs::read(path).map_err(|source| RenderError::FontRead {
            path: path.to_owned(),
            source,
        })?;
        let name = path.display().to_string();
        Self::from_bytes(&name, bytes, 0)
    }

    fn checked(name: &str, font: FontArc) -> Result<Self, RenderError> {
        let usable = font.units_per_em().is_some_and(|u| u > 0.0)
            && font.height_unscaled() > 0.0
            && font.glyph_count() > 0;
        if !usable {
            return Err(RenderError::FontParse {
                path: name.into(),
                reason: "no glyphs or zero units-per-em/line height".into(),
            });
        }
        Ok(Self {
            name: name.into(),
            font,
        })
    }

    /// The name used in reports (file name for bundled fonts, path for loaded ones).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parsed font.
    pub fn font(&self) -> &FontArc {
        &self.font
    }

    /// ab_glyph's scale for an em size of `em_px` pixels.
    pub fn scale_for_em(&self, em_px: f32) -> PxScale {
        let upem = self.font.units_per_em().unwrap_or(1000.0);
        PxScale::from(em_px * self.font.height_unscaled() / upem)
    }
}

impl std::fmt::Debug for ChainFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainFont")
            .field("name", &self.name)
            .finish()
    }
}

/// An ordered list of fonts searched per character.
#[derive(Clone, Debug)]
pub struct FontChain {
    fonts: Vec<ChainFont>,
}

impl FontChain {
    /// The bundled chain: DejaVu Sans, Noto Sans Hebrew, Droid Sans Fallback.
    pub fn bundled() -> Result<Self, RenderError> {
        Ok(Self {
            fonts: vec![
                ChainFont::from_static("DejaVuSans.ttf", DEJAVU_SANS)?,
                ChainFont::from_static("NotoSansHebrew-Regular.ttf", NOTO_SANS_HEBREW)?,
                ChainFont::from_static("DroidSansFallback.ttf", DROID_SANS_FALLBACK)?,
            ],
        })
    }

    /// A chain of the given font files, in order.
    pub fn from_files<P: AsRef<Path>>(paths: &[P]) -> Result<Self, RenderError> {
        let fonts = paths
            .iter()
            .map(|p| ChainFont::from_file(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_fonts(fonts)
    }

    /// A chain of already loaded fonts (at least one).
    pub fn from_fonts(fonts: Vec<ChainFont>) -> Result<Self, RenderError> {
        if fonts.is_empty() {
            return Err(RenderError::InvalidConfig {
                field: "fonts",
                reason: "a font chain needs at least one font".into(),
            });
        }
        if fonts.len() > usize::from(u8::MAX) {
            return Err(RenderError::InvalidConfig {
                field: "fonts",
                reason: format!("{} fonts; at most 255 are supported", fonts.len()),
            });
        }
        Ok(Self { fonts })
    }

    /// Puts `font` first, so it takes precedence over the rest of the chain.
    pub fn with_primary(mut self, font: ChainFont) -> Result<Self, RenderError> {
        self.fonts.insert(0, font);
        Self::from_fonts(self.fonts)
    }

    /// Adds `font` at the end of the chain.
    pub fn with_fallback(mut self, font: ChainFont) -> Result<Self, RenderError> {
        self.fonts.push(font);
        Self::from_fonts(self.fonts)
    }

    /// The fonts, primary first.
    pub fn fonts(&self) -> &[ChainFont] {
        &self.fonts
    }

    /// The first font that maps `ch`, as (index in chain, glyph id).
    pub fn lookup(&self, ch: char) -> Option<(u8, GlyphId)> {
        self.fonts.iter().enumerate().find_map(|(i, f)| {
            let id = f.font.glyph_id(ch);
            // Chain length is capped at 255 in `from_fonts`.
            (id.0 != 0).then_some((i as u8, id))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_chain_falls_through_per_script() {
        let chain = FontChain::bundled().unwrap();
        assert_eq!(chain.lookup('a').unwrap().0, 0);
        assert_eq!(chain.lookup('Ж').unwrap().0, 0);
        // Hebrew cantillation (etnahta) is missing in DejaVu Sans and comes from Noto Sans Hebrew.
        assert_eq!(chain.lookup('\u{0591}').map(|(i, _)| i), Some(1));
        assert_eq!(chain.lookup('中').unwrap().0, 2);
        assert_eq!(chain.lookup('\u{10FFFD}'), None);
    }

    #[test]
    fn missing_and_corrupt_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.ttf");
        let err = ChainFont::from_file(&missing).unwrap_err();
        assert!(matches!(err, RenderError::FontRead { .. }));
        assert!(err.to_string().contains("nope.ttf"), "{err}");

        let corrupt = dir.path().join("corrupt.ttf");
        std::fs::write(&corrupt, b"definitely not a font").unwrap();
        let err = ChainFont::from_file(&corrupt).unwrap_err();
        assert!(matches!(err, RenderError::FontParse { .. }));
        assert!(err.to_string().contains("corrupt.ttf"), "{err}");

        let truncated = dir.path().join("truncated.ttf");
        std::fs::write(&truncated, &DEJAVU_SANS[..64]).unwrap();
        let err = ChainFont::from_file(&truncated).unwrap_err();
        assert!(err.to_string().contains("truncated.ttf"), "{err}");
    }
}
