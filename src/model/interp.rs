//! PyTorch-compatible resampling of position tables, for inputs of non-native size.
//!
//! - [`bicubic_antialias`]: `F.interpolate(x, size, mode="bicubic", antialias=True,
//!   align_corners=False)` (Keys cubic with a = -0.5, support widened by the scale when
//!   downsampling), applied to the width then the height, as PyTorch's separable CPU kernel does.
//!   DeepSeek-OCR resizes SAM's 64x64 absolute positions and CLIP's 16x16 ones with it.
//! - [`linear_1d`]: `F.interpolate(x, size, mode="linear", align_corners=False)`, used by SAM's
//!   `get_rel_pos` when the relative-position table does not match the grid.
//!
//! Weights are computed in f32 like PyTorch's float kernels.

use candle_core::Tensor;

/// Separable resampling weights for one axis: for each output index, the first input index and
/// the weights of the inputs from there on.
struct AxisWeights {
    starts: Vec<usize>,
    weights: Vec<Vec<f32>>,
}

fn cubic_aa(x: f32) -> f32 {
    const A: f32 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

fn aa_weights(input: usize, output: usize) -> AxisWeights {
    let scale = input as f32 / output as f32;
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    let mut starts = Vec::with_capacity(output);
    let mut weights = Vec::with_capacity(output);
    for i in 0..output {
        let center = scale * (i as f32 + 0.5);
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
        let mut w: Vec<f32> = (xmin..xmax)
            .map(|j| cubic_aa((j as f32 - center + 0.5) * invscale))
            .collect();
        let total: f32 = w.iter().sum();
        if total != 0.0 {
            for v in &mut w {
                *v /= total;
            }
        }
        starts.push(xmin);
        weights.push(w);
    }
    AxisWeights { starts, weights }
}

/// Resamples `data` laid out `[channels, in_h, in_w]` to `[channels, out_h, out_w]` like
/// PyTorch's antialiased bicubic interpolation.
pub fn bicubic_antialias(
    data: &[f32],
    channels: usize,
    (in_h, in_w): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> Vec<f32> {
    assert_eq!(
        data.len(),
        channels * in_h * in_w,
        "bicubic_antialias: input size"
    );
    // Width pass.
    let wx = aa_weights(in_w, out_w);
    let mut tmp = vec![0f32; channels * in_h * out_w];
    for (row_in, row_out) in data.chunks(in_w).zip(tmp.chunks_mut(out_w)) {
        for (o, (start, w)) in row_out.iter_mut().zip(wx.starts.iter().zip(&wx.weights)) {
            *o = w
                .iter()
                .zip(&row_in[*start..])
                .fold(0f32, |acc, (a, b)| acc + a * b);
        }
    }
    // Height pass.
    let wy = aa_weights(in_h, out_h);
    let mut out = vec![0f32; channels * out_h * out_w];
    for c in 0..channels {
        let src = &tmp[c * in_h * out_w..(c + 1) * in_h * out_w];
        let dst = &mut out[c * out_h * out_w..(c + 1) * out_h * out_w];
        for (y, (start, w)) in wy.starts.iter().zip(&wy.weights).enumerate() {
            for x in 0..out_w {
                let mut acc = 0f32;
                for (k, wk) in w.iter().enumerate() {
                    acc += wk * src[(start + k) * out_w + x];
                }
                dst[y * out_w + x] = acc;
            }
        }
    }
    out
}

/// Resamples rows of `data` laid out `[rows, input]` to `[rows, output]` like PyTorch's
/// `mode="linear", align_corners=False`.
pub fn linear_1d(data: &[f32], rows: usize, input: usize, output: usize) -> Vec<f32> {
    assert_eq!(data.len(), rows * input, "linear_1d: input size");
    let scale = input as f32 / output as f32;
    let taps: Vec<(usize, usize, f32, f32)> = (0..output)
        .map(|i| {
            let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let i0 = src as usize;
            let i1 = if i0 + 1 < input { i0 + 1 } else { i0 };
            let l1 = src - i0 as f32;
            (i0, i1, 1.0 - l1, l1)
        })
        .collect();
    let mut out = Vec::with_capacity(rows * output);
    for row in data.chunks(input) {
        out.extend(
            taps.iter()
                .map(|&(i0, i1, l0, l1)| l0 * row[i0] + l1 * row[i1]),
        );
    }
    out
}

/// Resizes the rows of `table` `[n_in, C]` (one row per input position) to `[n_out, C]` with
/// `resize`, a linear resampling of `channels` rows of `n_in` values each (as
/// [`bicubic_antialias`] or [`linear_1d`] with their sizes bound), keeping the graph: the
/// resampling is applied to the unit vectors to give its matrix, and `table` is multiplied by
/// it, so a table that is a training variable gets its gradient. Position tables of trained
/// encoders seen at other sizes take this path; frozen ones resample their values directly.
pub fn resize_rows_differentiable(
    table: &Tensor,
    n_out: usize,
    resize: impl Fn(&[f32], usize) -> Vec<f32>,
) -> candle_core::Result<Tensor> {
    let (n_in, _) = table.dims2()?;
    let mut identity = vec![0f32; n_in * n_in];
    for i in 0..n_in {
        identity[i * n_in + i] = 1.0;
    }
    // Row i of the result is the resampling of unit vector i: the transposed matrix.
    let mt = resize(&identity, n_in);
    if mt.len() != n_in * n_out {
        candle_core::bail!(
            "resize_rows_differentiable: the resampling gave {} values, expected {n_in} x {n_out}",
            mt.len()
        );
    }
    let mt = Tensor::from_vec(mt, (n_in, n_out), table.device())?.to_dtype(table.dtype())?;
    mt.t()?.matmul(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrix form gives the direct resampling's values and passes gradients on.
    #[test]
    fn the_differentiable_resize_equals_the_direct_one() {
        let (g, out, c) = (5usize, 7usize, 3usize);
        let chw: Vec<f32> = (0..c * g * g).map(|i| (i as f32 * 0.61).cos()).collect();
        let direct = bicubic_antialias(&chw, c, (g, g), (out, out));
        // [C, g*g] -> rows per position [g*g, C].
        let table = Tensor::from_vec(chw, (c, g * g), &candle_core::Device::Cpu)
            .unwrap()
            .t()
            .unwrap()
            .contiguous()
            .unwrap();
        let var = candle_core::Var::from_tensor(&table).unwrap();
        let got = resize_rows_differentiable(var.as_tensor(), out * out, |d, ch| {
            bicubic_antialias(d, ch, (g, g), (out, out))
        })
        .unwrap();
        let got_chw: Vec<f32> = got.t().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (a, b) in got_chw.iter().zip(&direct) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let grads = got.sum_all().unwrap().backward().unwrap();
        // d sum / d table[k] is the sum of the resampling weights of input k, and these sum
        // to out^2 (each output's weights sum to 1).
        let per_input: Vec<f32> = grads
            .get(var.as_tensor())
            .unwrap()
            .narrow(1, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(per_input.iter().all(|&v| v.is_finite()));
        let total: f32 = per_input.iter().sum();
        assert!((total - (out * out) as f32).abs() < 1e-4, "{total}");
        let linear =
            resize_rows_differentiable(var.as_tensor(), 9, |d, ch| linear_1d(d, ch, g * g, 9))
                .unwrap();
        assert_eq!(linear.dims(), &[9, c]);
    }

    #[test]
    fn identity_sizes_are_identity() {
        let data: Vec<f32> = (0..2 * 5 * 5).map(|i| (i as f32 * 0.37).sin()).collect();
        let same = bicubic_antialias(&data, 2, (5, 5), (5, 5));
        for (a, b) in data.iter().zip(&same) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(linear_1d(&data, 10, 5, 5), data);
    }

    #[test]
    fn constants_stay_constant() {
        let data = vec![0.25f32; 3 * 16 * 16];
        for (h, w) in [(10, 10), (7, 12), (40, 40)] {
            let out = bicubic_antialias(&data, 3, (16, 16), (h, w));
            assert!(out.iter().all(|v| (v - 0.25).abs() < 1e-6), "{h}x{w}");
        }
    }

    /// Hand-computed: linear 4 -> 2 takes the mean of neighbour pairs; 2 -> 4 follows
    /// src = 0.5 * (i + 0.5) - 0.5 clamped at 0.
    #[test]
    fn linear_matches_hand_computed() {
        assert_eq!(linear_1d(&[0.0, 1.0, 2.0, 3.0], 1, 4, 2), vec![0.5, 2.5]);
        assert_eq!(linear_1d(&[0.0, 4.0], 1, 2, 4), vec![0.0, 1.0, 3.0, 4.0]);
    }
}
