//! The device suite: fixture parity, LoRA and QLoRA gradients, NF4 dequantisation, training
//! steps and a resumption across devices, on the device `DEEPSYNTH_TEST_DEVICE` names (`cpu`
//! by default; `cuda` in the GPU check, `environment/gpu-check.sh`), each against the CPU.
//!
//! On the CPU the "device" model keeps its NF4 codes and scales resident
//! (`QLinear::resident_on`): they are dequantised by the custom op and multiplied by candle's
//! matmul, the path every other device takes, while the reference takes the fused CPU
//! kernels. So the suite compares two code paths even where no GPU is at hand.

#[path = "common/fd.rs"]
mod fd;
#[path = "common/ocr_fixture.rs"]
mod ocr_fixture;
#[path = "common/tiny.rs"]
mod tiny;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use deepsynth::device::{device_name, DeviceSpec};
use deepsynth::lora::{self, LoraConfig, LoraModel};
use deepsynth::model::{Batch, Config, DeepseekOcr, ForwardOptions, ImageInput};
use deepsynth::quant::{Nf4Resident, QWeight, QuantDtype};
use deepsynth::rng::Rng;
use deepsynth::train::RunOutcome;
use deepsynth::weights::{QuantizeSpec, Weights};
use ocr_fixture::{ocr_batch, ocr_fixture};

/// The device under test.
fn device() -> Device {
    let spec: DeviceSpec = std::env::var("DEEPSYNTH_TEST_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()
        .unwrap();
    let d = spec.resolve().unwrap();
    eprintln!("device under test: {}", device_name(&d));
    d
}

/// Every NF4 layer of `m` computing from codes resident on the CPU (the device path).
fn make_resident(m: &mut DeepseekOcr) {
    for (_, l) in m.lora_layers_mut() {
        if matches!(l.base.weight(), QWeight::Nf4(_)) {
            l.base = l.base.resident_on(&Device::Cpu).unwrap();
        }
    }
}

/// The fixture model on `dev` in `dtype`, quantised by `spec`; on the CPU with `resident`,
/// its NF4 layers take the device path.
fn fixture_model(
    spec: Option<QuantizeSpec>,
    dtype: DType,
    dev: &Device,
    resident: bool,
) -> DeepseekOcr {
    let w = Weights::from_dir(&ocr_fixture(), dtype, dev)
        .unwrap()
        .with_quantize(spec);
    let cfg = Config::from_file(ocr_fixture().join("config.json")).unwrap();
    let mut m = DeepseekOcr::new(&cfg, &w).unwrap();
    if resident && dev.is_cpu() {
        make_resident(&mut m);
    }
    m
}

/// `b` with its tensors on `dev`.
fn batch_on(b: Batch, dev: &Device) -> Batch {
    let mv = |t: Tensor| t.to_device(dev).unwrap();
    Batch {
        input_ids: mv(b.input_ids),
        image_mask: mv(b.image_mask),
        images: b
            .images
            .into_iter()
            .map(|imgs| {
                imgs.into_iter()
                    .map(|i| ImageInput {
                        global: mv(i.global),
                        tiles: i.tiles.map(|(t, grid)| (mv(t), grid)),
                    })
                    .collect()
            })
            .collect(),
        attention_mask: b.attention_mask.map(mv),
        labels: b.labels,
    }
}

fn goldens() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(ocr_fixture().join("goldens.safetensors"), &Device::Cpu).unwrap()
}

/// The largest `|a - b|`, computed on the CPU in f64.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let cpu = |t: &Tensor| t.to_device(&Device::Cpu).unwrap();
    fd::max_abs_diff_f64(&cpu(a), &cpu(b))
}

fn max_abs(t: &Tensor) -> f64 {
    max_abs_diff(t, &t.zeros_like().unwrap())
}

/// f32 logits and loss on the device equal the reference's within the CPU tolerances (4e-6,
/// 2e-6); bf16 stays within 0.05 nats of the f32 loss, as on the CPU; an NF4 model on the
/// device gives the CPU's NF4 logits within 2e-5.
#[test]
fn fixture_parity_on_the_device() {
    let dev = device();
    let g = goldens();
    let m = fixture_model(None, DType::F32, &dev, false);
    let out = m
        .forward(&batch_on(ocr_batch(), &dev), ForwardOptions::default())
        .unwrap();
    let d = max_abs_diff(&out.decoder.logits, &g["logits"]);
    assert!(d < 4e-6, "f32 logits differ by {d:e}");
    let loss: f32 = out.loss.unwrap().to_scalar().unwrap();
    let want: f32 = g["loss"].to_vec1::<f32>().unwrap()[0];
    assert!((loss - want).abs() < 2e-6, "f32 loss {loss} vs {want}");

    let m = fixture_model(None, DType::BF16, &dev, false);
    let out = m
        .forward(&batch_on(ocr_batch(), &dev), ForwardOptions::default())
        .unwrap();
    let bf: f32 = out.loss.unwrap().to_scalar().unwrap();
    eprintln!("bf16 loss {bf} vs f32 {want}");
    assert!((bf - want).abs() < 0.05, "bf16 loss {bf} vs {want}");

    let nf4 = Some(QuantizeSpec::nf4_decoder());
    let on_dev = fixture_model(nf4.clone(), DType::F32, &dev, true)
        .forward(&batch_on(ocr_batch(), &dev), ForwardOptions::default())
        .unwrap();
    let on_cpu = fixture_model(nf4, DType::F32, &Device::Cpu, false)
        .forward(&ocr_batch(), ForwardOptions::default())
        .unwrap();
    let d = max_abs_diff(&on_dev.decoder.logits, &on_cpu.decoder.logits);
    eprintln!("NF4 logits, device vs CPU kernels: {d:e}");
    assert!(d < 2e-5, "NF4 logits differ by {d:e}");
}

/// Every NF4 matrix of the fixture, dequantised on the device, equals the host's values bit
/// for bit, in f32 and through the checkpoint's bf16 (the forward and the backward products).
#[test]
fn nf4_dequantisation_on_the_device_is_bit_exact() {
    let dev = device();
    let m = fixture_model(
        Some(QuantizeSpec::nf4_decoder()),
        DType::F32,
        &Device::Cpu,
        false,
    );
    let mut n = 0;
    for (name, l) in m.lora_layers() {
        let QWeight::Nf4(q) = l.base.weight() else {
            continue;
        };
        let r = Nf4Resident::upload(q, &dev).unwrap();
        for (round, out) in [
            (QuantDtype::F32, DType::F32),
            (QuantDtype::Bf16, DType::F32),
            (QuantDtype::F32, DType::BF16),
        ] {
            let got: Vec<u32> = r
                .dequantize(round, out)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let chain = [
                round,
                if out == DType::BF16 {
                    QuantDtype::Bf16
                } else {
                    QuantDtype::F32
                },
            ];
            let mut want = vec![0f32; q.len()];
            q.dequantize_into_as(0, &mut want, &chain);
            let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
            assert!(got == want, "{name}: {round:?} -> {out:?}");
        }
        n += 1;
    }
    assert_eq!(n, 69, "NF4 layers checked");
}

/// The loss and every adapter's gradient (none for an expert no token was routed to), one
/// forward and backward (with the adapters' dropout, seeded).
fn loss_and_grads(m: &DeepseekOcr, dev: &Device) -> (f32, Vec<(String, Option<Tensor>)>) {
    lora::set_dropout_seed(11);
    let out = m
        .forward(
            &batch_on(ocr_batch(), dev),
            ForwardOptions {
                train: true,
                ..Default::default()
            },
        )
        .unwrap();
    let loss = out.loss.unwrap();
    let grads = loss.backward().unwrap();
    let mut v = Vec::new();
    for (name, l) in m.lora_layers() {
        if let Some(ad) = &l.adapter {
            for (k, var) in [("A", &ad.a), ("B", &ad.b)] {
                v.push((format!("{name}.{k}"), grads.get(var.as_tensor()).cloned()));
            }
        }
    }
    (loss.to_scalar().unwrap(), v)
}

/// LoRA over a dense base and QLoRA over an NF4 one: the device's loss and each of the 138
/// adapter gradients equal the CPU's within 1e-5 of the gradient's largest value.
#[test]
fn lora_and_qlora_gradients_on_the_device_equal_the_cpu_ones() {
    let dev = device();
    for spec in [None, Some(QuantizeSpec::nf4_decoder())] {
        let build = |d: &Device, resident: bool| {
            let mut m = fixture_model(spec.clone(), DType::F32, d, resident);
            let mut cfg = LoraConfig::new(4, 8.0).with_dropout(0.1);
            cfg.init_lora_weights = lora::InitLora::Bool(false);
            lora::apply_lora(&mut m, &cfg, &mut Rng::new(3)).unwrap();
            m
        };
        let (l_dev, g_dev) = loss_and_grads(&build(&dev, true), &dev);
        let (l_cpu, g_cpu) = loss_and_grads(&build(&Device::Cpu, false), &Device::Cpu);
        let what = if spec.is_some() { "QLoRA" } else { "LoRA" };
        assert!(
            (l_dev - l_cpu).abs() < 1e-5,
            "{what} loss {l_dev} vs {l_cpu}"
        );
        assert_eq!(g_dev.len(), 138, "{what}: adapter gradients");
        let mut worst = 0f64;
        for ((name, a), (_, b)) in g_dev.iter().zip(&g_cpu) {
            let (Some(a), Some(b)) = (a, b) else {
                panic!("{what} {name}: no gradient");
            };
            assert_eq!(
                a.device().location(),
                dev.location(),
                "{name} lives on the device"
            );
            let rel = max_abs_diff(a, b) / max_abs(b).max(1e-12);
            worst = worst.max(rel);
            assert!(rel < 1e-5, "{what} {name}: relative difference {rel:e}");
        }
        eprintln!("{what}: loss {l_dev} vs {l_cpu}, worst gradient difference {worst:e}");
    }
}

fn run_on(
    dev: &Device,
    resident: bool,
    out: &std::path::Path,
    resume: Option<&std::path::Path>,
) -> RunOutcome {
    let mut m = tiny::model_on(&Config::tiny(), dev);
    if resident && dev.is_cpu() {
        make_resident(&mut m);
    }
    let enc = tiny::encoder_on(
        deepsynth::render::Renderer::from_preset(deepsynth::render::Preset::Tiny).unwrap(),
        dev,
    );
    let (train, held) = tiny::examples();
    let (o, _) = tiny::try_run(
        &mut m,
        &enc,
        &train,
        &held,
        &tiny::run_config(4, 2),
        &LoraConfig::new(4, 8.0),
        out,
        resume,
    );
    o.unwrap()
}

/// Four QLoRA steps on the device follow the CPU run's losses (within 1e-4); the run's
/// step-2 checkpoint resumes on the CPU and steps 3-4 repeat the device's losses (within
/// 1e-4): checkpoints do not depend on the device.
#[test]
fn training_on_the_device_follows_the_cpu_and_resumes_on_the_cpu() {
    let dev = device();
    let tmp = tempfile::tempdir().unwrap();
    let on_dev = run_on(&dev, true, &tmp.path().join("device"), None);
    let on_cpu = run_on(&Device::Cpu, false, &tmp.path().join("cpu"), None);
    assert_eq!(on_dev.steps, 4);
    eprintln!(
        "losses: device {:?}, CPU {:?}",
        on_dev.train_losses, on_cpu.train_losses
    );
    let close = |a: &[f64], b: &[f64], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-4, "{what}: step {} {x} vs {y}", i + 1);
        }
    };
    let losses = |o: &RunOutcome| o.train_losses.iter().map(|(_, l)| *l).collect::<Vec<_>>();
    close(&losses(&on_dev), &losses(&on_cpu), "device vs CPU");
    let resumed = run_on(
        &Device::Cpu,
        false,
        &tmp.path().join("resumed"),
        Some(&tmp.path().join("device/checkpoint-000002")),
    );
    close(
        &losses(&resumed),
        &losses(&on_dev),
        "resumed on the CPU vs device",
    );
}

/// bf16 compute (PEFT + bitsandbytes' `compute_dtype=bf16`): the frozen weights and products
/// are bf16, the LoRA matrices, their gradients and the AdamW moments f32; the loss stays
/// within 0.05 nats of the f32 model's and the gradients point the same way (cosine above
/// 0.95 over all adapters; single tensors can differ more, since bf16 rounding moves some
/// tokens to other experts).
#[test]
fn bf16_compute_keeps_f32_master_weights_gradients_and_moments() {
    let dev = device();
    let build = |dtype: DType| {
        let mut m = fixture_model(Some(QuantizeSpec::nf4_decoder()), dtype, &dev, true);
        let mut cfg = LoraConfig::new(4, 8.0);
        cfg.init_lora_weights = lora::InitLora::Bool(false);
        lora::apply_lora(&mut m, &cfg, &mut Rng::new(3)).unwrap();
        m
    };
    let bf = build(DType::BF16);
    let (l16, g16) = loss_and_grads(&bf, &dev);
    let (l32, g32) = loss_and_grads(&build(DType::F32), &dev);
    eprintln!("bf16 loss {l16}, f32 loss {l32}");
    assert!((l16 - l32).abs() < 0.05, "bf16 loss {l16} vs f32 {l32}");
    let (mut dot, mut n16, mut n32) = (0f64, 0f64, 0f64);
    let mut compared = 0;
    for ((name, a), (_, b)) in g16.iter().zip(&g32) {
        // bf16 rounding can route a token to another expert: compare where both have one.
        let (Some(a), Some(b)) = (a, b) else {
            assert!(name.contains(".experts."), "{name}: no gradient");
            continue;
        };
        compared += 1;
        assert_eq!(a.dtype(), DType::F32, "{name}: gradient dtype");
        let f = |t: &Tensor| -> Vec<f64> {
            let v: Vec<f32> = t
                .to_device(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            v.into_iter().map(f64::from).collect()
        };
        for (x, y) in f(a).into_iter().zip(f(b)) {
            dot += x * y;
            n16 += x * x;
            n32 += y * y;
        }
    }
    let cos = dot / (n16.sqrt() * n32.sqrt());
    eprintln!("bf16 vs f32: {compared} gradients compared, cosine {cos:.6}");
    assert!(cos > 0.95, "bf16 gradients point elsewhere: cosine {cos}");
    assert!(compared >= 100, "only {compared} gradients in both");
    let params: Vec<(String, candle_core::Var)> = bf
        .lora_layers()
        .into_iter()
        .filter_map(|(n, l)| l.adapter.as_ref().map(|a| (n, a.clone())))
        .flat_map(|(n, a)| [(format!("{n}.A"), a.a), (format!("{n}.B"), a.b)])
        .collect();
    assert!(params.iter().all(|(_, v)| v.dtype() == DType::F32));
    let mut opt =
        deepsynth::train::AdamW::new(params, deepsynth::train::AdamWConfig::default()).unwrap();
    let grads = g16
        .into_iter()
        .filter_map(|(n, g)| g.map(|g| (n, g)))
        .collect();
    opt.step(&grads, 1e-3).unwrap();
    let (state, _) = opt.state();
    assert!(state
        .iter()
        .all(|(_, t)| t.dtype() == DType::F32 && t.device().location() == dev.location()));
}
