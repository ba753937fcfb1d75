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

#[cfg(test)]
mod tests {
    use super::*;

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
