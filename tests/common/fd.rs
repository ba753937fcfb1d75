//! Helpers of the finite-difference and comparison tests (shared via `#[path]`): a scalar read
//! out in f64, a seeded direction, and the largest absolute difference of two tensors.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};

/// A scalar tensor's value in f64.
pub fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar().unwrap()
}

/// A deterministic f64 direction with entries in [-1, 1).
pub fn direction(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed;
    let v: Vec<f64> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// max |a - b| in f64 over two tensors of the same shape (any float dtypes).
pub fn max_abs_diff_f64(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    scalar(&(a - b).unwrap().abs().unwrap().max_all().unwrap())
}
