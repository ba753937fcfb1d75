//! torch's float32 `sum` and `mean` on the CPU, in torch's exact order of additions, so a mean
//! that bitsandbytes takes with `tensor.mean()` (the double-quantisation offset) comes out
//! bit-identical here.
//!
//! torch (`aten/src/ATen/native/cpu/SumKernel.cpp`, `cascade_sum`) sums a contiguous float32
//! vector of `n` values as follows (checked against torch 2.15.0 for every length 1..=300 and
//! hundreds of random lengths up to 1,048,579, thread counts 1 to 16; the goldens in
//! `tests/fixtures/qlora/nf4_dq_golden.safetensors` record them):
//! - `n >= 8`: the first `8 * (n / 8)` values are read as vectors of 8 lanes (`Vectorized<float>`
//!   of the AVX2 kernel, which torch also runs when it reports the capability AVX512; the
//!   `DEFAULT` capability, forced with `ATEN_CPU_CAPABILITY=default`, sums in another order)
//!   and summed lane-wise by [`row_sum`]; the remaining `n % 8` values are added one by one to
//!   `0.0`, then the 8 lanes in order.
//! - `n < 8`: [`row_sum`] over scalars.
//! - [`row_sum`] splits its items into 4 interleaved rows (item `4i + k` to row `k`) summed at
//!   once by the cascade of [`multi_row_sum`] (4 levels of `2^max(4, ceil(log2 m) / 4)` items
//!   each), adds the `m % 4` leftover items to row 0 and then rows 1, 2, 3 to row 0.
//! - From `n >= 32768` (`at::internal::GRAIN_SIZE`) with `T > 1` threads
//!   (`torch.get_num_threads()`), `two_pass_reduction`: the vector is cut into
//!   `min(T, ceil(n / 32768))` chunks of `ceil(n / chunks)` values, each summed as above into
//!   one slot of a `T`-slot buffer of zeros, and the buffer is summed as above. The result then
//!   depends on `T`.
//!
//! `mean` is `sum / float32(n)` (`mean_out` on the CPU sums and divides).

/// `at::internal::GRAIN_SIZE`: below this many elements a reduction runs on one thread.
pub const GRAIN_SIZE: usize = 32768;
/// Lanes of the `Vectorized<float>` the sum kernel accumulates in (AVX2: 8).
const LANES: usize = 8;
/// Rows summed at once by `row_sum` (its `ilp_factor`).
const ILP: usize = 4;
/// Levels of the cascade in `multi_row_sum`.
const LEVELS: usize = 4;

fn add<const L: usize>(acc: &mut [f32; L], v: &[f32; L]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a += *b;
    }
}

/// `utils::CeilLog2`: `ceil(log2 x)`, and 1 for `x <= 2`.
fn ceil_log2(x: usize) -> usize {
    if x <= 2 {
        1
    } else {
        (usize::BITS - (x - 1).leading_zeros()) as usize
    }
}

/// torch's `multi_row_sum` for `ILP` rows of `size` items each, item `(i, k)` being
/// `item(i * ILP + k)` (an `L`-lane accumulator: `L = 1` scalars, `L = 8` vectors): per row,
/// running sums of `level_step` items cascaded into 3 higher levels, added together at the end.
fn multi_row_sum<const L: usize>(
    item: &impl Fn(usize) -> [f32; L],
    size: usize,
) -> [[f32; L]; ILP] {
    let level_power = 4.max(ceil_log2(size) / LEVELS);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = [[[0f32; L]; ILP]; LEVELS];
    let mut i = 0;
    while i + level_step <= size {
        for _ in 0..level_step {
            for (k, a) in acc[0].iter_mut().enumerate() {
                add(a, &item(i * ILP + k));
            }
            i += 1;
        }
        for j in 1..LEVELS {
            let (below, above) = acc.split_at_mut(j);
            for (lower, upper) in below[j - 1].iter_mut().zip(above[0].iter_mut()) {
                add(upper, lower);
                *lower = [0.0; L];
            }
            if i & (level_mask << (j * level_power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        for (k, a) in acc[0].iter_mut().enumerate() {
            add(a, &item(i * ILP + k));
        }
        i += 1;
    }
    let [mut total, rest @ ..] = acc;
    for level in rest {
        for (t, u) in total.iter_mut().zip(&level) {
            add(t, u);
        }
    }
    total
}

/// torch's `row_sum` of `size` items: [`multi_row_sum`] over `size / 4` rows of 4, the
/// leftover items added to row 0, then rows 1..4 added to row 0.
fn row_sum<const L: usize>(item: impl Fn(usize) -> [f32; L], size: usize) -> [f32; L] {
    let rows = size / ILP;
    let mut partial = multi_row_sum(&item, rows);
    for i in rows * ILP..size {
        add(&mut partial[0], &item(i));
    }
    for k in 1..ILP {
        let p = partial[k];
        add(&mut partial[0], &p);
    }
    partial[0]
}

/// One call of torch's inner-sum loop over a contiguous run (`vectorized_inner_sum` from 8
/// values, `scalar_inner_sum` below).
fn inner_sum(x: &[f32]) -> f32 {
    if x.len() < LANES {
        return row_sum(|i| [x[i]], x.len())[0];
    }
    let vectors = x.len() / LANES;
    let lanes = row_sum::<LANES>(|i| std::array::from_fn(|l| x[i * LANES + l]), vectors);
    let mut acc = 0f32;
    for &v in &x[vectors * LANES..] {
        acc += v;
    }
    for l in lanes {
        acc += l;
    }
    acc
}

/// `torch.sum` of a contiguous float32 vector on the CPU with `threads` intra-op threads
/// (`torch.get_num_threads()`), bit for bit (see the module documentation).
pub fn sum_f32(x: &[f32], threads: usize) -> f32 {
    let n = x.len();
    if n < GRAIN_SIZE || threads <= 1 {
        // The output starts at 0 and the loop adds its sum to it.
        return 0.0 + inner_sum(x);
    }
    let chunks = threads.min(n.div_ceil(GRAIN_SIZE));
    let mut partial = vec![0f32; threads];
    for (p, c) in partial.iter_mut().zip(x.chunks(n.div_ceil(chunks))) {
        *p += inner_sum(c);
    }
    0.0 + inner_sum(&partial)
}

/// `torch.mean` of a contiguous float32 vector on the CPU with `threads` intra-op threads:
/// [`sum_f32`] divided by `n` in float32.
pub fn mean_f32(x: &[f32], threads: usize) -> f32 {
    sum_f32(x, threads) / x.len() as f32
}

/// The intra-op thread count torch starts with (`at::intraop_default_num_threads`):
/// `MKL_NUM_THREADS`, else `OMP_NUM_THREADS` (positive integers), else the number of physical
/// cores. A script that calls `torch.set_num_threads(n)` reduces with `n` instead.
pub fn default_threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        let env = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
        };
        env("MKL_NUM_THREADS")
            .or_else(|| env("OMP_NUM_THREADS"))
            .unwrap_or_else(num_cpus::get_physical)
            .max(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sums_follow_torchs_order() {
        // Exactly representable values: every order gives the same sum.
        let x: Vec<f32> = (0..1000).map(|i| (i % 17) as f32).collect();
        let want: f32 = x.iter().sum();
        for n in [0, 1, 7, 8, 9, 63, 64, 65, 1000] {
            let w: f32 = x[..n].iter().sum();
            assert_eq!(sum_f32(&x[..n], 4), w, "n = {n}");
        }
        assert_eq!(sum_f32(&x, 1), want);
        assert_eq!(mean_f32(&[1.0, 2.0, 4.0], 1), 7.0 / 3.0);
        assert_eq!(ceil_log2(1), 1);
        assert_eq!(ceil_log2(3), 2);
        assert_eq!(ceil_log2(1024), 10);
        assert_eq!(ceil_log2(1025), 11);
    }

    #[test]
    fn order_differs_from_a_running_sum() {
        // 1 + 2^-24 * 16 per lane vs a running sum that rounds every small term away.
        let mut x = vec![2f32.powi(-24); 64];
        x[0] = 1.0;
        let running = x.iter().fold(0f32, |a, &v| a + v);
        assert_eq!(running, 1.0);
        assert!(sum_f32(&x, 1) > 1.0);
    }
}
