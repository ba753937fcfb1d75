//! A grid of page thumbnails in one image, for previews and side-by-side comparisons.

use image::{imageops, GrayImage, Luma, RgbImage};

use super::emit_png;
use crate::render::{encode_png, Page, PngCompression, RenderError};
use image::ExtendedColorType;

/// Pages laid side by side (scaled to a common height), `cols` per row, on a gray backdrop.
#[derive(Clone, Debug)]
pub struct PageGrid {
    image: RgbImage,
    pages: usize,
}

const GAP: u32 = 12;
const BACKDROP: [u8; 3] = [220, 220, 220];

impl PageGrid {
    /// Builds a grid no wider than `max_width` pixels (pages are never scaled up).
    pub fn new(pages: &[Page], cols: usize, max_width: u32) -> Self {
        let cols = cols.clamp(1, pages.len().max(1)) as u32;
        let tallest = pages.iter().map(Page::height).max().unwrap_or(1).max(1);
        let widest = pages.iter().map(Page::width).max().unwrap_or(1).max(1);
        // One scale for all pages keeps their relative sizes visible.
        let cell_w = (max_width.saturating_sub(GAP * (cols + 1)) / cols).max(16);
        let scale = (cell_w as f32 / widest as f32).min(1.0);
        let cell_h = ((tallest as f32 * scale).ceil() as u32).max(1);
        let cell_w = ((widest as f32 * scale).ceil() as u32).max(1);
        let rows = (pages.len() as u32).div_ceil(cols).max(1);
        let mut image = RgbImage::from_pixel(
            GAP + cols * (cell_w + GAP),
            GAP + rows * (cell_h + GAP),
            image::Rgb(BACKDROP),
        );
        for (i, page) in pages.iter().enumerate() {
            let (col, row) = (i as u32 % cols, i as u32 / cols);
            let w = ((page.width() as f32 * scale).round() as u32).max(1);
            let h = ((page.height() as f32 * scale).round() as u32).max(1);
            let thumb = if page.is_grayscale() {
                let gray = page.to_gray();
                let small = if scale < 1.0 {
                    imageops::thumbnail(&gray, w, h)
                } else {
                    gray
                };
                gray_to_rgb(&small)
            } else {
                let rgb = page.to_rgb();
                if scale < 1.0 {
                    imageops::thumbnail(&rgb, w, h)
                } else {
                    rgb
                }
            };
            let x = GAP + col * (cell_w + GAP);
            let y = GAP + row * (cell_h + GAP);
            imageops::replace(&mut image, &thumb, i64::from(x), i64::from(y));
        }
        Self {
            image,
            pages: pages.len(),
        }
    }

    /// The composed image.
    pub fn image(&self) -> &RgbImage {
        &self.image
    }

    /// PNG bytes of the grid.
    pub fn to_png(&self) -> Result<Vec<u8>, RenderError> {
        let (w, h) = self.image.dimensions();
        encode_png(
            self.image.as_raw(),
            w,
            h,
            ExtendedColorType::Rgb8,
            PngCompression::Fast,
        )
    }

    pub(super) fn show_with_text(&self, text: &str) {
        emit_png(self.to_png(), text);
    }

    /// evcxr hook: shows the grid inline.
    pub fn evcxr_display(&self) {
        let (w, h) = self.image.dimensions();
        self.show_with_text(&format!("PageGrid({} pages, {w}x{h})", self.pages));
    }
}

fn gray_to_rgb(gray: &GrayImage) -> RgbImage {
    RgbImage::from_fn(gray.width(), gray.height(), |x, y| {
        let Luma([v]) = *gray.get_pixel(x, y);
        image::Rgb([v, v, v])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{Preset, Renderer};

    #[test]
    fn grid_keeps_relative_page_sizes_and_never_upscales() {
        let small = Renderer::from_preset(Preset::Tiny)
            .unwrap()
            .render("tiny")
            .unwrap();
        let big = Renderer::from_preset(Preset::Base)
            .unwrap()
            .render("base")
            .unwrap();
        let pages = [small.pages[0].clone(), big.pages[0].clone()];
        let grid = PageGrid::new(&pages, 2, 800);
        let (w, h) = grid.image().dimensions();
        assert!(w <= 800, "width {w}");
        // Two cells of the widest page scaled to fit.
        let cell = (800 - GAP * 3) / 2;
        assert_eq!(w, GAP * 3 + 2 * cell);
        assert!(h > GAP * 2);
        // The page background (white) shows inside the first cell, the backdrop outside.
        assert_eq!(grid.image().get_pixel(GAP + 1, GAP + 1).0, [255, 255, 255]);
        assert_eq!(grid.image().get_pixel(1, 1).0, BACKDROP);
        let one = PageGrid::new(&pages[..1], 3, 4000);
        assert_eq!(one.image().width(), 512 + 2 * GAP, "no upscaling");
        let empty = PageGrid::new(&[], 3, 400);
        assert!(empty.to_png().is_ok());
    }
}
