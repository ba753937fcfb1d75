//! LoRA on DeepSeek-OCR: PEFT's trainable-parameter formula (checked against Unsloth's published
//! count for the real model), gradients reaching every adapter through NF4 bases, and merge.

use deepsynth::lora::{self, LoraConfig, LoraModel};
use deepsynth::model::{Batch, Config, DeepseekOcr, ForwardOptions};
use deepsynth::rng::Rng;
use deepsynth::weights::QuantizeSpec;

#[path = "common/ocr_fixture.rs"]
mod ocr_fixture;

/// PEFT's count: `r * (in + out)` for every targeted linear, from the config alone.
fn peft_formula(cfg: &Config, r: usize) -> usize {
    let d = &cfg.decoder;
    let h = d.hidden_size;
    let attn = 4 * r * (h + h);
    let mut total = 0;
    for i in 0..d.num_hidden_layers {
        total += attn;
        if d.is_moe_layer(i) {
            let e = 3 * r * (h + d.moe_intermediate_size);
            let s = 3 * r * (h + d.moe_intermediate_size * d.n_shared_experts.unwrap_or(0));
            total += d.routed_experts() * e + s;
        } else {
            total += 3 * r * (h + d.intermediate_size);
        }
    }
    total
}

#[test]
fn full_size_count_equals_unsloths_published_number() {
    // Unsloth's DeepSeek-OCR notebook: r=16 on q,k,v,o,gate,up,down -> 77,509,632 trainable.
    assert_eq!(peft_formula(&Config::deepseek_ocr(), 16), 77_509_632);
}

fn tiny(quantize: bool) -> DeepseekOcr {
    ocr_fixture::tiny_ocr(quantize.then(QuantizeSpec::nf4_decoder))
}

fn batch() -> Batch {
    ocr_fixture::ocr_batch()
}

#[test]
fn tiny_model_counts_and_every_adapter_gets_a_gradient() {
    let mut m = tiny(true);
    let mut cfg = LoraConfig::new(4, 8.0).with_dropout(0.0);
    // Random B so that gradients reach A too (with B = 0 only B gets one at step 0).
    cfg.init_lora_weights = lora::InitLora::Bool(false);
    let s = lora::apply_lora(&mut m, &cfg, &mut Rng::new(1)).unwrap();
    assert_eq!(s.trainable_params, peft_formula(m.config(), 4));
    // 3 layers x 4 attention + 3 dense MLP + 2 x (8 experts + 1 shared) x 3.
    assert_eq!(s.adapted_layers, 12 + 3 + 2 * 9 * 3);
    // Score every position, so that every routed token of every layer reaches the loss.
    let mut b = batch();
    let ids: Vec<u32> = b.input_ids.flatten_all().unwrap().to_vec1().unwrap();
    b.labels = Some(vec![ids.iter().map(|&i| i as i64).collect()]);
    let out = m
        .forward(
            &b,
            ForwardOptions {
                train: true,
                trace: true,
                ..Default::default()
            },
        )
        .unwrap();
    let objective = out.training_objective().unwrap().unwrap();
    assert_eq!(
        out.decoder.aux_losses.len(),
        2,
        "one balancing loss per MoE layer"
    );
    let grads = objective.backward().unwrap();
    let vars = lora::trainable_vars(&m);
    assert_eq!(vars.len(), 2 * s.adapted_layers);
    let mut zero = Vec::new();
    for (name, v) in &vars {
        let n: f32 = match grads.get(v.as_tensor()) {
            Some(g) => g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap(),
            None => 0.0,
        };
        assert!(n.is_finite(), "{name}");
        if n == 0.0 {
            zero.push(name.clone());
        }
    }
    // Experts that no token is routed to get no gradient, exactly as in PyTorch.
    let routed: Vec<String> = out
        .decoder
        .routing
        .iter()
        .flat_map(|(l, r)| {
            let mut used: Vec<u32> = r.experts.iter().flatten().copied().collect();
            used.sort_unstable();
            used.dedup();
            (0..8u32)
                .filter(move |e| !used.contains(e))
                .map(move |e| format!("model.layers.{l}.mlp.experts.{e}."))
        })
        .collect();
    for name in &zero {
        assert!(
            routed.iter().any(|p| name.contains(p.as_str())),
            "{name} got a zero gradient"
        );
    }
    eprintln!(
        "{} adapters, {} unrouted-expert adapters with zero gradient",
        vars.len(),
        zero.len()
    );
}

#[test]
fn merged_and_unmerged_outputs_agree_on_dense_and_nf4_bases() {
    let logits = |m: &DeepseekOcr| -> Vec<f32> {
        m.forward(&batch(), ForwardOptions::default())
            .unwrap()
            .decoder
            .logits
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    // Yardstick for NF4: how far quantising the base moved the logits.
    let quant_error = diff(&logits(&tiny(false)), &logits(&tiny(true)));
    for quantize in [false, true] {
        let mut m = tiny(quantize);
        lora::apply_lora(&mut m, &LoraConfig::new(4, 8.0), &mut Rng::new(3)).unwrap();
        // A trained-looking update: B ~ N(0, 0.02) as in the PEFT fixture.
        let mut rng = Rng::new(4);
        for (_, layer) in m.lora_layers_mut() {
            let ad = layer.adapter.as_mut().unwrap();
            let n = ad.b.elem_count();
            let v: Vec<f32> = (0..n).map(|_| (rng.normal() * 0.02) as f32).collect();
            ad.b.set(
                &candle_core::Tensor::from_vec(v, ad.b.shape(), &candle_core::Device::Cpu).unwrap(),
            )
            .unwrap();
        }
        let base = logits(&m);
        lora::merge(&mut m).unwrap();
        let merged = logits(&m);
        lora::unmerge(&mut m).unwrap();
        let unmerged = logits(&m);
        let (dm, du) = (diff(&base, &merged), diff(&base, &unmerged));
        eprintln!("quantize={quantize}: merged {dm:.3e}, unmerged {du:.3e}, NF4 base error {quant_error:.3e}");
        if quantize {
            // Requantising W + s B A costs about what quantising W did, never more than twice.
            assert!(dm < 2.0 * quant_error && du < 2.0 * quant_error);
        } else {
            assert!(dm < 1e-5 && du < 1e-5);
        }
        assert!(m.lora_layers().iter().all(|(_, l)| !l.merged));
    }
}

#[test]
fn nf4_model_stays_close_to_the_dense_one() {
    let dense = tiny(false);
    let q = tiny(true);
    let b = batch();
    let ld: f32 = dense
        .forward(&b, ForwardOptions::default())
        .unwrap()
        .loss
        .unwrap()
        .to_scalar()
        .unwrap();
    let lq: f32 = q
        .forward(&b, ForwardOptions::default())
        .unwrap()
        .loss
        .unwrap()
        .to_scalar()
        .unwrap();
    eprintln!("loss dense {ld:.6}, nf4 {lq:.6}");
    assert!((ld - lq).abs() < 0.05 * ld, "{ld} vs {lq}");
}
