//! Collation: tokenised examples and their page images into one right-padded [`Batch`].

use candle_core::{Device, Tensor};

use crate::data::Prompt;
use crate::model::{Batch, ImageInput};

/// Right-pads `prompts` to the longest (pad id `pad`, attention 0, label -100) and stacks them.
///
/// `images[i]` are the images of prompt `i` in prompt order.
pub fn collate(
    prompts: &[Prompt],
    images: Vec<Vec<ImageInput>>,
    pad: u32,
    device: &Device,
) -> candle_core::Result<Batch> {
    let b = prompts.len();
    let l = prompts.iter().map(Prompt::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(b * l);
    let mut mask = Vec::with_capacity(b * l);
    let mut attn = Vec::with_capacity(b * l);
    let mut labels = Vec::with_capacity(b);
    for p in prompts {
        let pad_n = l - p.len();
        ids.extend(
            p.input_ids
                .iter()
                .copied()
                .chain(std::iter::repeat_n(pad, pad_n)),
        );
        mask.extend(
            p.image_mask
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0, pad_n)),
        );
        attn.extend(std::iter::repeat_n(1u8, p.len()).chain(std::iter::repeat_n(0, pad_n)));
        labels.push(
            p.labels
                .iter()
                .copied()
                .chain(std::iter::repeat_n(-100, pad_n))
                .collect(),
        );
    }
    let padded = prompts.iter().any(|p| p.len() != l);
    Ok(Batch {
        input_ids: Tensor::from_vec(ids, (b, l), device)?,
        image_mask: Tensor::from_vec(mask, (b, l), device)?,
        images,
        attention_mask: if padded {
            Some(Tensor::from_vec(attn, (b, l), device)?)
        } else {
            None
        },
        labels: Some(labels),
    })
}
