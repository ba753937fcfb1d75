//! Rasterisation: glyph coverage bitmaps (cached at quarter-pixel x offsets) composited onto a
//! page's coverage plane with "over" blending.

use ab_glyph::{Font, GlyphId};

use super::cache::Bitmap;
use super::{Page, PageLayout, RenderCache, Renderer};

/// Horizontal subpixel positions per pixel.
const SUBPIXEL: f32 = 4.0;

impl Renderer {
    /// Draws one laid-out page, reusing `cache`.
    pub fn rasterize_with(&self, page: &PageLayout, cache: &mut RenderCache) -> Page {
        cache.bind(self.id);
        let (w, h) = (page.width as usize, page.height as usize);
        let mut coverage = vec![0u8; w * h];
        for g in &page.glyphs {
            let mut xi = g.x.floor();
            let mut frac = ((g.x - xi) * SUBPIXEL).round() as u32;
            if frac == SUBPIXEL as u32 {
                xi += 1.0;
                frac = 0;
            }
            let key = (u32::from(g.font) << 24) | (u32::from(g.glyph) << 8) | frac;
            let bitmap = cache.bitmap(key, || self.glyph_bitmap(g.font, g.glyph, frac));
            blit(
                &mut coverage,
                w,
                h,
                xi as i32 + bitmap.left,
                g.baseline + bitmap.top,
                bitmap,
            );
        }
        Page::from_coverage(
            page.width,
            page.height,
            coverage,
            self.config.foreground,
            self.config.background,
        )
    }

    fn glyph_bitmap(&self, font: u8, glyph: u16, frac: u32) -> Bitmap {
        let f = self.chain.fonts()[usize::from(font)].font();
        let positioned = GlyphId(glyph).with_scale_and_position(
            self.scales[usize::from(font)],
            ab_glyph::point(frac as f32 / SUBPIXEL, 0.0),
        );
        let Some(outline) = f.outline_glyph(positioned) else {
            return Bitmap::default();
        };
        let b = outline.px_bounds();
        let (width, height) = (b.width() as usize, b.height() as usize);
        let mut data = vec![0u8; width * height];
        outline.draw(|x, y, c| {
            if let Some(px) = data.get_mut(y as usize * width + x as usize) {
                *px = (c.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
            }
        });
        Bitmap {
            left: b.min.x as i32,
            top: b.min.y as i32,
            width,
            height,
            data,
        }
    }
}

/// Composites `bm` at (x, y) onto the coverage plane, clipped to the page.
fn blit(dst: &mut [u8], w: usize, h: usize, x: i32, y: i32, bm: &Bitmap) {
    let x0 = x.max(0);
    let y0 = y.max(0);
    let x1 = (x + bm.width as i32).min(w as i32);
    let y1 = (y + bm.height as i32).min(h as i32);
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let cols = (x1 - x0) as usize;
    let sx = (x0 - x) as usize;
    for row in y0..y1 {
        let src_start = (row - y) as usize * bm.width + sx;
        let src = &bm.data[src_start..src_start + cols];
        let dst_start = row as usize * w + x0 as usize;
        for (d, &s) in dst[dst_start..dst_start + cols].iter_mut().zip(src) {
            *d = over(*d, s);
        }
    }
}

/// Alpha "over" for coverage: a + b - a*b, in 8-bit with rounding.
#[inline]
fn over(a: u8, b: u8) -> u8 {
    let (a, b) = (u32::from(a), u32::from(b));
    ((a * 255 + (255 - a) * b + 127) / 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_blends_like_alpha_compositing() {
        assert_eq!(over(0, 0), 0);
        assert_eq!(over(0, 200), 200);
        assert_eq!(over(255, 7), 255);
        assert_eq!(over(128, 128), 192); // 0.502 + 0.502 * 0.498 = 0.752 -> 191.8
    }

    #[test]
    fn blit_clips_at_every_edge() {
        let bm = Bitmap {
            left: 0,
            top: 0,
            width: 3,
            height: 3,
            data: vec![255; 9],
        };
        let mut page = vec![0u8; 16];
        blit(&mut page, 4, 4, -1, -1, &bm);
        blit(&mut page, 4, 4, 3, 3, &bm);
        blit(&mut page, 4, 4, 10, 0, &bm);
        let inked: usize = page.iter().filter(|&&p| p == 255).count();
        assert_eq!(inked, 4 + 1);
        assert_eq!(page[0], 255);
        assert_eq!(page[15], 255);
    }
}
