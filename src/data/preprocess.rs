//! Page images to DeepSeek-OCR inputs, as the reference `infer()` prepares them.
//!
//! - Without crop mode: views of at most 640 px are resized to a square (aspect not kept), then
//!   padded (a no-op for squares); larger views are padded with `ImageOps.pad` (aspect kept,
//!   centred on grey 127).
//! - Crop mode (Gundam): the global view is `ImageOps.pad` to `base_size`; if either side
//!   exceeds the mode's `crop_threshold` (640 px, as the reference `infer()`), InternVL's `dynamic_preprocess` also cuts the page into a grid of
//!   `image_size` tiles (the grid with the closest aspect ratio among `min..=max` tiles).
//! - Pixels: `ToTensor` (`/255`) then `Normalize(0.5, 0.5)`, in f32.
//! - Image positions: `q * (q + 1) + 1` for the global view (`q = ceil(size / 16 / 4)`), plus
//!   `(q_t * cols + 1) * (q_t * rows)` for the tiles.
//! - DeepSeek-OCR 2 ([`ImageMode::OCR2`]): the same resize, pad and tiling code with 768 tiles
//!   (2 to 6, pages over 768 px) and a 1024 global view; `q * q + 1 + q_t^2 * tiles` positions
//!   (no newlines). The global view's odd padding follows the original code's `ImageOps.pad`
//!   (offset rounded half to even), not transformers' `diff // 2`.

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::resample::{pad, resize_bicubic};
use super::DataError;

/// Pad colour: `tuple(int(x * 255) for x in mean)` with mean 0.5.
pub const PAD_COLOR: [u8; 3] = [127, 127, 127];

/// How a page is turned into views.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImageMode {
    /// Global view size in crop mode.
    pub base_size: u32,
    /// View size without crop mode; tile size in crop mode.
    pub image_size: u32,
    /// Whether large pages are also cut into tiles.
    pub crop_mode: bool,
    /// Fewest tiles of a grid.
    pub min_crops: u32,
    /// Most tiles of a grid (9 in the HF code, 6 in the vLLM one).
    pub max_crops: u32,
    /// In crop mode, pages with a side longer than this many pixels are also cut into tiles
    /// (640 in the reference `infer()`, whatever the tile size).
    #[serde(default = "default_crop_threshold")]
    pub crop_threshold: u32,
    /// Whether every grid row of a view is followed by `image_newline` (DeepSeek-OCR); false
    /// for DeepSeek-OCR 2, whose views are flat lists of query outputs.
    #[serde(default = "yes")]
    pub row_newlines: bool,
    /// The model's SAM patch size in pixels (16 for both real models): a view of `s` px gives
    /// `ceil(s / patch / 4)` encoder outputs per side. Set from the model by
    /// `VisionConfig::image_modes`.
    #[serde(default = "default_patch")]
    pub patch_size: u32,
}

fn default_crop_threshold() -> u32 {
    640
}

fn default_patch() -> u32 {
    16
}

fn yes() -> bool {
    true
}

impl ImageMode {
    /// Tiny: 512, 64 visual tokens.
    pub const TINY: Self = Self::plain(512);
    /// Small: 640, 100 visual tokens.
    pub const SMALL: Self = Self::plain(640);
    /// Base: 1024, 256 visual tokens (273 positions).
    pub const BASE: Self = Self::plain(1024);
    /// Large: 1280, 400 visual tokens.
    pub const LARGE: Self = Self::plain(1280);
    /// Gundam: a 1024 global view plus 640 tiles.
    pub const GUNDAM: Self = Self {
        base_size: 1024,
        image_size: 640,
        crop_mode: true,
        min_crops: 2,
        max_crops: 9,
        crop_threshold: 640,
        row_newlines: true,
        patch_size: 16,
    };
    /// DeepSeek-OCR 2's crop mode: a 1024 global view plus 768 tiles (2 to 6) for pages with a
    /// side over 768 px, no newline positions.
    pub const OCR2: Self = Self::ocr2(1024, 768);

    /// A single square view of `size` px.
    pub const fn plain(size: u32) -> Self {
        Self {
            base_size: size,
            image_size: size,
            crop_mode: false,
            min_crops: 2,
            max_crops: 9,
            crop_threshold: 640,
            row_newlines: true,
            patch_size: 16,
        }
    }

    /// DeepSeek-OCR 2's crop mode with a `base` px global view and `tile` px tiles (2 to 6),
    /// tiling pages with a side longer than `tile` px, without newline positions.
    pub const fn ocr2(base: u32, tile: u32) -> Self {
        Self {
            base_size: base,
            image_size: tile,
            crop_mode: true,
            min_crops: 2,
            max_crops: 6,
            crop_threshold: tile,
            row_newlines: false,
            patch_size: 16,
        }
    }

    /// Gundam-style tiling with `tile` px tiles and a `base` px global view; pages with a side
    /// longer than `threshold` px are tiled (the reference uses 640 for every tile size).
    pub const fn tiled(base: u32, tile: u32, threshold: u32) -> Self {
        Self {
            base_size: base,
            image_size: tile,
            crop_mode: true,
            min_crops: 2,
            max_crops: 9,
            crop_threshold: threshold,
            row_newlines: true,
            patch_size: 16,
        }
    }

    /// The same mode tiling pages with a side longer than `px` pixels.
    pub const fn with_crop_threshold(mut self, px: u32) -> Self {
        self.crop_threshold = px;
        self
    }

    /// By name: `tiny`, `small`, `base`, `large`, `gundam`, `ocr2` (DeepSeek-OCR 2),
    /// `ocr2:GLOBAL/TILE` (its crop mode at other view sizes, e.g. `ocr2:128/96` for the tiny
    /// fixture), or a size in pixels (`256`) for a single square view of that size (a multiple
    /// of 64).
    pub fn from_name(name: &str) -> Result<Self, DataError> {
        if let Some(sizes) = name.strip_prefix("ocr2:") {
            let bad = || DataError::Invalid {
                what: "image mode".into(),
                reason: format!(
                    "`{name}`: expected ocr2:GLOBAL/TILE in pixels, e.g. ocr2:1024/768"
                ),
            };
            let (b, t) = sizes.split_once('/').ok_or_else(bad)?;
            let (b, t) = (b.parse::<u32>(), t.parse::<u32>());
            return match (b, t) {
                (Ok(b), Ok(t)) if b > 0 && t > 0 => Ok(Self::ocr2(b, t)),
                _ => Err(bad()),
            };
        }
        if let Ok(px) = name.parse::<u32>() {
            if px == 0 || px % 64 != 0 {
                return Err(DataError::Invalid {
                    what: "image mode".into(),
                    reason: format!("view size {px} is not a positive multiple of 64"),
                });
            }
            return Ok(Self::plain(px));
        }
        Ok(match name {
            "tiny" => Self::TINY,
            "small" => Self::SMALL,
            "base" => Self::BASE,
            "large" => Self::LARGE,
            "gundam" => Self::GUNDAM,
            "ocr2" => Self::OCR2,
            other => {
                return Err(DataError::Invalid {
                    what: "image mode".into(),
                    reason: format!(
                        "unknown mode `{other}` (tiny, small, base, large, gundam, ocr2)"
                    ),
                })
            }
        })
    }

    fn queries(&self, size: u32) -> usize {
        (size as usize / self.patch_size.max(1) as usize).div_ceil(4)
    }

    /// The same mode for a model whose SAM patches are `px` pixels.
    pub const fn with_patch_size(mut self, px: u32) -> Self {
        self.patch_size = px;
        self
    }

    /// Queries per side of the global view and of a tile, and whether `grid` has tiles.
    fn sides(&self, (cols, rows): (usize, usize)) -> (usize, usize, bool) {
        let global = if self.crop_mode {
            self.base_size
        } else {
            self.image_size
        };
        (
            self.queries(global),
            self.queries(self.image_size),
            cols > 1 || rows > 1,
        )
    }

    /// Encoder output tokens (without newline and separator positions) for a tile grid of
    /// `cols` x `rows` (`(1, 1)` = no tiles).
    pub fn visual_tokens(&self, (cols, rows): (usize, usize)) -> usize {
        let (q, qt, tiled) = self.sides((cols, rows));
        q * q + if tiled { qt * qt * cols * rows } else { 0 }
    }

    /// Image positions in the prompt for a tile grid of `cols` x `rows` (`(1, 1)` = no tiles).
    pub fn image_positions(&self, (cols, rows): (usize, usize)) -> usize {
        let (q, qt, tiled) = self.sides((cols, rows));
        if !self.row_newlines {
            return self.visual_tokens((cols, rows)) + 1;
        }
        q * (q + 1)
            + 1
            + if tiled {
                (qt * cols + 1) * (qt * rows)
            } else {
                0
            }
    }
}

/// One preprocessed page.
#[derive(Clone, Debug)]
pub struct PreparedImage {
    /// Global view `[3, S, S]`, normalised.
    pub global: Tensor,
    /// Tiles `[P, 3, s, s]` and the grid (`cols`, `rows`), in crop mode for large pages.
    pub tiles: Option<(Tensor, (usize, usize))>,
    /// The tile grid (`(1, 1)` without tiles), as `images_spatial_crop`.
    pub grid: (usize, usize),
    /// Positions the image takes in the prompt.
    pub positions: usize,
}

/// `ToTensor()` + `Normalize(0.5, 0.5)`: `[3, H, W]` f32.
pub fn to_tensor(img: &RgbImage, device: &Device) -> candle_core::Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0f32; 3 * w * h];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * w * h + i] = (p.0[c] as f32 / 255.0 - 0.5) / 0.5;
        }
    }
    Tensor::from_vec(data, (3, h, w), device)
}

/// The candidate grids `(cols, rows)` with `min <= cols * rows <= max`, sorted by tile count.
///
/// The reference sorts a Python `set` with a stable sort, so grids with the same tile count keep
/// CPython's set iteration order, which decides ties in aspect ratio. For the two settings the
/// reference code uses (2..=9 in the HF code, 2..=6 in the vLLM one) the order below is CPython
/// 3.11's, printed by `sorted(set(...), key=lambda x: x[0] * x[1])`; other settings order ties
/// by columns.
fn target_ratios(min: u32, max: u32) -> Vec<(u32, u32)> {
    const HF_2_9: [(u32, u32); 22] = [
        (1, 2),
        (2, 1),
        (3, 1),
        (1, 3),
        (2, 2),
        (4, 1),
        (1, 4),
        (5, 1),
        (1, 5),
        (1, 6),
        (6, 1),
        (3, 2),
        (2, 3),
        (7, 1),
        (1, 7),
        (4, 2),
        (2, 4),
        (1, 8),
        (8, 1),
        (1, 9),
        (3, 3),
        (9, 1),
    ];
    const VLLM_2_6: [(u32, u32); 13] = [
        (1, 2),
        (2, 1),
        (3, 1),
        (1, 3),
        (4, 1),
        (1, 4),
        (2, 2),
        (1, 5),
        (5, 1),
        (6, 1),
        (2, 3),
        (1, 6),
        (3, 2),
    ];
    match (min, max) {
        (2, 9) => HF_2_9.to_vec(),
        (2, 6) => VLLM_2_6.to_vec(),
        _ => {
            let mut v: Vec<(u32, u32)> = (1..=max)
                .flat_map(|i| (1..=max).map(move |j| (i, j)))
                .filter(|&(i, j)| i * j >= min && i * j <= max)
                .collect();
            v.sort_by_key(|&(i, j)| (i * j, i));
            v
        }
    }
}

/// InternVL's `find_closest_aspect_ratio`.
fn closest_grid(width: u32, height: u32, tile: u32, ratios: &[(u32, u32)]) -> (u32, u32) {
    let aspect = width as f64 / height as f64;
    let area = width as f64 * height as f64;
    let mut best_diff = f64::INFINITY;
    let mut best = (1, 1);
    for &(i, j) in ratios {
        let diff = (aspect - i as f64 / j as f64).abs();
        if diff < best_diff {
            best_diff = diff;
            best = (i, j);
        } else if diff == best_diff && area > 0.5 * (tile * tile) as f64 * (i * j) as f64 {
            best = (i, j);
        }
    }
    best
}

/// `dynamic_preprocess`: resize to the chosen grid and cut row-major tiles.
pub fn dynamic_tiles(img: &RgbImage, mode: &ImageMode) -> (Vec<RgbImage>, (u32, u32)) {
    let ratios = target_ratios(mode.min_crops, mode.max_crops);
    let (cols, rows) = closest_grid(img.width(), img.height(), mode.image_size, &ratios);
    let t = mode.image_size;
    let resized = resize_bicubic(img, t * cols, t * rows);
    let tiles = (0..cols * rows)
        .map(|i| {
            let (x, y) = ((i % cols) * t, (i / cols) * t);
            image::imageops::crop_imm(&resized, x, y, t, t).to_image()
        })
        .collect();
    (tiles, (cols, rows))
}

/// One page cut into the views the model reads, before conversion to tensors (a third of the
/// memory of [`PreparedImage`]: one byte per channel instead of four).
#[derive(Clone, Debug)]
pub struct PageViews {
    /// The global view.
    pub global: RgbImage,
    /// The tiles, row-major (empty without tiling).
    pub tiles: Vec<RgbImage>,
    /// The tile grid (`(1, 1)` without tiles), as `images_spatial_crop`.
    pub grid: (usize, usize),
    /// Positions the image takes in the prompt.
    pub positions: usize,
}

impl PageViews {
    /// Bytes of pixel data held.
    pub fn bytes(&self) -> usize {
        self.global.as_raw().len() + self.tiles.iter().map(|t| t.as_raw().len()).sum::<usize>()
    }

    /// The normalised tensors of the views on `device`.
    pub fn to_tensors(&self, device: &Device) -> Result<PreparedImage, DataError> {
        let tensor_err = |e: candle_core::Error| DataError::Invalid {
            what: "image tensor".into(),
            reason: e.to_string(),
        };
        let global = to_tensor(&self.global, device).map_err(tensor_err)?;
        let tiles = if self.tiles.is_empty() {
            None
        } else {
            let t = self
                .tiles
                .iter()
                .map(|t| to_tensor(t, device))
                .collect::<candle_core::Result<Vec<_>>>()
                .and_then(|v| Tensor::stack(&v, 0))
                .map_err(tensor_err)?;
            Some((t, self.grid))
        };
        Ok(PreparedImage {
            global,
            tiles,
            grid: self.grid,
            positions: self.positions,
        })
    }
}

/// Cuts one page into the views `mode` reads (resized, padded, tiled).
pub fn prepare_views(img: &RgbImage, mode: &ImageMode) -> Result<PageViews, DataError> {
    if img.width() == 0 || img.height() == 0 {
        return Err(DataError::Invalid {
            what: "image".into(),
            reason: format!("empty image ({}x{})", img.width(), img.height()),
        });
    }
    if !mode.crop_mode {
        let s = mode.image_size;
        let global = if s <= 640 {
            pad(&resize_bicubic(img, s, s), s, s, PAD_COLOR)
        } else {
            pad(img, s, s, PAD_COLOR)
        };
        return Ok(PageViews {
            global,
            tiles: Vec::new(),
            grid: (1, 1),
            positions: mode.image_positions((1, 1)),
        });
    }
    let global = pad(img, mode.base_size, mode.base_size, PAD_COLOR);
    let threshold = mode.crop_threshold;
    let (tiles, grid) = if img.width() <= threshold && img.height() <= threshold {
        (Vec::new(), (1, 1))
    } else {
        let (tiles, (c, r)) = dynamic_tiles(img, mode);
        if c > 1 || r > 1 {
            (tiles, (c as usize, r as usize))
        } else {
            (Vec::new(), (1, 1))
        }
    };
    Ok(PageViews {
        global,
        tiles,
        grid,
        positions: mode.image_positions(grid),
    })
}

/// Prepares one page for the model ([`prepare_views`], then [`PageViews::to_tensors`]).
pub fn prepare_image(
    img: &RgbImage,
    mode: &ImageMode,
    device: &Device,
) -> Result<PreparedImage, DataError> {
    prepare_views(img, mode)?.to_tensors(device)
}

/// Decodes image bytes (PNG, JPEG, ...) to RGB, with a typed error for corrupt data.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<RgbImage, DataError> {
    image::load_from_memory(bytes)
        .map(|i| i.to_rgb8())
        .map_err(|e| DataError::Invalid {
            what: format!("image {name}"),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_match_the_spec_table() {
        assert_eq!(ImageMode::BASE.image_positions((1, 1)), 273);
        assert_eq!(ImageMode::SMALL.image_positions((1, 1)), 111);
        assert_eq!(ImageMode::TINY.image_positions((1, 1)), 73);
        assert_eq!(ImageMode::LARGE.image_positions((1, 1)), 421);
        // Gundam 2x3 tiles: 273 + (10*2 + 1) * (10*3).
        assert_eq!(ImageMode::GUNDAM.image_positions((2, 3)), 273 + 21 * 30);
        assert_eq!(ImageMode::plain(256).image_positions((1, 1)), 21);
    }

    /// DeepSeek-OCR 2's token budget (its spec's table): 256 + 1 + 144 per tile.
    #[test]
    fn ocr2_positions_have_no_newlines() {
        let m = ImageMode::OCR2;
        assert_eq!(m.image_positions((1, 1)), 257);
        for (grid, want) in [((2, 1), 545), ((1, 3), 689), ((2, 2), 833), ((3, 2), 1121)] {
            assert_eq!(m.image_positions(grid), want, "{grid:?}");
        }
        // 768-px pages are not tiled; one pixel more is.
        let small = RgbImage::from_pixel(768, 700, image::Rgb([9, 9, 9]));
        assert_eq!(prepare_views(&small, &m).unwrap().grid, (1, 1));
        let wide = RgbImage::from_pixel(1600, 769, image::Rgb([9, 9, 9]));
        let v = prepare_views(&wide, &m).unwrap();
        assert_eq!((v.grid, v.tiles.len(), v.positions), ((2, 1), 2, 545));
        assert_eq!(ImageMode::from_name("ocr2").unwrap(), m);
    }

    /// Other view sizes by name, and positions from the model's patch size: the tiny OCR 2
    /// fixture's 2-px patches on 128 / 96 px views keep the real 16x16 / 12x12 query grids.
    #[test]
    fn ocr2_sizes_by_name_and_patch_size() {
        let m = ImageMode::from_name("ocr2:128/96").unwrap();
        assert_eq!(m, ImageMode::ocr2(128, 96));
        assert_eq!(m.with_patch_size(2).image_positions((2, 1)), 545);
        // With 16-px patches: 2x2 queries per view (ceil(96 / 16 / 4) = 2).
        assert_eq!(m.image_positions((2, 1)), 4 + 1 + 2 * 4);
        for bad in [
            "ocr2:",
            "ocr2:128",
            "ocr2:0/96",
            "ocr2:a/96",
            "ocr2:128/96/2",
        ] {
            assert!(ImageMode::from_name(bad).is_err(), "{bad}");
        }
    }

    /// The crop threshold belongs to the mode: small tiles can tile pages under 640 px.
    #[test]
    fn tiling_threshold_comes_from_the_mode() {
        let img = RgbImage::from_pixel(300, 420, image::Rgb([200, 200, 200]));
        let default = ImageMode::tiled(256, 128, 640);
        assert_eq!(prepare_views(&img, &default).unwrap().grid, (1, 1));
        let small = default.with_crop_threshold(128);
        let v = prepare_views(&img, &small).unwrap();
        assert_eq!(v.grid, (2, 3));
        assert_eq!(v.tiles.len(), 6);
        assert!(v.tiles.iter().all(|t| t.dimensions() == (128, 128)));
        assert_eq!(v.positions, small.image_positions((2, 3)));
        // Gundam keeps the reference's 640.
        assert_eq!(ImageMode::GUNDAM.crop_threshold, 640);
        let mode: ImageMode = serde_json::from_str(
            r#"{"base_size":1024,"image_size":640,"crop_mode":true,"min_crops":2,"max_crops":9}"#,
        )
        .unwrap();
        assert_eq!(mode, ImageMode::GUNDAM);
    }

    #[test]
    fn grids_follow_aspect_ratio() {
        let r = target_ratios(2, 9);
        assert_eq!(r.len(), 22);
        assert!(r.windows(2).all(|w| w[0].0 * w[0].1 <= w[1].0 * w[1].1));
        // A 1280x1920 page (2:3) gets 2 columns x 3 rows.
        assert_eq!(closest_grid(1280, 1920, 640, &r), (2, 3));
        // A 1000x1000 page: 1:1 ties (2,2) and (3,3); area 1e6 > 0.5*640^2*4 = 819200 picks
        // (2,2), then 1e6 < 0.5*640^2*9 keeps it.
        assert_eq!(closest_grid(1000, 1000, 640, &r), (2, 2));
    }

    #[test]
    fn normalisation_is_exact() {
        let img = RgbImage::from_pixel(2, 1, image::Rgb([0, 127, 255]));
        let t = to_tensor(&img, &Device::Cpu).unwrap();
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(
            v,
            vec![
                -1.0,
                -1.0,
                (127.0 / 255.0 - 0.5) / 0.5,
                (127.0 / 255.0 - 0.5) / 0.5,
                1.0,
                1.0
            ]
        );
    }

    #[test]
    fn corrupt_bytes_give_a_typed_error() {
        let err = decode_image(b"not an image", "page.png").unwrap_err();
        assert!(err.to_string().contains("page.png"), "{err}");
    }
}
