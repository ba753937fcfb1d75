//! Fused decode + matmul on the CPU, for weights stored packed ([`Nf4Tensor`], or 16-bit
//! floats in [`HalfMatrix`]) and multiplied in f32.
//!
//! The weight is never decoded whole: each rayon task dequantises one tile (a few rows of
//! `W` for `x W^T`, a slab of columns for `G W`) into its own buffer and multiplies it with
//! `gemm`'s SIMD kernels, writing a disjoint part of the output. Peak extra memory is one tile
//! per thread.

use rayon::prelude::*;

use super::half::HalfMatrix;
use super::nf4::{Nf4Tensor, QuantDtype};

/// A packed `[N, K]` matrix that decodes row-major runs of itself to f32.
pub trait Tiles: Sync {
    /// `(N, K)`.
    fn dims(&self) -> (usize, usize);
    /// Decodes elements `start..start + out.len()` (row-major), applying `round` in order.
    fn decode(&self, start: usize, out: &mut [f32], round: &[QuantDtype]);
}

impl Tiles for Nf4Tensor {
    fn dims(&self) -> (usize, usize) {
        (self.shape[0], self.shape[1])
    }
    fn decode(&self, start: usize, out: &mut [f32], round: &[QuantDtype]) {
        self.dequantize_into_as(start, out, round);
    }
}

impl Tiles for HalfMatrix {
    fn dims(&self) -> (usize, usize) {
        (self.shape[0], self.shape[1])
    }
    fn decode(&self, start: usize, out: &mut [f32], round: &[QuantDtype]) {
        self.decode_into(start, out, round);
    }
}

/// Rows of `W` per task in the forward product.
const ROW_TILE: usize = 64;
/// Columns of `W` per task in the backward product.
const COL_TILE: usize = 256;

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: every task writes a disjoint set of output elements (see the callers).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper, not the field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `dst[m, n] = lhs[m, k] rhs[k, n]` in f32 (`dst` and `lhs` with adjacent columns, the other
/// strides as given), on `parallelism`.
///
/// # Safety
/// Pointers and strides must describe valid, non-overlapping (for `dst`) matrices.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    lhs: *const f32,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_cs: isize,
    rhs_rs: isize,
    parallelism: gemm::Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs,
        false,
        lhs,
        1,
        lhs_rs,
        rhs,
        rhs_cs,
        rhs_rs,
        0.0,
        1.0,
        false,
        false,
        false,
        parallelism,
    )
}

/// Rows of the input from which [`matmul_wide`] pays off: the tiled kernels pack the input once
/// per tile, which costs more than decoding the whole weight once when the input is tall.
pub const WIDE_ROWS: usize = 128;

/// [`matmul_xwt`] (or, with `transpose`, [`matmul_gw`]) for a tall input: the weight is decoded
/// whole into one f32 buffer (freed on return) and multiplied by one multi-threaded product.
pub fn matmul_wide<W: Tiles + ?Sized>(
    x: &[f32],
    m: usize,
    w: &W,
    round: &[QuantDtype],
    transpose: bool,
    out: &mut [f32],
) {
    let (n, k) = w.dims();
    let (inner, cols) = if transpose { (n, k) } else { (k, n) };
    assert_eq!(
        x.len(),
        m * inner,
        "packed matmul: input is not [M, {inner}]"
    );
    assert_eq!(
        out.len(),
        m * cols,
        "packed matmul: output is not [M, {cols}]"
    );
    let mut full = vec![0f32; n * k];
    full.par_chunks_mut(k * ROW_TILE)
        .enumerate()
        .for_each(|(t, rows)| w.decode(t * ROW_TILE * k, rows, round));
    // x W^T reads W as [K, N] (column stride K, row stride 1); g W reads it as [N, K].
    let (rhs_cs, rhs_rs) = if transpose {
        (1, k as isize)
    } else {
        (k as isize, 1)
    };
    // SAFETY: `out` is [M, cols] row-major, `x` [M, inner], `full` [N, K]; strides match.
    unsafe {
        gemm_f32(
            m,
            cols,
            inner,
            out.as_mut_ptr(),
            cols as isize,
            x.as_ptr(),
            inner as isize,
            full.as_ptr(),
            rhs_cs,
            rhs_rs,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        )
    }
}

/// `out[M, N] = x[M, K] W^T` with a packed `W` `[N, K]`, decoded as `round` (the compute
/// dtype; `round` lists the roundings applied in order).
pub fn matmul_xwt<W: Tiles + ?Sized>(
    x: &[f32],
    m: usize,
    w: &W,
    round: &[QuantDtype],
    out: &mut [f32],
) {
    let (n, k) = w.dims();
    assert_eq!(x.len(), m * k, "nf4 matmul: x is not [M, K]");
    assert_eq!(out.len(), m * n, "nf4 matmul: out is not [M, N]");
    let dst = SendPtr(out.as_mut_ptr());
    (0..n.div_ceil(ROW_TILE)).into_par_iter().for_each_init(
        || vec![0f32; ROW_TILE * k],
        |buf, t| {
            let n0 = t * ROW_TILE;
            let nt = ROW_TILE.min(n - n0);
            let tile = &mut buf[..nt * k];
            w.decode(n0 * k, tile, round);
            // SAFETY: columns n0..n0+nt of `out` belong to this task only; `tile` is [nt, K]
            // row-major, read as the [K, nt] right-hand side (column stride K, row stride 1).
            unsafe {
                gemm_f32(
                    m,
                    nt,
                    k,
                    dst.get().add(n0),
                    n as isize,
                    x.as_ptr(),
                    k as isize,
                    tile.as_ptr(),
                    k as isize,
                    1,
                    gemm::Parallelism::None,
                );
            }
        },
    );
}

/// `out[M, K] = g[M, N] W` with a packed `W` `[N, K]` (the input gradient of `x W^T`),
/// decoded as `round`.
pub fn matmul_gw<W: Tiles + ?Sized>(
    g: &[f32],
    m: usize,
    w: &W,
    round: &[QuantDtype],
    out: &mut [f32],
) {
    let (n, k) = w.dims();
    assert_eq!(g.len(), m * n, "nf4 matmul: g is not [M, N]");
    assert_eq!(out.len(), m * k, "nf4 matmul: out is not [M, K]");
    let dst = SendPtr(out.as_mut_ptr());
    (0..k.div_ceil(COL_TILE)).into_par_iter().for_each_init(
        || vec![0f32; n * COL_TILE],
        |buf, t| {
            let k0 = t * COL_TILE;
            let kt = COL_TILE.min(k - k0);
            let slab = &mut buf[..n * kt];
            for (row, chunk) in slab.chunks_exact_mut(kt).enumerate() {
                w.decode(row * k + k0, chunk, round);
            }
            // SAFETY: columns k0..k0+kt of `out` belong to this task only; `slab` is [N, kt]
            // row-major (column stride 1, row stride kt).
            unsafe {
                gemm_f32(
                    m,
                    kt,
                    n,
                    dst.get().add(k0),
                    k as isize,
                    g.as_ptr(),
                    n as isize,
                    slab.as_ptr(),
                    1,
                    kt as isize,
                    gemm::Parallelism::None,
                );
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|c| x[i * k + c] * w[j * k + c]).sum();
            }
        }
        out
    }

    #[test]
    fn fused_products_equal_dequantise_then_multiply() {
        let (m, n, k) = (5, 130, 300);
        let data: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 1009) as f32 - 504.0) * 1e-3)
            .collect();
        let q = Nf4Tensor::quantize(&data, &[n, k], 64, true, QuantDtype::F32);
        let wd = q.dequantize();
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.1)
            .collect();
        let mut y = vec![0f32; m * n];
        matmul_xwt(&x, m, &q, &[QuantDtype::F32], &mut y);
        let want = naive(&x, m, &wd, n, k);
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let g: Vec<f32> = (0..m * n)
            .map(|i| ((i * 13 % 11) as f32 - 5.0) * 0.2)
            .collect();
        let mut dx = vec![0f32; m * k];
        matmul_gw(&g, m, &q, &[QuantDtype::F32], &mut dx);
        // G W = (W^T G^T)^T: compare with the naive product against W^T.
        let mut wt = vec![0f32; k * n];
        for r in 0..n {
            for c in 0..k {
                wt[c * n + r] = wd[r * k + c];
            }
        }
        let want = naive(&g, m, &wt, k, n);
        for (a, b) in dx.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // The whole-weight path gives the same products.
        let mut y2 = vec![0f32; m * n];
        matmul_wide(&x, m, &q, &[QuantDtype::F32], false, &mut y2);
        for (a, b) in y2.iter().zip(&y) {
            assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let mut dx2 = vec![0f32; m * k];
        matmul_wide(&g, m, &q, &[QuantDtype::F32], true, &mut dx2);
        for (a, b) in dx2.iter().zip(&dx) {
            assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
