//! LLM.int8 as bitsandbytes 0.50 computes it on the CPU ([Dettmers et al. 2022,
//! "LLM.int8(): 8-bit Matrix Multiplication for Transformers at Scale"](https://arxiv.org/abs/2208.07339);
//! `bitsandbytes.nn.Linear8bitLt`).
//!
//! - **Weights** (`Int8Params`): the weight is rounded to float16, then each row is scaled by
//!   `127 / absmax(row)` (computed as `(1 / absmax) * 127` in f32, as torch evaluates
//!   `127.0 / tensor`), rounded half to even and stored as int8 codes `CB`
//!   with the row absmax `SCB` (f32). An all-zero row gives `0 * inf = NaN`, which the CPU's
//!   conversion turns into code 0.
//! - **Forward** (`MatMul8bitLt`, threshold 6.0): the input, rounded to float16, is quantised
//!   the same way per row after zeroing its outliers (`|x| >= threshold`); every column holding
//!   an outlier in any row is zeroed in the codes and multiplied in f32 instead, from the
//!   unrounded input and the weight's columns dequantised (`CB * SCB * (1/127)`). The rest is
//!   an int8 x int8 product with int32 accumulation (`torch._int_mm`), dequantised as
//!   `acc * (row_scale * SCB) * 6.200124e-05`, plus the bias.
//! - **Backward** to the input: `g (CB * (SCB * (1/127)))`, the same weight bitsandbytes'
//!   CPU training forward (`MatMul8bitFp`) multiplies with ([`Int8Tensor::decode_into`]).
//!
//! Every step but the f32 sum over outlier columns (a BLAS `addmm` in bitsandbytes, whose order of
//! additions is its own) is reproduced bit for bit (`tests/int8_bnb.rs`).

use rayon::prelude::*;

use super::kernel::Tiles;
use super::nf4::QuantDtype;

/// bitsandbytes' outlier threshold for `Linear8bitLt` in transformers (`llm_int8_threshold`).
pub const INT8_THRESHOLD: f32 = 6.0;

/// `1 / 127` as bitsandbytes multiplies with it (the f32 nearest to the double).
const INV_127: f32 = (1.0f64 / 127.0) as f32;
/// bitsandbytes' `int8_vectorwise_dequant` constant.
const DEQUANT: f32 = 7.874015718698502e-3f64 as f32;
/// bitsandbytes' `int8_mm_dequant` constant (`1 / 127^2`, rounded as bitsandbytes writes it).
const MM_DEQUANT: f32 = 6.200124e-05;

/// An int8 row-quantised `[rows, cols]` matrix: codes and one f32 scale (the row's absmax) per
/// row, as bitsandbytes' `CB` and `SCB`.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Tensor {
    /// Row-major codes.
    pub codes: Vec<i8>,
    /// The absmax of each row (of the float16-rounded values).
    pub scb: Vec<f32>,
    /// `[rows, cols]`.
    pub shape: [usize; 2],
}

/// Row-wise int8 codes of an input, with the columns that held outliers.
#[derive(Clone, Debug, PartialEq)]
pub struct RowQuant {
    /// Row-major codes (outlier columns zeroed when there is more than one row).
    pub codes: Vec<i8>,
    /// Row absmax after the outliers were zeroed.
    pub scales: Vec<f32>,
    /// Columns with `|x| >= threshold` in some row, ascending.
    pub outlier_cols: Vec<usize>,
}

/// `v` rounded to float16 and back (round to nearest even), as `tensor.to(torch.float16)`.
#[inline]
fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// `round(v)` (half to even) converted to int8 as torch does on x86-64: NaN becomes 0.
#[inline]
fn to_code(v: f32) -> i8 {
    if v.is_nan() {
        0
    } else {
        v.round_ties_even() as i8
    }
}

/// bitsandbytes' `int8_vectorwise_quant(A.to(torch.float16), threshold)` of a row-major
/// `[rows, cols]` input (`threshold <= 0`: no outlier handling).
pub fn quantize_rows(a: &[f32], rows: usize, cols: usize, threshold: f32) -> RowQuant {
    assert_eq!(
        a.len(),
        rows * cols,
        "int8 quantise: input is not [{rows}, {cols}]"
    );
    let mut h: Vec<f32> = a.iter().map(|&v| f16_round(v)).collect();
    let mut outlier_cols = Vec::new();
    if threshold > 0.0 {
        let mut is_outlier = vec![false; cols];
        for row in h.chunks_mut(cols.max(1)) {
            for (j, v) in row.iter_mut().enumerate() {
                if v.abs() >= threshold {
                    is_outlier[j] = true;
                    *v = 0.0;
                }
            }
        }
        outlier_cols = (0..cols).filter(|&j| is_outlier[j]).collect();
    }
    let scales: Vec<f32> = h
        .chunks(cols.max(1))
        .map(|r| r.iter().fold(0f32, |m, v| m.max(v.abs())))
        .collect();
    let mut codes: Vec<i8> = h
        .chunks(cols.max(1))
        .zip(&scales)
        .flat_map(|(r, &s)| {
            // `127.0 / row_stats` in Python is `row_stats.reciprocal() * 127.0` (torch's
            // `__rtruediv__`): two roundings, not one division.
            let k = (1.0f32 / s) * 127.0;
            r.iter().map(move |&v| to_code(v * k))
        })
        .collect();
    if rows > 1 {
        for row in codes.chunks_mut(cols.max(1)) {
            for &j in &outlier_cols {
                row[j] = 0;
            }
        }
    }
    RowQuant {
        codes,
        scales,
        outlier_cols,
    }
}

/// `sum a[i] b[i]` in wrapping int32, as `torch._int_mm` accumulates.
#[inline]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .fold(0i32, |s, (&x, &y)| s.wrapping_add(x as i32 * y as i32))
}

/// Output columns per rayon task in [`Int8Tensor::matmul`].
const COL_TILE: usize = 32;

impl Int8Tensor {
    /// Quantises a row-major `[rows, cols]` weight as `Int8Params` does (float16, then
    /// row-wise int8).
    pub fn quantize(w: &[f32], shape: [usize; 2]) -> Self {
        let q = quantize_rows(w, shape[0], shape[1], 0.0);
        Self {
            codes: q.codes,
            scb: q.scales,
            shape,
        }
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.shape[0], self.shape[1])
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether the matrix has no element.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// bitsandbytes' `int8_vectorwise_dequant(CB, SCB)`: `(code * SCB) * 7.874015718698502e-3`
    /// in f32 (the weight of the forward's outlier columns).
    pub fn dequantize(&self) -> Vec<f32> {
        let cols = self.shape[1].max(1);
        self.codes
            .chunks(cols)
            .zip(&self.scb)
            .flat_map(|(r, &s)| r.iter().map(move |&c| c as f32 * s * DEQUANT))
            .collect()
    }

    /// Elements `start..start + out.len()` (row-major) of `code * (SCB * (1/127))` in f32: the
    /// weight of bitsandbytes' backward and of its CPU training forward (`MatMul8bitFp`).
    pub fn decode_into(&self, start: usize, out: &mut [f32]) {
        let cols = self.shape[1].max(1);
        for (i, o) in out.iter_mut().enumerate() {
            let j = start + i;
            *o = self.codes[j] as f32 * (self.scb[j / cols] * INV_127);
        }
    }

    /// The whole [`decode_into`](Self::decode_into) weight.
    pub fn decode(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.len()];
        self.decode_into(0, &mut out);
        out
    }

    /// Bytes in memory: one per code and four per row scale.
    pub fn storage_bytes(&self) -> usize {
        self.codes.len() + 4 * self.scb.len()
    }

    /// LLM.int8's `x W^T + bias` for a row-major `x` `[m, cols]` (see the module docs): the
    /// int8 product of the non-outlier columns and the f32 product of the outlier ones.
    ///
    /// # Shapes
    /// `x` `[m, cols]`, `bias` `[rows]` -> `[m, rows]`.
    pub fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>, threshold: f32) -> Vec<f32> {
        let (n, k) = self.dims();
        assert_eq!(x.len(), m * k, "int8 matmul: input is not [{m}, {k}]");
        let qa = quantize_rows(x, m, k, threshold);
        // Outlier columns of x (unrounded) and of the dequantised weight, gathered.
        let oc = &qa.outlier_cols;
        let sub_a: Vec<f32> = (0..m)
            .flat_map(|i| oc.iter().map(move |&c| x[i * k + c]))
            .collect();
        let mut yt = vec![0f32; n * m];
        yt.par_chunks_mut(COL_TILE * m.max(1))
            .enumerate()
            .for_each(|(t, tile)| {
                for (jj, col) in tile.chunks_mut(m.max(1)).enumerate() {
                    let j = t * COL_TILE + jj;
                    let w = &self.codes[j * k..(j + 1) * k];
                    let s = self.scb[j];
                    let sub_b: Vec<f32> = oc.iter().map(|&c| w[c] as f32 * s * DEQUANT).collect();
                    for (i, y) in col.iter_mut().enumerate() {
                        let acc = dot_i8(&qa.codes[i * k..(i + 1) * k], w);
                        let mut v = acc as f32 * (qa.scales[i] * s) * MM_DEQUANT;
                        if let Some(b) = bias {
                            v += b[j];
                        }
                        if !oc.is_empty() {
                            let a = &sub_a[i * oc.len()..(i + 1) * oc.len()];
                            v += a.iter().zip(&sub_b).map(|(p, q)| p * q).sum::<f32>();
                        }
                        *y = v;
                    }
                }
            });
        let mut y = vec![0f32; m * n];
        for (j, col) in yt.chunks(m.max(1)).enumerate() {
            for (i, &v) in col.iter().enumerate() {
                y[i * n + j] = v;
            }
        }
        y
    }
}

impl Tiles for Int8Tensor {
    fn dims(&self) -> (usize, usize) {
        Int8Tensor::dims(self)
    }
    fn decode(&self, start: usize, out: &mut [f32], round: &[QuantDtype]) {
        self.decode_into(start, out);
        for r in round {
            if *r != QuantDtype::F32 {
                out.iter_mut().for_each(|v| *v = r.round(*v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_round_to_even_and_zero_rows_give_zero_codes() {
        let mut w = vec![127.0f32, 0.5, 1.5, 2.5, -0.5, -1.5];
        w.extend([0.0; 6]);
        let q = Int8Tensor::quantize(&w, [2, 6]);
        assert_eq!(q.codes, [127, 0, 2, 2, 0, -2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(q.scb, [127.0, 0.0]);
    }

    #[test]
    fn outlier_columns_are_zeroed_and_multiplied_in_f32() {
        // Column 1 holds an outlier in row 0: its codes are zeroed in both rows.
        let x = [1.0f32, 6.0, -2.0, 0.5, 3.0, 1.0];
        let q = quantize_rows(&x, 2, 3, INT8_THRESHOLD);
        assert_eq!(q.outlier_cols, [1]);
        // Row 1's scale still counts its value in the outlier column (only outliers are zeroed).
        assert_eq!(q.scales, [2.0, 3.0]);
        assert_eq!(q.codes, [64, 0, -127, 21, 0, 42]);
        // An identity-like weight: the output stays close to x.
        let w = Int8Tensor::quantize(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], [3, 3]);
        let y = w.matmul(&x, 2, None, INT8_THRESHOLD);
        for (a, b) in y.iter().zip(x) {
            assert!((a - b).abs() < 0.02, "{y:?}");
        }
    }
}
