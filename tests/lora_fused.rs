//! The fused LoRA node and the 16-bit frozen weights against candle's own autograd on the
//! textbook composition: `base(x) + s * ((x * mask) A^T) B^T` with the mask drawn from the same
//! seeded generator, for dense, NF4 and bf16 bases.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use deepsynth::lora::{set_dropout_seed, LoraAdapter, LoraLinear};
use deepsynth::quant::{QLinear, QWeight};
use deepsynth::rng::Rng;
use deepsynth::weights::{QuantizeSpec, Weights};

const IN: usize = 40;
const OUT: usize = 24;
const R: usize = 4;

fn values(n: usize, seed: u64, scale: f64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.uniform(-scale, scale) as f32).collect()
}

fn tensor(shape: (usize, usize), seed: u64, scale: f64) -> Tensor {
    Tensor::from_vec(values(shape.0 * shape.1, seed, scale), shape, &Device::Cpu).unwrap()
}

/// The reference: candle ops on variables, the base weight as a plain (frozen) tensor.
fn reference(
    w: &Tensor,
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    p: f32,
    seed: u64,
) -> (Tensor, [Tensor; 3]) {
    let (xv, av, bv) = (
        Var::from_tensor(x).unwrap(),
        Var::from_tensor(a).unwrap(),
        Var::from_tensor(b).unwrap(),
    );
    let mut rng = Rng::new(seed);
    let keep = 1.0 - p as f64;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.next_f64() < keep {
                (1.0 / keep) as f32
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), &Device::Cpu).unwrap();
    let base = xv.as_tensor().matmul(&w.t().unwrap()).unwrap();
    let lora = (xv.as_tensor() * mask)
        .unwrap()
        .matmul(&av.as_tensor().t().unwrap())
        .unwrap()
        .matmul(&bv.as_tensor().t().unwrap())
        .unwrap();
    let y = (base + (lora * scale).unwrap()).unwrap();
    let grads = probe_grads(&y, [&xv, &av, &bv]);
    (y, grads)
}

/// The gradients of `sum(y * probe)` for a fixed random probe.
fn probe_grads(y: &Tensor, vars: [&Var; 3]) -> [Tensor; 3] {
    let probe = tensor((y.dims()[0], OUT), 99, 1.0);
    let g = (y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    vars.map(|v| g.get(v.as_tensor()).expect("a gradient").clone())
}

fn ours(
    base: QLinear,
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    p: f32,
    seed: u64,
) -> (Tensor, [Tensor; 3]) {
    let (xv, av, bv) = (
        Var::from_tensor(x).unwrap(),
        Var::from_tensor(a).unwrap(),
        Var::from_tensor(b).unwrap(),
    );
    let layer = LoraLinear {
        base,
        adapter: Some(LoraAdapter {
            a: av.clone(),
            b: bv.clone(),
            scale,
            dropout: p,
        }),
        merged: false,
    };
    set_dropout_seed(seed);
    let y = layer.forward_t(xv.as_tensor(), true).unwrap();
    let grads = probe_grads(&y, [&xv, &av, &bv]);
    (y, grads)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn check(base: QLinear, w: &Tensor, p: f32) {
    let x = tensor((7, IN), 1, 1.0);
    let a = tensor((R, IN), 2, 0.3);
    let b = tensor((OUT, R), 3, 0.3);
    let (y0, g0) = reference(w, &x, &a, &b, 2.0, p, 11);
    let (y1, g1) = ours(base, &x, &a, &b, 2.0, p, 11);
    assert!(
        max_diff(&y0, &y1) < 1e-5,
        "output differs by {}",
        max_diff(&y0, &y1)
    );
    for (name, (r, o)) in ["x", "A", "B"].iter().zip(g0.iter().zip(&g1)) {
        assert_eq!(r.dims(), o.dims(), "{name} gradient shape");
        let d = max_diff(r, o);
        assert!(d < 1e-5, "{name} gradient differs by {d}");
        let norm: f32 = r.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(norm > 1e-3, "{name} gradient is (near) zero");
    }
}

#[test]
fn fused_lora_matches_autograd_on_a_dense_base_with_and_without_dropout() {
    let w = tensor((OUT, IN), 4, 0.5);
    for p in [0.0, 0.3] {
        check(QLinear::dense(w.clone(), None).unwrap(), &w, p);
    }
}

#[test]
fn fused_lora_matches_autograd_on_nf4_and_bf16_bases() {
    let w = tensor((OUT, IN), 5, 0.5);
    let stored = HashMap::from([("l.weight".to_string(), w.to_dtype(DType::BF16).unwrap())]);
    // NF4: the reference multiplies with the dequantised weight.
    let spec = QuantizeSpec {
        kind: Default::default(),
        blocksize: 64,
        double_quant: false,
        include: vec!["l.".into()],
        skip: vec![],
        compact_frozen: false,
    };
    let ws =
        Weights::from_tensors(stored.clone(), DType::F32, &Device::Cpu).with_quantize(Some(spec));
    let nf4 = QLinear::load(&ws.pp("l"), IN, OUT, false).unwrap();
    assert!(matches!(nf4.weight(), QWeight::Nf4(_)));
    let deq = nf4.dense_weight().unwrap();
    check(nf4, &deq, 0.2);
    // bf16 kept as stored: the reference is the same values in f32.
    let spec = QuantizeSpec {
        kind: Default::default(),
        blocksize: 64,
        double_quant: false,
        include: vec!["nothing.".into()],
        skip: vec![],
        compact_frozen: true,
    };
    let ws = Weights::from_tensors(stored, DType::F32, &Device::Cpu).with_quantize(Some(spec));
    let half = QLinear::load(&ws.pp("l"), IN, OUT, false).unwrap();
    assert!(matches!(half.weight(), QWeight::Half(_)));
    assert_eq!(half.weight_bytes(), OUT * IN * 2);
    let up = w
        .to_dtype(DType::BF16)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    assert_eq!(max_diff(&half.dense_weight().unwrap(), &up), 0.0);
    check(half, &up, 0.2);
}

#[test]
fn a_frozen_dense_layer_passes_the_input_gradient_and_computes_no_weight_gradient() {
    let w = tensor((OUT, IN), 6, 0.5);
    let layer = QLinear::dense(w.clone(), None).unwrap();
    let x = Var::from_tensor(&tensor((5, IN), 7, 1.0)).unwrap();
    let y = layer.forward(x.as_tensor()).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    let gx = grads.get(x.as_tensor()).unwrap();
    // d/dx sum(x W^T) = 1 W.
    let want = Tensor::ones((5, OUT), DType::F32, &Device::Cpu)
        .unwrap()
        .matmul(&w)
        .unwrap();
    assert!(max_diff(gx, &want) < 1e-6);
    // candle's own matmul backward would also store a `[IN, OUT]` gradient for the weight.
    assert_eq!(
        grads.get_ids().count(),
        1,
        "gradients stored besides the input's"
    );
}
