//! AdamW, gradient clipping and schedules against torch 2.15 / transformers 5.23 goldens
//! (`tests/fixtures/train/make_adamw_golden.py`).

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use deepsynth::train::{clip_grad_norm, AdamW, AdamWConfig, Decay, Schedule};

fn golden() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/train/adamw_golden.safetensors"
        ),
        &Device::Cpu,
    )
    .unwrap()
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

#[test]
fn adamw_with_clipping_and_linear_warmup_matches_torch() {
    let g = golden();
    let a = Var::from_tensor(&g["a0"]).unwrap();
    let b = Var::from_tensor(&g["b0"]).unwrap();
    let mut opt = AdamW::new(
        vec![("a".into(), a.clone()), ("b".into(), b.clone())],
        AdamWConfig::default(),
    )
    .unwrap();
    let sched = Schedule {
        lr: 2e-3,
        warmup: 3,
        total: 12,
        decay: Decay::Linear,
    };
    for s in 0..12u64 {
        let want_lr: Vec<f64> = g[&format!("lr{s}")].to_vec1().unwrap();
        assert!((sched.lr_at(s) - want_lr[0]).abs() < 1e-15, "lr at {s}");
        let mut grads = HashMap::from([
            ("a".to_string(), g[&format!("ga{s}")].clone()),
            ("b".to_string(), g[&format!("gb{s}")].clone()),
        ]);
        let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
        let want_norm: Vec<f32> = g[&format!("norm{s}")].to_vec1().unwrap();
        assert!(
            (norm as f32 - want_norm[0]).abs() < 1e-5 * want_norm[0],
            "norm at {s}: {norm} vs {}",
            want_norm[0]
        );
        opt.step(&grads, sched.lr_at(s)).unwrap();
        let (da, db) = (
            max_diff(a.as_tensor(), &g[&format!("a{}", s + 1)]),
            max_diff(b.as_tensor(), &g[&format!("b{}", s + 1)]),
        );
        assert!(
            da < 1e-6 && db < 1e-6,
            "step {s}: |a - torch| {da}, |b - torch| {db}"
        );
    }
    assert_eq!(opt.steps(), 12);
}

#[test]
fn cosine_schedule_matches_transformers() {
    let g = golden();
    let want: Vec<f64> = g["cosine_lr"].to_vec1().unwrap();
    let s = Schedule {
        lr: 1.0,
        warmup: 4,
        total: 20,
        decay: Decay::Cosine,
    };
    for (i, w) in want.iter().enumerate() {
        assert!(
            (s.lr_at(i as u64) - w).abs() < 1e-12,
            "step {i}: {} vs {w}",
            s.lr_at(i as u64)
        );
    }
}

#[test]
fn optimizer_state_round_trips() {
    let p =
        Var::from_tensor(&Tensor::ones(3, candle_core::DType::F32, &Device::Cpu).unwrap()).unwrap();
    let mut opt = AdamW::new(vec![("p".into(), p.clone())], AdamWConfig::default()).unwrap();
    let g = HashMap::from([(
        "p".to_string(),
        Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap(),
    )]);
    opt.step(&g, 0.1).unwrap();
    let (state, step) = opt.state();
    let state: HashMap<String, Tensor> = state.into_iter().collect();
    let q = Var::from_tensor(p.as_tensor()).unwrap();
    let mut again = AdamW::new(vec![("p".into(), q.clone())], AdamWConfig::default()).unwrap();
    again.load_state(&state, step).unwrap();
    opt.step(&g, 0.1).unwrap();
    again.step(&g, 0.1).unwrap();
    assert_eq!(max_diff(p.as_tensor(), q.as_tensor()), 0.0);
    let err = again.load_state(&HashMap::new(), 1).unwrap_err();
    assert!(err.contains("p.exp_avg"), "{err}");
}
