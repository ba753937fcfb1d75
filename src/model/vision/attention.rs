//! SAM's multi-head attention with decomposed relative positions (MViTv2,
//! <https://arxiv.org/abs/2112.01526>): `softmax(q k^T / sqrt(d) + R_h(q) + R_w(q)) v`, the
//! relative terms computed from the unscaled `q`.

use candle_core::{DType, IndexOp, Tensor};

use crate::model::interp;
use crate::model::ops;
use crate::quant::QLinear;

/// Queries attended per chunk, bounding the `[heads, chunk, keys]` logits (global attention on a
/// 64x64 grid has 4096 keys).
const QUERY_CHUNK: usize = 1024;

/// Attention over a `[B, H, W, C]` grid (one window or the whole grid).
pub(super) struct RelPosAttention {
    pub(super) qkv: QLinear,
    pub(super) proj: QLinear,
    pub(super) rel_pos_h: Tensor,
    pub(super) rel_pos_w: Tensor,
    pub(super) heads: usize,
}

/// `get_rel_pos` for equal query and key sizes: `[size, size, C]` with entry
/// `[i, j] = table[i - j + size - 1]`, the table linearly resized to `2 * size - 1` rows first.
fn rel_pos(table: &Tensor, size: usize) -> candle_core::Result<Tensor> {
    let want = 2 * size - 1;
    let (rows, c) = table.dims2()?;
    let table = if rows == want {
        table.clone()
    } else if table.track_op() {
        // A trained table: resize through its matrix so the gradient reaches it.
        interp::resize_rows_differentiable(table, want, |d, ch| {
            interp::linear_1d(d, ch, rows, want)
        })?
    } else {
        // [L, C] -> per channel over L -> [want, C]
        let t = table
            .to_dtype(DType::F32)?
            .t()?
            .contiguous()?
            .flatten_all()?;
        let out = interp::linear_1d(&t.to_vec1::<f32>()?, c, rows, want);
        Tensor::from_vec(out, (c, want), table.device())?
            .t()?
            .contiguous()?
            .to_dtype(table.dtype())?
    };
    let idx: Vec<u32> = (0..size)
        .flat_map(|i| (0..size).map(move |j| (i + size - 1 - j) as u32))
        .collect();
    let idx = Tensor::from_vec(idx, size * size, table.device())?;
    table.index_select(&idx, 0)?.reshape((size, size, c))
}

impl RelPosAttention {
    /// # Shapes
    /// `[B, H, W, C]` -> `[B, H, W, C]`.
    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let nh = self.heads;
        let hd = c / nh;
        let n = h * w;
        let bn = b * nh;
        let qkv = self.qkv.forward(x)?;
        let tables_frozen = !self.rel_pos_h.track_op() && !self.rel_pos_w.track_op();
        if qkv.device().is_cpu() && !qkv.track_op() && tables_frozen && qkv.dtype() != DType::F64 {
            // Frozen: the fused core (same arithmetic, nothing of [heads, queries, keys] size).
            let core = super::fused_attention::RelPosCore { heads: nh };
            let rh = rel_pos(&self.rel_pos_h, h)?.contiguous()?;
            let rw = rel_pos(&self.rel_pos_w, w)?.contiguous()?;
            let out = qkv.contiguous()?.apply_op3_no_bwd(&rh, &rw, &core)?;
            return self.proj.forward(&out);
        }
        // [B, HW, 3, nh, hd] -> [3, B*nh, HW, hd]
        let qkv = qkv
            .reshape((b, n, 3, nh, hd))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?
            .reshape((3, bn, n, hd))?;
        let q = qkv.i(0)?;
        let k = qkv.i(1)?;
        let v = qkv.i(2)?;

        // Decomposed relative positions from the unscaled q.
        let rh = rel_pos(&self.rel_pos_h, h)?; // [H, K_h, hd]
        let rw = rel_pos(&self.rel_pos_w, w)?; // [W, K_w, hd]
        let rq = q.reshape((bn, h, w, hd))?;
        // rel_h[b, y, x, k] = sum_c rq[b, y, x, c] * rh[y, k, c]
        let rel_h = rq
            .permute((1, 0, 2, 3))?
            .contiguous()?
            .reshape((h, bn * w, hd))?
            .matmul(&rh.transpose(1, 2)?)? // [H, bn*W, K_h]
            .reshape((h, bn, w, h))?
            .permute((1, 0, 2, 3))?; // [bn, H, W, K_h]
                                     // rel_w[b, y, x, k] = sum_c rq[b, y, x, c] * rw[x, k, c]
        let rel_w = rq
            .permute((2, 0, 1, 3))?
            .contiguous()?
            .reshape((w, bn * h, hd))?
            .matmul(&rw.transpose(1, 2)?)? // [W, bn*H, K_w]
            .reshape((w, bn, h, w))?
            .permute((1, 2, 0, 3))?; // [bn, H, W, K_w]
        let rel_h = rel_h.reshape((bn, n, h))?;
        let rel_w = rel_w.reshape((bn, n, w))?;

        let scale = 1.0 / (hd as f64).sqrt();
        let kt = k.t()?;
        let mut outs = Vec::with_capacity(n.div_ceil(QUERY_CHUNK));
        let mut start = 0;
        while start < n {
            let len = QUERY_CHUNK.min(n - start);
            let logits = q.narrow(1, start, len)?.matmul(&kt)?; // [bn, len, n]
            let rh = rel_h.narrow(1, start, len)?.contiguous()?;
            let rw = rel_w.narrow(1, start, len)?.contiguous()?;
            let bias = rh
                .unsqueeze(3)?
                .broadcast_add(&rw.unsqueeze(2)?)?
                .reshape((bn, len, n))?;
            let p = ops::softmax_last_dim(&((logits * scale)? + bias)?)?;
            outs.push(p.matmul(&v)?);
            start += len;
        }
        let out = Tensor::cat(&outs, 1)?; // [bn, HW, hd]
        let out = out
            .reshape((b, nh, h, w, hd))?
            .permute((0, 2, 3, 1, 4))?
            .reshape((b, h, w, c))?;
        self.proj.forward(&out)
    }
}
