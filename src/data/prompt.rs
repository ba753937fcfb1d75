//! Prompt building as the reference `infer()` does it with the `plain` template: BOS, then the
//! prompt text split at each `<image>`, every image expanded to its image positions (one id
//! repeated, flagged in the image mask), and for training the target text followed by EOS.
//! Labels are `-100` on BOS, prompt and image positions and the target ids (EOS included)
//! elsewhere.

use super::tokenizer::TextCodec;
use super::DataError;

/// The image placeholder in prompt text.
pub const IMAGE_TAG: &str = "<image>";

/// Special ids a prompt needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialIds {
    /// Beginning of sequence.
    pub bos: u32,
    /// End of sequence (appended to targets).
    pub eos: u32,
    /// The `<image>` position id.
    pub image: u32,
}

impl SpecialIds {
    /// DeepSeek-OCR's: BOS 0, EOS 1, `<image>` 128815.
    pub const DEEPSEEK_OCR: Self = Self {
        bos: 0,
        eos: 1,
        image: 128815,
    };
}

/// A tokenised example.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prompt {
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// 1 at image positions.
    pub image_mask: Vec<u8>,
    /// Training labels (`-100` = not scored), aligned with `input_ids`.
    pub labels: Vec<i64>,
}

impl Prompt {
    /// Starts with BOS.
    pub fn new(ids: SpecialIds) -> Self {
        let mut p = Self::default();
        p.push_context(&[ids.bos]);
        p
    }

    fn push_context(&mut self, ids: &[u32]) {
        self.input_ids.extend_from_slice(ids);
        self.image_mask.extend(std::iter::repeat_n(0, ids.len()));
        self.labels.extend(std::iter::repeat_n(-100, ids.len()));
    }

    /// Appends prompt text ids (not scored).
    pub fn text_ids(mut self, ids: &[u32]) -> Self {
        self.push_context(ids);
        self
    }

    /// Appends `positions` image positions of id `image_id`.
    pub fn image(mut self, positions: usize, image_id: u32) -> Self {
        self.input_ids
            .extend(std::iter::repeat_n(image_id, positions));
        self.image_mask.extend(std::iter::repeat_n(1, positions));
        self.labels.extend(std::iter::repeat_n(-100, positions));
        self
    }

    /// Appends target ids (scored).
    pub fn target_ids(mut self, ids: &[u32]) -> Self {
        self.input_ids.extend_from_slice(ids);
        self.image_mask.extend(std::iter::repeat_n(0, ids.len()));
        self.labels.extend(ids.iter().map(|&i| i as i64));
        self
    }

    /// Builds `[BOS] + prompt (with images) [+ target + EOS]` from text.
    ///
    /// `image_positions[i]` is the size of the i-th `<image>` of `prompt`; their counts must
    /// agree.
    pub fn from_text(
        codec: &dyn TextCodec,
        prompt: &str,
        image_positions: &[usize],
        target: Option<&str>,
        ids: SpecialIds,
    ) -> Result<Self, DataError> {
        let splits: Vec<&str> = prompt.split(IMAGE_TAG).collect();
        if splits.len() - 1 != image_positions.len() {
            return Err(DataError::Invalid {
                what: "prompt".into(),
                reason: format!(
                    "{} `<image>` tag(s) but {} image(s)",
                    splits.len() - 1,
                    image_positions.len()
                ),
            });
        }
        let mut p = Self::new(ids);
        for (i, text) in splits.iter().enumerate() {
            p = p.text_ids(&codec.encode(text)?);
            if let Some(&n) = image_positions.get(i) {
                p = p.image(n, ids.image);
            }
        }
        if let Some(t) = target {
            let mut tids = codec.encode(t)?;
            tids.push(ids.eos);
            p = p.target_ids(&tids);
        }
        Ok(p)
    }

    /// Number of positions.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether there is no position.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Scored positions.
    pub fn target_len(&self) -> usize {
        self.labels.iter().filter(|&&l| l != -100).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared fixture's layout: BOS, 21 image slots, 6 prompt ids, 7 target ids with EOS.
    #[test]
    fn fixture_layout() {
        let ids = SpecialIds {
            bos: 0,
            eos: 1,
            image: 500,
        };
        let p = Prompt::new(ids)
            .image(21, 500)
            .text_ids(&[10, 57, 203, 88, 301, 12])
            .target_ids(&[402, 77, 155, 9, 260, 33, 1]);
        assert_eq!(p.len(), 35);
        assert_eq!(p.image_mask.iter().filter(|&&m| m == 1).count(), 21);
        assert_eq!(p.labels[..28], [-100; 28]);
        assert_eq!(p.labels[28..], [402, 77, 155, 9, 260, 33, 1]);
    }
}
