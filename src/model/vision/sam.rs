//! SAM ViT-B image encoder with DeepSeek-OCR's compressor (Kirillov et al., 2023,
//! <https://arxiv.org/abs/2304.02643>; DeepSeek-OCR, <https://arxiv.org/abs/2510.18234>).
//!
//! Patch embedding (16x16 conv) + absolute positions (bicubic-antialias resized for non-native
//! sizes), transformer blocks with windowed or global attention and decomposed relative
//! positions, the neck (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d), then `net_2` and `net_3`,
//! two stride-2 3x3 convs: a 1024x1024 page becomes 16x16 features of 1024 channels.

use candle_core::{DType, Tensor};

use super::attention::RelPosAttention;
use crate::model::config::{SamConfig, VisionConfig};
use crate::model::interp;
use crate::model::nn::{Conv2d, LayerNorm};
use crate::model::ops;
use crate::quant::QLinear;
use crate::weights::{Weights, WeightsError};

struct Block {
    norm1: LayerNorm,
    attn: RelPosAttention,
    norm2: LayerNorm,
    lin1: QLinear,
    lin2: QLinear,
    window: usize,
}

impl Block {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, h, w, _) = x.dims4()?;
        let shortcut = x;
        let y = self.norm1.forward(x)?;
        let y = if self.window > 0 {
            let (win, hp, wp) = window_partition(&y, self.window)?;
            let out = self.attn.forward(&win)?;
            window_unpartition(&out, self.window, (hp, wp), (h, w))?
        } else {
            self.attn.forward(&y)?
        };
        let x = (shortcut + y)?;
        let m = self.lin2.forward(&ops::gelu_erf(
            &self.lin1.forward(&self.norm2.forward(&x)?)?,
        )?)?;
        x + m
    }
}

/// `[B, H, W, C]` -> windows `[B * nW, win, win, C]`, zero-padding bottom/right first.
fn window_partition(x: &Tensor, win: usize) -> candle_core::Result<(Tensor, usize, usize)> {
    let (b, h, w, c) = x.dims4()?;
    let pad_h = (win - h % win) % win;
    let pad_w = (win - w % win) % win;
    let x = if pad_h > 0 || pad_w > 0 {
        x.pad_with_zeros(1, 0, pad_h)?.pad_with_zeros(2, 0, pad_w)?
    } else {
        x.clone()
    };
    let (hp, wp) = (h + pad_h, w + pad_w);
    let windows = x
        .reshape((b, hp / win, win, wp / win, win, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape((b * (hp / win) * (wp / win), win, win, c))?;
    Ok((windows, hp, wp))
}

/// Inverse of [`window_partition`], dropping the padding.
fn window_unpartition(
    windows: &Tensor,
    win: usize,
    (hp, wp): (usize, usize),
    (h, w): (usize, usize),
) -> candle_core::Result<Tensor> {
    let c = windows.dim(3)?;
    let b = windows.dim(0)? / (hp * wp / win / win);
    let x = windows
        .reshape((b, hp / win, wp / win, win, win, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape((b, hp, wp, c))?;
    if hp > h || wp > w {
        x.narrow(1, 0, h)?.narrow(2, 0, w)?.contiguous()
    } else {
        Ok(x)
    }
}

/// SAM's intermediate outputs (see [`Sam::forward_stages`]).
#[derive(Debug)]
pub struct SamStages {
    /// The neck's output (after the second LayerNorm2d), NCHW.
    pub neck: Tensor,
    /// `net_2`'s output.
    pub net2: Tensor,
    /// `net_3`'s output: what the encoders read.
    pub out: Tensor,
}

/// The SAM encoder and compressor (`model.sam_model`).
pub struct Sam {
    patch_embed: Conv2d,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    neck_conv1: Conv2d,
    neck_ln1: LayerNorm,
    neck_conv2: Conv2d,
    neck_ln2: LayerNorm,
    net_2: Conv2d,
    net_3: Conv2d,
    native_grid: usize,
}

impl Sam {
    /// Loads the encoder under `w` (the `model.sam_model` prefix).
    pub fn new(cfg: &VisionConfig, w: &Weights) -> Result<Self, WeightsError> {
        let s: &SamConfig = &cfg.width.sam_vit_b;
        let grid = cfg.image_size / s.patch_size;
        let dim = s.width;
        let head_dim = dim / s.heads;
        let mlp = (dim as f64 * s.mlp_ratio) as usize;
        let blocks = (0..s.layers)
            .map(|i| {
                let b = w.pp("blocks").pp(i);
                let window = if s.global_attn_indexes.contains(&i) {
                    0
                } else {
                    s.window_size
                };
                let rel = if window == 0 { grid } else { window };
                let a = b.pp("attn");
                Ok(Block {
                    norm1: LayerNorm::load(&b.pp("norm1"), dim, s.layer_norm_eps)?,
                    attn: RelPosAttention {
                        qkv: QLinear::load(&a.pp("qkv"), dim, 3 * dim, true)?,
                        proj: QLinear::load(&a.pp("proj"), dim, dim, true)?,
                        rel_pos_h: a.get(&[2 * rel - 1, head_dim], "rel_pos_h")?,
                        rel_pos_w: a.get(&[2 * rel - 1, head_dim], "rel_pos_w")?,
                        heads: s.heads,
                    },
                    norm2: LayerNorm::load(&b.pp("norm2"), dim, s.layer_norm_eps)?,
                    lin1: QLinear::load(&b.pp("mlp.lin1"), dim, mlp, true)?,
                    lin2: QLinear::load(&b.pp("mlp.lin2"), mlp, dim, true)?,
                    window,
                })
            })
            .collect::<Result<Vec<_>, WeightsError>>()?;
        let out = s.out_chans;
        let [c2, c3] = [s.downsample_channels[0], cfg.sam_output_channels()];
        Ok(Self {
            patch_embed: Conv2d::load(
                &w.pp("patch_embed.proj"),
                (3, dim, s.patch_size),
                s.patch_size,
                0,
                true,
            )?,
            pos_embed: w.get(&[1, grid, grid, dim], "pos_embed")?,
            blocks,
            neck_conv1: Conv2d::load(&w.pp("neck.0"), (dim, out, 1), 1, 0, false)?,
            neck_ln1: LayerNorm::load(&w.pp("neck.1"), out, s.layer_norm_eps)?,
            neck_conv2: Conv2d::load(&w.pp("neck.2"), (out, out, 3), 1, 1, false)?,
            neck_ln2: LayerNorm::load(&w.pp("neck.3"), out, s.layer_norm_eps)?,
            net_2: Conv2d::load(&w.pp("net_2"), (out, c2, 3), 2, 1, false)?,
            net_3: Conv2d::load(&w.pp("net_3"), (c2, c3, 3), 2, 1, false)?,
            native_grid: grid,
        })
    }

    /// Absolute positions for a `grid` x `grid` patch grid (`get_abs_pos_sam`): the table as
    /// stored for the native grid, bicubic-antialias resized otherwise (differentiably when the
    /// table is a training variable).
    ///
    /// # Shapes
    /// -> `[1, grid, grid, width]`.
    pub fn pos_for(&self, grid: usize) -> candle_core::Result<Tensor> {
        if grid == self.native_grid {
            return Ok(self.pos_embed.clone());
        }
        let (_, g, _, c) = self.pos_embed.dims4()?;
        if self.pos_embed.track_op() {
            // A trained table: resize through its matrix so the gradient reaches it.
            let table = self.pos_embed.reshape((g * g, c))?;
            return interp::resize_rows_differentiable(&table, grid * grid, |d, ch| {
                interp::bicubic_antialias(d, ch, (g, g), (grid, grid))
            })?
            .reshape((1, grid, grid, c));
        }
        let chw = self
            .pos_embed
            .to_dtype(DType::F32)?
            .permute((0, 3, 1, 2))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let out = interp::bicubic_antialias(&chw, c, (g, g), (grid, grid));
        Tensor::from_vec(out, (1, c, grid, grid), self.pos_embed.device())?
            .permute((0, 2, 3, 1))?
            .to_dtype(self.pos_embed.dtype())
    }

    /// Encodes images, keeping the neck's and `net_2`'s outputs.
    ///
    /// # Shapes
    /// `[B, 3, S, S]` -> neck `[B, out_chans, S/16, S/16]`, `net_2` `[B, C2, S/32, S/32]`,
    /// output `[B, C3, S/64, S/64]` (patch size 16).
    pub fn forward_stages(&self, x: &Tensor) -> candle_core::Result<SamStages> {
        let x = self.patch_embed.forward(x)?.permute((0, 2, 3, 1))?;
        let (_, gh, gw, _) = x.dims4()?;
        if gh != gw {
            candle_core::bail!("SAM expects square inputs, got a {gh}x{gw} patch grid");
        }
        let mut x = x.broadcast_add(&self.pos_for(gh)?)?;
        for blk in &self.blocks {
            x = blk.forward(&x)?;
        }
        let x = x.permute((0, 3, 1, 2))?;
        let x = self.neck_ln1.forward_nchw(&self.neck_conv1.forward(&x)?)?;
        let neck = self.neck_ln2.forward_nchw(&self.neck_conv2.forward(&x)?)?;
        let net2 = self.net_2.forward(&neck)?;
        let out = self.net_3.forward(&net2)?;
        Ok(SamStages { neck, net2, out })
    }

    /// Encodes images.
    ///
    /// # Shapes
    /// `[B, 3, S, S]` -> `[B, C3, S/64, S/64]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.forward_stages(x)?.out)
    }
}
