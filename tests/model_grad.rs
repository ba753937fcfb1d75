//! Gradients flow through the decoder (attention, RMSNorm, MoE gate and experts) to the input
//! embeddings and to decoder weights: analytic directional derivatives from candle's backward
//! equal central finite differences of the loss, in f64, on the tiny fixture model.

use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use deepsynth::model::{DeepseekOcr, ForwardOptions, ImageInput};
use deepsynth::quant::QLinear;

#[path = "common/fd.rs"]
mod fd;
use fd::{direction, scalar};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deepseek-ocr-tiny")
}

struct Setup {
    model: DeepseekOcr,
    embeds: Tensor,
    labels: Vec<Vec<i64>>,
}

fn setup() -> Setup {
    let dev = Device::Cpu;
    let g = candle_core::safetensors::load(fixture().join("goldens.safetensors"), &dev).unwrap();
    let model = DeepseekOcr::from_dir(fixture(), DType::F64, &dev).unwrap();
    let ids = g["full_input_ids"].to_dtype(DType::U32).unwrap();
    let img = ImageInput {
        global: g["pixel_values_global"].i(0).unwrap(),
        tiles: None,
    };
    let feats = model.encode_images(&[vec![img]]).unwrap();
    let embeds = model
        .merge_embeddings(&ids, &g["full_images_seq_mask"], &feats)
        .unwrap();
    let labels = vec![g["labels"].i(0).unwrap().to_vec1::<i64>().unwrap()];
    Setup {
        model,
        embeds,
        labels,
    }
}

fn loss(m: &DeepseekOcr, embeds: &Tensor, labels: &[Vec<i64>]) -> Tensor {
    m.forward_embeds(embeds, None, Some(labels), ForwardOptions::default())
        .unwrap()
        .loss
        .unwrap()
}

#[test]
fn loss_gradient_wrt_input_embeddings_matches_finite_differences() {
    let s = setup();
    let var = Var::from_tensor(&s.embeds).unwrap();
    let l = loss(&s.model, var.as_tensor(), &s.labels);
    let grads = l.backward().unwrap();
    let g = grads
        .get(var.as_tensor())
        .expect("gradient reaches the embeddings");
    let d = direction(s.embeds.dims(), 7);
    let analytic = scalar(&(g * &d).unwrap().sum_all().unwrap());
    let h = 1e-5;
    let lp = scalar(&loss(
        &s.model,
        &(&s.embeds + (&d * h).unwrap()).unwrap(),
        &s.labels,
    ));
    let lm = scalar(&loss(
        &s.model,
        &(&s.embeds - (&d * h).unwrap()).unwrap(),
        &s.labels,
    ));
    let numeric = (lp - lm) / (2.0 * h);
    eprintln!("d loss / d embeds . D: analytic {analytic:.10}, numeric {numeric:.10}");
    assert!(
        (analytic - numeric).abs() < 1e-7 * (1.0 + numeric.abs()),
        "analytic {analytic} vs numeric {numeric}"
    );
    // Every position before the last target contributes (attention mixes positions).
    let per_pos: Vec<f64> = g
        .abs()
        .unwrap()
        .sum(2)
        .unwrap()
        .i(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(per_pos[..34].iter().all(|&v| v > 0.0), "{per_pos:?}");
}

#[test]
fn loss_gradient_wrt_decoder_weights_matches_finite_differences() {
    let mut s = setup();
    // Layer 0's q_proj (its gradient passes every later layer's attention, norms and MoE).
    let q0 = s.model.decoder.layers[0]
        .self_attn
        .q_proj
        .base
        .dense_weight()
        .unwrap();
    let q_var = Var::from_tensor(&q0).unwrap();
    s.model.decoder.layers[0].self_attn.q_proj.base = QLinear::from_var(&q_var, None).unwrap();
    let l = loss(&s.model, &s.embeds, &s.labels);
    let grads = l.backward().unwrap();
    let g = grads
        .get(q_var.as_tensor())
        .expect("gradient reaches q_proj");
    let d = direction(q0.dims(), 11);
    let analytic = scalar(&(g * &d).unwrap().sum_all().unwrap());
    let h = 1e-5;
    let mut eval = |w: Tensor| {
        s.model.decoder.layers[0].self_attn.q_proj.base = QLinear::dense(w, None).unwrap();
        scalar(&loss(&s.model, &s.embeds, &s.labels))
    };
    let lp = eval((&q0 + (&d * h).unwrap()).unwrap());
    let lm = eval((&q0 - (&d * h).unwrap()).unwrap());
    let numeric = (lp - lm) / (2.0 * h);
    eprintln!("d loss / d q_proj(0) . D: analytic {analytic:.10}, numeric {numeric:.10}");
    assert!(
        (analytic - numeric).abs() < 1e-7 * (1.0 + numeric.abs()),
        "analytic {analytic} vs numeric {numeric}"
    );
}
