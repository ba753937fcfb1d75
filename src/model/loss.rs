//! Causal language-model loss: next-token cross-entropy over positions whose label is not
//! `-100`, averaged (as `DeepseekV2ForCausalLM` with `CrossEntropyLoss()`), with a fused CPU
//! kernel that keeps no `[N, vocab]` intermediate in the forward pass.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, D};

/// Labels with this value are ignored.
pub const IGNORE_INDEX: i64 = -100;

/// Per-row `logsumexp(x) - x[target]` (0 for ignored rows), with backward
/// `g * (softmax(x) - onehot(target))`.
struct RowNll {
    targets: Vec<i64>,
}

impl RowNll {
    /// `logsumexp(x) - x[target]` in the row's precision (sums in f64), 0 for ignored rows.
    fn row<T: num_traits::Float + Into<f64>>(x: &[T], target: i64) -> T {
        if target < 0 {
            return T::zero();
        }
        let max = x.iter().copied().fold(T::neg_infinity(), T::max);
        let sum: f64 = x.iter().map(|&v| (v - max).into().exp()).sum();
        T::from(sum.ln()).expect("finite") + max - x[target as usize]
    }

    fn rows<T: num_traits::Float + Into<f64> + Send + Sync>(
        &self,
        v: &[T],
        n: usize,
        vocab: usize,
    ) -> Vec<T> {
        use rayon::prelude::*;
        (0..n)
            .into_par_iter()
            .map(|r| Self::row(&v[r * vocab..(r + 1) * vocab], self.targets[r]))
            .collect()
    }
}

impl CustomOp1 for RowNll {
    fn name(&self) -> &'static str {
        "deepsynth-row-nll"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = l.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("cross-entropy: logits not contiguous".into())
        })?;
        let (n, vocab) = l.shape().dims2()?;
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(self.rows(&v[start..end], n, vocab)),
            CpuStorage::F64(v) => CpuStorage::F64(self.rows(&v[start..end], n, vocab)),
            _ => candle_core::bail!("cross-entropy expects f32 or f64 logits"),
        };
        Ok((out, Shape::from(n)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (n, vocab) = arg.dims2()?;
        let p = candle_nn::ops::softmax_last_dim(&arg.detach())?;
        let mut onehot = vec![0f32; n * vocab];
        let mut keep = vec![0f32; n];
        for (r, &t) in self.targets.iter().enumerate() {
            if t >= 0 {
                onehot[r * vocab + t as usize] = 1.0;
                keep[r] = 1.0;
            }
        }
        let onehot = Tensor::from_vec(onehot, (n, vocab), arg.device())?.to_dtype(arg.dtype())?;
        let keep = Tensor::from_vec(keep, (n, 1), arg.device())?.to_dtype(arg.dtype())?;
        let g = grad.reshape((n, 1))?.broadcast_mul(&keep)?;
        Ok(Some((p - onehot)?.broadcast_mul(&g)?))
    }
}

/// Mean cross-entropy of `logits` `[N, vocab]` (computed in f32, f64 for f64) against `targets` (`-100` ignored).
///
/// Returns the scalar loss and the number of counted rows; with no counted row the loss is 0.
pub fn cross_entropy(logits: &Tensor, targets: &[i64]) -> candle_core::Result<(Tensor, usize)> {
    let (n, vocab) = logits.dims2()?;
    if targets.len() != n {
        candle_core::bail!(
            "cross-entropy: {n} logit rows but {} targets",
            targets.len()
        );
    }
    if let Some(bad) = targets
        .iter()
        .find(|&&t| t != IGNORE_INDEX && (t < 0 || t >= vocab as i64))
    {
        candle_core::bail!("cross-entropy: label {bad} outside the vocabulary of {vocab}");
    }
    let targets: Vec<i64> = targets
        .iter()
        .map(|&t| if t == IGNORE_INDEX { -1 } else { t })
        .collect();
    let count = targets.iter().filter(|&&t| t >= 0).count();
    let logits = logits.to_dtype(crate::model::ops::accum_dtype(logits.dtype()))?;
    let per_row = if logits.device().is_cpu() {
        logits.contiguous()?.apply_op1(RowNll {
            targets: targets.clone(),
        })?
    } else {
        let max = logits.max_keepdim(D::Minus1)?.detach();
        let lse = logits
            .broadcast_sub(&max)?
            .exp()?
            .sum_keepdim(D::Minus1)?
            .log()?
            .broadcast_add(&max)?
            .squeeze(1)?;
        let safe: Vec<u32> = targets.iter().map(|&t| t.max(0) as u32).collect();
        let idx = Tensor::from_vec(safe, (n, 1), logits.device())?;
        let picked = logits.gather(&idx, 1)?.squeeze(1)?;
        let keep: Vec<f32> = targets.iter().map(|&t| (t >= 0) as u8 as f32).collect();
        ((lse - picked)? * Tensor::from_vec(keep, n, logits.device())?.to_dtype(logits.dtype())?)?
    };
    let loss = (per_row.sum_all()? / count.max(1) as f64)?;
    Ok((loss, count))
}

/// The shifted causal-LM loss: logits at position `t` predict `labels[t + 1]`.
///
/// # Shapes
/// `logits` `[B, L, vocab]`, `labels` `[B][L]`.
pub fn causal_lm_loss(
    logits: &Tensor,
    labels: &[Vec<i64>],
) -> candle_core::Result<(Tensor, usize)> {
    let (b, l, vocab) = logits.dims3()?;
    check_labels(labels, b, l)?;
    if l < 2 {
        candle_core::bail!("causal LM loss needs at least 2 positions");
    }
    let shifted = logits.narrow(1, 0, l - 1)?.reshape((b * (l - 1), vocab))?;
    let targets: Vec<i64> = labels.iter().flat_map(|r| r[1..].iter().copied()).collect();
    cross_entropy(&shifted, &targets)
}

fn check_labels(labels: &[Vec<i64>], b: usize, l: usize) -> candle_core::Result<()> {
    if labels.len() != b || labels.iter().any(|r| r.len() != l) {
        candle_core::bail!("labels must be [{b}][{l}]");
    }
    Ok(())
}

/// The positions [`causal_lm_loss`] scores, flattened (`row * L + t`), with their targets
/// (`labels[row][t + 1]`, never [`IGNORE_INDEX`]).
pub fn scored_positions(
    labels: &[Vec<i64>],
    b: usize,
    l: usize,
) -> candle_core::Result<(Vec<u32>, Vec<i64>)> {
    check_labels(labels, b, l)?;
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for (r, row) in labels.iter().enumerate() {
        for t in 0..l.saturating_sub(1) {
            if row[t + 1] != IGNORE_INDEX {
                rows.push((r * l + t) as u32);
                targets.push(row[t + 1]);
            }
        }
    }
    Ok((rows, targets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Hand-computed: logits [0, ln 3] with target 1 -> -ln(3/4); target ignored -> excluded.
    #[test]
    fn matches_hand_computed_and_ignores_minus_100() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[0f32, 3f32.ln()], [5.0, -1.0]], &dev).unwrap();
        let (loss, n) = cross_entropy(&x, &[1, IGNORE_INDEX]).unwrap();
        assert_eq!(n, 1);
        let v: f32 = loss.to_scalar().unwrap();
        assert!((v - (4.0f32 / 3.0).ln()).abs() < 1e-6, "{v}");
    }

    #[test]
    fn gradient_is_softmax_minus_onehot_over_count() {
        let dev = Device::Cpu;
        let x = Var::new(&[[1f32, 2.0, 0.5], [0.0, 0.0, 0.0], [3.0, -1.0, 2.0]], &dev).unwrap();
        let (loss, n) = cross_entropy(x.as_tensor(), &[2, IGNORE_INDEX, 0]).unwrap();
        assert_eq!(n, 2);
        let g = loss.backward().unwrap();
        let g: Vec<Vec<f32>> = g.get(x.as_tensor()).unwrap().to_vec2().unwrap();
        let rows = [[1f32, 2.0, 0.5], [3.0, -1.0, 2.0]];
        let targets = [2usize, 0];
        for (ri, (row, t)) in [(0usize, (rows[0], targets[0])), (2, (rows[1], targets[1]))] {
            let s: f32 = row.iter().map(|v| v.exp()).sum();
            for j in 0..3 {
                let want = (row[j].exp() / s - (j == t) as u8 as f32) / 2.0;
                assert!((g[ri][j] - want).abs() < 1e-6);
            }
        }
        assert!(g[1].iter().all(|&v| v == 0.0));
    }
}
