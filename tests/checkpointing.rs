//! Gradient checkpointing of the decoder layers gives the gradients of the plain backward pass:
//! on the tiny fixture (NF4 decoder, a dense layer and two MoE layers with balancing losses, LoRA
//! r=4 with dropout 0.1 on every linear, every position scored), every adapter's gradient and the
//! loss are compared with and without checkpointing (bit for bit), and a few optimiser steps of
//! the trainer give the same losses and the same adapter.

use std::collections::BTreeMap;

use candle_core::Tensor;
use deepsynth::lora;
use deepsynth::model::decoder::checkpoint;
use deepsynth::model::{Batch, DeepseekOcr, ForwardOptions};
use deepsynth::train::{TrainConfig, Trainer};

#[path = "common/ocr_fixture.rs"]
mod ocr_fixture;
#[path = "common/tiny_cli.rs"]
mod tiny_cli;
use ocr_fixture::ocr_batch_with;

/// The fixture with an NF4 decoder and LoRA r=4 with dropout 0.1 on every linear.
fn model() -> DeepseekOcr {
    ocr_fixture::nf4_with_random_lora(4, 0.1)
}

/// The golden batch with every position scored.
fn batch() -> Batch {
    ocr_batch_with(true)
}

/// The loss, the number of balancing losses and every adapter's gradient of one backward pass.
fn gradients(m: &DeepseekOcr, checkpoint: bool) -> (f32, usize, BTreeMap<String, Tensor>) {
    lora::set_dropout_seed(11);
    let out = m
        .forward(
            &batch(),
            ForwardOptions {
                train: true,
                scored_only: true,
                checkpoint,
                ..Default::default()
            },
        )
        .unwrap();
    let loss: f32 = out.loss.as_ref().unwrap().to_scalar().unwrap();
    let mut grads = out
        .training_objective()
        .unwrap()
        .unwrap()
        .backward()
        .unwrap();
    grads.extend(checkpoint::take_grads()).unwrap();
    let named = lora::trainable_vars(m)
        .into_iter()
        .filter_map(|(n, v)| grads.get(v.as_tensor()).map(|g| (n, g.clone())))
        .collect();
    (loss, out.decoder.aux_losses.len(), named)
}

#[test]
fn checkpointed_layers_give_the_plain_gradients() {
    let m = model();
    let (loss, aux, plain) = gradients(&m, false);
    let (loss_c, aux_c, ckpt) = gradients(&m, true);
    assert_eq!(loss, loss_c);
    assert_eq!((aux, aux_c), (2, 2), "one balancing loss per MoE layer");
    assert_eq!(
        plain.keys().collect::<Vec<_>>(),
        ckpt.keys().collect::<Vec<_>>(),
        "the adapters that get a gradient"
    );
    // Adapters of unrouted experts get none; every other one does (3 layers, 2 x 4 attention
    // adapters each at least).
    assert!(plain.len() >= 24, "{}", plain.len());
    let (mut exact, mut worst) = (0, 0f32);
    for (name, g) in &plain {
        let c = &ckpt[name];
        let scale: f32 = g.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        let diff: f32 = (g - c)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(scale > 0.0, "{name}: zero gradient");
        worst = worst.max(diff / scale);
        exact += (diff == 0.0) as usize;
    }
    eprintln!(
        "{} of {} adapter gradients bit-identical; largest difference {worst:.2e} of the \
         gradient's largest value",
        exact,
        plain.len()
    );
    // Both passes run the same kernels on the same values (the layer input is tracked exactly
    // when it is without checkpointing; dropout masks replayed), so nothing may differ.
    assert_eq!(exact, plain.len(), "largest difference {worst:e}");
}

#[test]
fn training_steps_with_checkpointing_match() {
    let mut runs = Vec::new();
    for ckpt in [false, true] {
        let m = model();
        lora::set_dropout_seed(5);
        let mut cfg = TrainConfig::new(1e-2, 3);
        cfg.gradient_checkpointing = ckpt;
        let mut t = Trainer::new(&m, cfg).unwrap();
        let losses: Vec<f64> = (0..3)
            .map(|_| t.step(&m, &[batch()]).unwrap().loss)
            .collect();
        let a: Vec<f32> = lora::trainable_vars(&m)[0]
            .1
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        runs.push((losses, a));
    }
    assert_eq!(runs[0].0.len(), 3);
    assert_eq!(runs[0].0, runs[1].0, "losses");
    assert_eq!(runs[0].1, runs[1].1, "adapter after 3 steps");
}

/// `deepsynth train --gradient-checkpointing` (here in the plan's spelling) trains the tiny
/// model to the same losses and the same adapter file as a run without it.
#[test]
fn the_cli_option_gives_the_same_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_cli::dataset(tmp.path());
    let mut runs = Vec::new();
    for (name, extra) in [
        ("plain", None),
        ("ckpt", Some("--unsloth_gradient_checkpointing")),
    ] {
        let out = tmp.path().join(name);
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_deepsynth"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(tiny_cli::TINY_TRAIN)
            .args([
                "--epochs",
                "2",
                "--eval-steps",
                "0",
                "--lora-dropout",
                "0.1",
            ])
            .args(extra)
            .arg("--dataset")
            .arg(&data)
            .arg("--output-dir")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let outcome: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("outcome.json")).unwrap())
                .unwrap();
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("best/trainer_state.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            state["extra"]["run"]["train"]["gradient_checkpointing"],
            extra.is_some()
        );
        let adapter = std::fs::read(out.join("best/adapter_model.safetensors")).unwrap();
        runs.push((outcome["train_losses"].clone(), adapter));
    }
    assert!(runs[0].0.as_array().unwrap().len() >= 4, "{}", runs[0].0);
    assert_eq!(runs[0].0, runs[1].0, "losses");
    assert!(runs[0].1 == runs[1].1, "adapter files differ");
}
