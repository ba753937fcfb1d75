//! The core of SAM's attention fused into one CPU op for frozen weights (inference, and the
//! frozen vision tower of LoRA fine-tuning): from the `qkv` projection's output to the
//! attention output, nothing of `[heads, queries, keys]` size is materialised beyond one block
//! of 64 queries per task, and no permuted copy of q, k or v is made (the products read them
//! in place with strides).
//!
//! Per query block of one (image, head): `S = q k^T`, then each row
//! `softmax(S / sqrt(d) + rel_h[key row] + rel_w[key column])` with the decomposed relative
//! terms computed from the unscaled `q`, then `S v` divided by each row's softmax sum. The same
//! arithmetic as [`super::attention::RelPosAttention`]'s composed path (which stays the path
//! with gradients) except for the order of some sums, the softmax's division applied after the
//! product, and an `exp` that vectorises, within 2.5e-7 of libm's (see `fastmath`).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape};
use rayon::prelude::*;

use crate::model::fastmath::{self, dispatch_avx2};

/// Queries per task.
const BLOCK: usize = 64;

/// `[B, H, W, 3C]` qkv (channels ordered `(q|k|v, head, dim)`), `rel_h` `[H, H, d]` and
/// `rel_w` `[W, W, d]` (see `rel_pos`) -> `[B, H, W, C]` attention output before `proj`.
pub(super) struct RelPosCore {
    /// Attention heads.
    pub(super) heads: usize,
}

/// A strided f32 matrix view for [`product`] (columns of the left factor must be adjacent).
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    offset: usize,
    row_stride: usize,
    col_stride: usize,
}

impl View<'_> {
    /// Whether every element of a `rows` x `cols` matrix lies inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || self.offset + (rows - 1) * self.row_stride + (cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst[m, n] = lhs[m, k] rhs[k, n]`, `dst` row-major and contiguous.
fn product(m: usize, n: usize, k: usize, dst: &mut [f32], lhs: View, rhs: View) {
    assert!(dst.len() >= m * n && lhs.fits(m, k) && rhs.fits(k, n) && lhs.col_stride == 1);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst[..m * n].fill(0.0);
        return;
    }
    // SAFETY: the asserts above keep every element read or written inside its slice; `dst`
    // is exclusively borrowed, so it overlaps neither input.
    unsafe {
        crate::quant::kernel::gemm_f32(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            n as isize,
            lhs.data.as_ptr().add(lhs.offset),
            lhs.row_stride as isize,
            rhs.data.as_ptr().add(rhs.offset),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            gemm::Parallelism::None,
        )
    }
}

fn f32_slice<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<std::borrow::Cow<'a, [f32]>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("SAM attention: {what} not contiguous")))?;
    Ok(match s {
        CpuStorage::F32(v) => std::borrow::Cow::Borrowed(&v[a..b]),
        CpuStorage::BF16(v) => {
            std::borrow::Cow::Owned(v[a..b].iter().map(|x| x.to_f32()).collect())
        }
        CpuStorage::F16(v) => std::borrow::Cow::Owned(v[a..b].iter().map(|x| x.to_f32()).collect()),
        CpuStorage::F64(v) => std::borrow::Cow::Owned(v[a..b].iter().map(|&x| x as f32).collect()),
        other => candle_core::bail!("SAM attention: unsupported dtype {:?}", other.dtype()),
    })
}

dispatch_avx2! {
    /// One query's logits in place: `row[ky * w + kx] = row[..] * scale + rel_h[ky] + rel_w[kx]`
    /// with `rel_h = q . rh_t` and `rel_w = q . rw_t` (the tables transposed to `[d, keys]`, so
    /// the products vectorise over keys), and their largest value in `max_out`.
    fn row_logits(
        row: &mut [f32],
        q: &[f32],
        rh_t: &[f32],
        rw_t: &[f32],
        rel: &mut [f32],
        scale: f32,
        max_out: &mut f32
    ) {
        let (h, w) = (rh_t.len() / q.len(), rw_t.len() / q.len());
        let (rel_h, rel_w) = rel.split_at_mut(h);
        rel_h.fill(0.0);
        rel_w.fill(0.0);
        for (c, &qc) in q.iter().enumerate() {
            for (o, &t) in rel_h.iter_mut().zip(&rh_t[c * h..(c + 1) * h]) {
                *o += qc * t;
            }
            for (o, &t) in rel_w.iter_mut().zip(&rw_t[c * w..(c + 1) * w]) {
                *o += qc * t;
            }
        }
        let mut m = [f32::NEG_INFINITY; 8];
        for (keys, &bias_h) in row.chunks_exact_mut(w).zip(&*rel_h) {
            let mut chunks = keys.chunks_exact_mut(8).zip(rel_w.chunks_exact(8));
            for (ks, bw) in &mut chunks {
                for ((s, &bias_w), m) in ks.iter_mut().zip(bw).zip(m.iter_mut()) {
                    *s = *s * scale + bias_h + bias_w;
                    *m = if *s > *m { *s } else { *m };
                }
            }
            let done = w - w % 8;
            for (s, &bias_w) in keys[done..].iter_mut().zip(&rel_w[done..]) {
                *s = *s * scale + bias_h + bias_w;
                m[0] = if *s > m[0] { *s } else { m[0] };
            }
        }
        *max_out = m.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    }
}

/// `[size, size, d]` relative terms (see `rel_pos`) -> `[size, d, size]`.
fn transpose_tables(t: &[f32], size: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0f32; t.len()];
    for (y, block) in t.chunks_exact(size * d).enumerate() {
        for (k, v) in block.chunks_exact(d).enumerate() {
            for (c, &x) in v.iter().enumerate() {
                out[(y * d + c) * size + k] = x;
            }
        }
    }
    out
}

thread_local! {
    /// Each worker's `[queries, keys]` block (reused: a fresh one per task would be mapped
    /// and unmapped by the allocator every time).
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl CustomOp3 for RelPosCore {
    fn name(&self) -> &'static str {
        "deepsynth-sam-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, h, w, c3) = l1.shape().dims4()?;
        let nh = self.heads;
        if c3 % (3 * nh) != 0 {
            candle_core::bail!("SAM attention: {c3} qkv channels for {nh} heads");
        }
        let (c, n) = (c3 / 3, h * w);
        let hd = c / nh;
        if l2.shape().dims() != [h, h, hd] || l3.shape().dims() != [w, w, hd] {
            candle_core::bail!(
                "SAM attention: relative terms {:?} / {:?} for a {h}x{w} grid of {hd}-dim heads",
                l2.shape(),
                l3.shape()
            );
        }
        let qkv = f32_slice(s1, l1, "qkv")?;
        let rh = f32_slice(s2, l2, "rel_h")?;
        let rw = f32_slice(s3, l3, "rel_w")?;
        let (rh_t, rw_t) = (transpose_tables(&rh, h, hd), transpose_tables(&rw, w, hd));
        let (qkv, rh_t, rw_t) = (&qkv[..], &rh_t[..], &rw_t[..]);
        let scale = 1.0 / (hd as f32).sqrt();
        let block = BLOCK.min(n.max(1));
        let tasks: Vec<(usize, usize)> = (0..b * nh)
            .flat_map(|bh| (0..n).step_by(block).map(move |r0| (bh, r0)))
            .collect();
        let parts: Vec<Vec<f32>> = tasks
            .par_iter()
            .map(|&(bh, r0)| {
                let rows = block.min(n - r0);
                let base = (bh / nh) * n * c3 + (bh % nh) * hd;
                let view = |offset, row_stride, col_stride| View {
                    data: qkv,
                    offset,
                    row_stride,
                    col_stride,
                };
                let q = view(base + r0 * c3, c3, 1);
                let kt = view(base + c, 1, c3);
                let v = view(base + 2 * c, c3, 1);
                SCORES.with_borrow_mut(|s| {
                    if s.len() < rows * n {
                        s.resize(rows * n, 0.0);
                    }
                    let s = &mut s[..rows * n];
                    product(rows, n, hd, s, q, kt);
                    let mut rel = vec![0f32; h + w];
                    let mut inv = vec![0f32; rows];
                    for (r, row) in s.chunks_exact_mut(n).enumerate() {
                        let i = r0 + r;
                        let (y, x) = (i / w, i % w);
                        let qi = &qkv[q.offset + r * c3..q.offset + r * c3 + hd];
                        let (rh_y, rw_x) = (
                            &rh_t[y * hd * h..(y + 1) * hd * h],
                            &rw_t[x * hd * w..(x + 1) * hd * w],
                        );
                        let (mut max, mut sum) = (0.0, 0.0);
                        row_logits(row, qi, rh_y, rw_x, &mut rel, scale, &mut max);
                        fastmath::exp_sum(row, max, &mut sum);
                        inv[r] = 1.0 / sum;
                    }
                    let mut o = vec![0f32; rows * hd];
                    let p = View {
                        data: s,
                        offset: 0,
                        row_stride: n,
                        col_stride: 1,
                    };
                    product(rows, hd, n, &mut o, p, v);
                    // The softmax's normalisation, applied to the product (d values a row
                    // instead of n).
                    for (o, &inv) in o.chunks_exact_mut(hd).zip(&inv) {
                        o.iter_mut().for_each(|v| *v *= inv);
                    }
                    o
                })
            })
            .collect();
        let mut out = vec![0f32; b * n * c];
        for (&(bh, r0), o) in tasks.iter().zip(&parts) {
            let (bi, head) = (bh / nh, bh % nh);
            for (r, src) in o.chunks_exact(hd).enumerate() {
                let at = (bi * n + r0 + r) * c + head * hd;
                out[at..at + hd].copy_from_slice(src);
            }
        }
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(out),
            DType::BF16 => CpuStorage::BF16(out.into_iter().map(half::bf16::from_f32).collect()),
            DType::F16 => CpuStorage::F16(out.into_iter().map(half::f16::from_f32).collect()),
            other => candle_core::bail!("SAM attention: unsupported dtype {other:?}"),
        };
        Ok((out, Shape::from((b, h, w, c))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::super::attention::RelPosAttention;
    use crate::quant::QLinear;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    fn tensor(shape: &[usize], seed: u64) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(noise(n, seed), shape, &Device::Cpu).unwrap()
    }

    /// The fused core against the composed ops (taken when the input tracks gradients), on
    /// window-sized and global grids, with relative tables of the grid's size and resized ones.
    #[test]
    fn fused_core_matches_the_composed_attention() {
        for (case, &(b, side, c, heads, table_rows)) in [
            (3, 4, 32, 4, 7),
            (2, 7, 48, 3, 13),
            (1, 9, 32, 2, 11),
            (1, 16, 64, 4, 31),
        ]
        .iter()
        .enumerate()
        {
            let seed = 100 * case as u64;
            let hd = c / heads;
            let attn = RelPosAttention {
                qkv: QLinear::dense(
                    tensor(&[3 * c, c], seed + 1),
                    Some(tensor(&[3 * c], seed + 2)),
                )
                .unwrap(),
                proj: QLinear::dense(tensor(&[c, c], seed + 3), Some(tensor(&[c], seed + 4)))
                    .unwrap(),
                rel_pos_h: tensor(&[table_rows, hd], seed + 5),
                rel_pos_w: tensor(&[table_rows, hd], seed + 6),
                heads,
            };
            let x = tensor(&[b, side, side, c], seed + 7);
            let fused = attn.forward(&x).unwrap();
            let var = Var::from_tensor(&x).unwrap();
            let composed = attn.forward(var.as_tensor()).unwrap();
            assert!(composed.track_op() && !fused.track_op());
            assert_eq!(fused.dims(), &[b, side, side, c]);
            let max_abs =
                |t: &Tensor| -> f32 { t.abs().unwrap().max_all().unwrap().to_scalar().unwrap() };
            let diff = max_abs(&(&fused - &composed).unwrap());
            let scale = max_abs(&composed);
            assert!(
                diff < 2e-5 * scale.max(1.0),
                "case {case}: {diff} (scale {scale})"
            );
        }
    }
}
