//! The core of SAM's attention fused into one CPU op for frozen weights (inference, and the
//! frozen vision tower of LoRA fine-tuning): from the `qkv` projection's output to the
//! attention output, nothing of `[heads, queries, keys]` size is materialised beyond one block
//! of 64 queries per task, and no permuted copy of q, k or v is made (the products read them
//! in place with strides).
//!
//! Per query block of one (image, head): `S = q k^T`, then each row
//! `softmax(S / sqrt(d) + rel_h[key row] + rel_w[key column])` with the decomposed relative
//! terms computed from the unscaled `q`, then `S v`. The same arithmetic as
//! [`super::attention::RelPosAttention`]'s composed path (which stays the path with gradients)
//! except for the order of some sums and an `exp` that vectorises, within 2.5e-7 of libm's.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape};
use rayon::prelude::*;

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

/// `e^x` to about 1 ulp (Cephes' `expf` polynomial after `x = k ln 2 + r`), written without
/// branches or calls so that row loops vectorise; inputs below -87.3 give 2^-126 (~1e-38), not
/// 0, which no softmax row can notice.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + ROUND;
    // t's low mantissa bits hold k itself (no float-to-int conversion, which would not
    // vectorise with Rust's saturating `as`).
    let ki = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let k = t - ROUND;
    let r = x - k * 0.693_359_4 - k * -2.121_944_4e-4;
    let p = 1.987_569_2e-4;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((ki + 127) << 23) as u32)
}

/// Softmax of one row in place: [`softmax_lanes`] compiled for AVX2 where the CPU has it (the
/// same arithmetic in the same order, so the same result), else for the baseline.
fn softmax(row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { softmax_avx2(row) };
        return;
    }
    softmax_lanes(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_avx2(row: &mut [f32]) {
    softmax_lanes(row)
}

/// Softmax of one row in place, with 32 partial maxima and sums (four independent vector
/// chains, so the loops run at throughput, not at the latency of one accumulator).
#[inline(always)]
fn softmax_lanes(row: &mut [f32]) {
    const L: usize = 32;
    let mut m = [f32::NEG_INFINITY; L];
    let mut chunks = row.chunks_exact(L);
    for c in &mut chunks {
        for (m, &v) in m.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&m)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = [0f32; L];
    let mut chunks = row.chunks_exact_mut(L);
    for c in &mut chunks {
        for (s, v) in s.iter_mut().zip(c) {
            *v = exp(*v - max);
            *s += *v;
        }
    }
    let mut sum: f32 = s.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Dot product with eight partial sums (vectorises).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((acc, x), y) in acc.iter_mut().zip(x).zip(y) {
            *acc += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
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
        let (qkv, rh, rw) = (&qkv[..], &rh[..], &rw[..]);
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
                    let (mut rel_h, mut rel_w) = (vec![0f32; h], vec![0f32; w]);
                    for (r, row) in s.chunks_exact_mut(n).enumerate() {
                        let i = r0 + r;
                        let (y, x) = (i / w, i % w);
                        let qi = &qkv[q.offset + r * c3..q.offset + r * c3 + hd];
                        for (ky, o) in rel_h.iter_mut().enumerate() {
                            *o = dot(qi, &rh[(y * h + ky) * hd..(y * h + ky + 1) * hd]);
                        }
                        for (kx, o) in rel_w.iter_mut().enumerate() {
                            *o = dot(qi, &rw[(x * w + kx) * hd..(x * w + kx + 1) * hd]);
                        }
                        for (keys, &bias_h) in row.chunks_exact_mut(w).zip(&rel_h) {
                            for (s, &bias_w) in keys.iter_mut().zip(&rel_w) {
                                *s = *s * scale + bias_h + bias_w;
                            }
                        }
                        softmax(row);
                    }
                    let mut o = vec![0f32; rows * hd];
                    let p = View {
                        data: s,
                        offset: 0,
                        row_stride: n,
                        col_stride: 1,
                    };
                    product(rows, hd, n, &mut o, p, v);
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

    #[test]
    fn fast_exp_is_within_two_ulp_of_libm() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let x = -90.0 + i as f32 * 0.00045;
            let (got, want) = (super::exp(x), x.exp());
            if want > 1e-37 {
                worst = worst.max((got - want).abs() / want);
            } else {
                assert!(got < 2e-37, "{x}: {got}");
            }
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        let mut row = vec![
            0.5f32, -3.0, 2.0, 1e-3, -100.0, 7.0, 0.0, 1.0, 3.0, -2.0, 4.0,
        ];
        let want: Vec<f32> = {
            let m = 7.0f32;
            let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        };
        super::softmax(&mut row);
        for (g, w) in row.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6 * w.max(1e-6), "{g} vs {w}");
        }
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
