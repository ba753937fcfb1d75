//! The full-size tests' decoder pass (shared via `#[path]`): a prompt of BOS, one page's image
//! rows and three text ids, logits at the last position only.

use candle_core::{DType, Device, Tensor};
use deepsynth::model::{DeepseekOcr, ForwardOptions};

/// The last position's logits (`[1, 1, vocab]`, f32) after BOS, the `n` image rows of
/// `feats` and the text ids 10, 11, 12.
pub fn last_logits_after_page(m: &DeepseekOcr, feats: &[Option<Tensor>], n: usize) -> Tensor {
    let mut ids = vec![0u32];
    ids.extend(std::iter::repeat_n(m.config().image_token_id, n));
    ids.extend([10, 11, 12]);
    let mut mask = vec![0u8];
    mask.extend(std::iter::repeat_n(1u8, n));
    mask.extend([0u8; 3]);
    let it = Tensor::from_slice(&ids, (1, ids.len()), &Device::Cpu).unwrap();
    let mt = Tensor::from_slice(&mask, (1, mask.len()), &Device::Cpu).unwrap();
    let e = m.merge_embeddings(&it, &mt, feats).unwrap();
    let opts = ForwardOptions {
        last_only: true,
        ..Default::default()
    };
    let out = m.forward_embeds(&e, None, None, opts).unwrap();
    out.decoder.logits.to_dtype(DType::F32).unwrap()
}
