//! The one gradient all-reduce of a data-parallel step: every parameter's summed gradient in
//! one flat `f32` buffer (zeros where a rank has none), and the step's counts in a small `f64`
//! one (which parameters had a gradient anywhere, counted micro-batches, loss sum, tokens,
//! skipped micro-batches).

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};

use super::Collective;
use crate::train::trainer::Accumulated;
use crate::train::TrainError;

/// Replaces this rank's `acc` by the sum over the ranks of `group`, so that every rank holds
/// the same gradients and counts. A parameter keeps no gradient only when no rank had one.
pub(crate) fn all_reduce_grads(
    acc: Accumulated,
    params: &[(String, Var)],
    group: &dyn Collective,
) -> Result<Accumulated, TrainError> {
    let Accumulated {
        mut sum,
        counted,
        loss_sum,
        tokens,
        skipped,
    } = acc;
    let mut flat = Vec::new();
    let mut stats = Vec::with_capacity(params.len() + 4);
    for (name, p) in params {
        match sum.remove(name) {
            Some(g) => {
                flat.extend(g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
                stats.push(1.0);
            }
            None => {
                flat.extend(std::iter::repeat_n(0f32, p.elem_count()));
                stats.push(0.0);
            }
        }
    }
    stats.extend([counted as f64, loss_sum, tokens as f64, skipped as f64]);
    group
        .all_reduce_sum_f32(&mut flat)
        .and_then(|()| group.all_reduce_sum_f64(&mut stats))
        .map_err(|e| TrainError::Collective(e.to_string()))?;
    let mut out = HashMap::new();
    let mut at = 0;
    for ((name, p), &present) in params.iter().zip(&stats) {
        let n = p.elem_count();
        if present > 0.0 {
            let g = Tensor::from_slice(&flat[at..at + n], p.shape(), p.device())?;
            out.insert(name.clone(), g.to_dtype(p.dtype())?);
        }
        at += n;
    }
    let k = params.len();
    Ok(Accumulated {
        sum: out,
        counted: stats[k] as usize,
        loss_sum: stats[k + 1],
        tokens: stats[k + 2] as usize,
        skipped: stats[k + 3] as usize,
    })
}
