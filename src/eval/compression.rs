//! Compression statistics: how many text tokens each visual token stands for.
//!
//! DeepSeek-OCR ([arXiv 2510.18234](https://arxiv.org/abs/2510.18234)) encodes a page into
//! `(size / 64)^2` visual tokens per view (SAM's 16x patching, then two stride-2 convolutions);
//! in the decoder's sequence each row of a view is followed by `image_newline` and the views by
//! one `view_seperator`. The paper reports ~97% OCR precision below 10x compression and ~60% at
//! 20x, so this ratio is the first thing to look at when choosing a render preset.

use serde::{Deserialize, Serialize};

/// A DeepSeek-OCR vision mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VisionMode {
    /// 512x512, no tiles.
    Tiny,
    /// 640x640, no tiles.
    Small,
    /// 1024x1024, no tiles.
    Base,
    /// 1280x1280, no tiles.
    Large,
    /// 1024 global view plus a `cols` x `rows` grid of 640 tiles (no tiles when both are 0).
    Gundam {
        /// Tile columns.
        cols: usize,
        /// Tile rows.
        rows: usize,
    },
}

impl VisionMode {
    fn global_side(self) -> usize {
        match self {
            VisionMode::Tiny => 512,
            VisionMode::Small => 640,
            VisionMode::Base | VisionMode::Gundam { .. } => 1024,
            VisionMode::Large => 1280,
        }
    }

    fn tiles(self) -> (usize, usize) {
        match self {
            VisionMode::Gundam { cols, rows } => (cols, rows),
            _ => (0, 0),
        }
    }

    /// Encoder output tokens (without newline and separator positions).
    pub fn visual_tokens(self) -> usize {
        let q = self.global_side() / 64;
        let (w, h) = self.tiles();
        q * q + w * h * 100
    }

    /// Sequence positions the image takes in the decoder prompt: every row of the global view
    /// plus its newline, the tile grid rows (10 per tile row) plus newlines, and the separator.
    pub fn image_positions(self) -> usize {
        let q = self.global_side() / 64;
        let (w, h) = self.tiles();
        let tiles = if w * h > 0 {
            (10 * w + 1) * (10 * h)
        } else {
            0
        };
        q * (q + 1) + 1 + tiles
    }
}

/// Text tokens per visual token for one document.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compression {
    /// Tokens of the text (with the model's tokenizer).
    pub text_tokens: usize,
    /// Visual tokens of its pages.
    pub visual_tokens: usize,
    /// `text_tokens / visual_tokens` (0 with no visual token).
    pub ratio: f64,
}

impl Compression {
    /// The ratio for a text of `text_tokens` rendered on `pages` pages of `mode`.
    pub fn new(text_tokens: usize, mode: VisionMode, pages: usize) -> Self {
        let visual_tokens = mode.visual_tokens() * pages;
        let ratio = if visual_tokens == 0 {
            0.0
        } else {
            text_tokens as f64 / visual_tokens as f64
        };
        Self {
            text_tokens,
            visual_tokens,
            ratio,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_counts_match_the_paper_and_reference_code() {
        // shared/specs/deepseek-ocr.md: Base 256 visual / 273 positions, Small 100/111,
        // Tiny 64/73, Large 400/421, Gundam n*100 + 256.
        let cases = [
            (VisionMode::Tiny, 64, 73),
            (VisionMode::Small, 100, 111),
            (VisionMode::Base, 256, 273),
            (VisionMode::Large, 400, 421),
        ];
        for (mode, visual, positions) in cases {
            assert_eq!(
                (mode.visual_tokens(), mode.image_positions()),
                (visual, positions),
                "{mode:?}"
            );
        }
        let gundam = VisionMode::Gundam { cols: 2, rows: 3 };
        assert_eq!(gundam.visual_tokens(), 6 * 100 + 256);
        assert_eq!(gundam.image_positions(), 273 + 21 * 30);
        assert_eq!(
            VisionMode::Gundam { cols: 0, rows: 0 }.image_positions(),
            273
        );
        let c = Compression::new(2560, VisionMode::Base, 1);
        assert_eq!(c.ratio, 10.0);
        assert_eq!(Compression::new(5, VisionMode::Base, 0).ratio, 0.0);
    }
}
