//! No input file panics: seeded property tests that mutate valid files (JSON values replaced by
//! zeros, negatives, huge numbers, wrong types or removed; bytes flipped, inserted, truncated)
//! and feed them to every parser a user's file reaches: `config.json`, safetensors headers and
//! tensors, the NF4 quant state, `tokenizer.json`, PEFT adapter files, pairs files (JSONL, CSV)
//! and images. Each case must give `Ok` or a typed error naming the file (and the field where
//! there is one), never a panic.
//!
//! The mutations are drawn from a fixed seed, so a failure names a case that reproduces; the
//! case counts keep the whole file within a few seconds. Sources of the valid files:
//! `tests/fixtures/README.md`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use deepsynth::data::{decode_image, load_pairs, PairFields, TextCodec, Tokenizer};
use deepsynth::model::{Config, Decoder, DecoderConfig, DeepseekOcr};
use deepsynth::quant::hf::load_nf4;
use deepsynth::rng::Rng;
use deepsynth::weights::Weights;
use serde_json::Value;

const FIXTURE: &str = "tests/fixtures/deepseek-ocr-tiny";

/// Runs `f`, failing the test with the case's description if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: panicked: {msg}");
        }
    }
}

/// Replacement values for a JSON leaf.
fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::from(0),
        1 => Value::from(-1),
        2 => Value::from(1u64 << 62),
        3 => Value::from(u64::MAX),
        4 => Value::from(1e300),
        5 => Value::from(-0.5),
        6 => Value::from("x"),
        7 => Value::Null,
        8 => Value::Array(vec![]),
        9 => Value::Object(Default::default()),
        10 => Value::from(true),
        _ => Value::from(3),
    }
}

/// Paths (object keys / array indices) of every node under `v`.
fn paths(v: &Value, prefix: &mut Vec<PathPart>, out: &mut Vec<Vec<PathPart>>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                prefix.push(PathPart::Key(k.clone()));
                out.push(prefix.clone());
                paths(c, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate().take(8) {
                prefix.push(PathPart::Index(i));
                out.push(prefix.clone());
                paths(c, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum PathPart {
    Key(String),
    Index(usize),
}

/// 1 to 3 random mutations of `doc`: a node replaced by an odd value, or removed.
fn mutate_json(doc: &Value, rng: &mut Rng) -> (Value, String) {
    let mut v = doc.clone();
    let mut all = Vec::new();
    paths(&v, &mut Vec::new(), &mut all);
    let mut desc = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let p = &all[rng.below(all.len() as u64) as usize];
        let (last, parents) = p.split_last().expect("non-empty path");
        let pointer: String = parents
            .iter()
            .map(|part| match part {
                PathPart::Key(k) => format!("/{}", k.replace('~', "~0").replace('/', "~1")),
                PathPart::Index(i) => format!("/{i}"),
            })
            .collect();
        let Some(node) = v.pointer_mut(&pointer) else {
            continue;
        };
        let remove = rng.below(4) == 0;
        let new = odd_value(rng);
        match (last, node) {
            (PathPart::Key(k), Value::Object(m)) if remove => {
                m.remove(k);
                desc.push(format!("remove {p:?}"));
            }
            (PathPart::Key(k), Value::Object(m)) => {
                desc.push(format!("{p:?} = {new}"));
                m.insert(k.clone(), new);
            }
            (PathPart::Index(i), Value::Array(a)) if *i < a.len() => {
                desc.push(format!("{p:?} = {new}"));
                a[*i] = new;
            }
            _ => {}
        }
    }
    (v, desc.join("; "))
}

/// Random byte damage: flips, a truncation, an insertion.
fn mutate_bytes(bytes: &[u8], rng: &mut Rng, header: usize) -> (Vec<u8>, String) {
    let mut b = bytes.to_vec();
    let span = header.min(b.len()).max(1) as u64;
    match rng.below(4) {
        0 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let i = rng.below(span) as usize;
                b[i] ^= 1 << rng.below(8);
            }
            (b, format!("{n} bit flips in the first {span} bytes"))
        }
        1 => {
            let at = rng.below(b.len() as u64) as usize;
            b.truncate(at);
            (b, format!("truncated at {at}"))
        }
        2 => {
            let at = rng.below(span) as usize;
            let junk: Vec<u8> = (0..1 + rng.below(16))
                .map(|_| rng.below(256) as u8)
                .collect();
            b.splice(at..at, junk);
            (b, format!("bytes inserted at {at}"))
        }
        _ => {
            let i = rng.below(8.min(b.len() as u64)) as usize;
            b[i] = 0xff;
            (b, format!("header length byte {i} = 0xff"))
        }
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn config_json_never_panics_and_names_the_file() {
    let text = std::fs::read_to_string(Path::new(FIXTURE).join("config.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let weights = Path::new(FIXTURE).join("model.safetensors");
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(1);
    let (mut ok, mut refused) = (0, 0);
    for case in 0..300 {
        let (v, desc) = mutate_json(&doc, &mut rng);
        let path = write(tmp.path(), "config.json", v.to_string().as_bytes());
        let what = format!("config case {case} ({desc})");
        match no_panic(&what, || Config::from_file(&path)) {
            Err(e) => {
                refused += 1;
                let msg = e.to_string();
                assert!(
                    msg.contains("config.json") || msg.contains("unsupported config value"),
                    "{what}: error does not name the file or key: {msg}"
                );
            }
            Ok(cfg) => {
                ok += 1;
                // A config that validates must build (or refuse) the model without panicking.
                let w = Weights::from_safetensors(
                    std::slice::from_ref(&weights),
                    DType::F32,
                    &Device::Cpu,
                )
                .unwrap();
                if let Err(e) = no_panic(&what, || DeepseekOcr::new(&cfg, &w)) {
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
    assert!(ok > 20 && refused > 20, "{ok} accepted, {refused} refused");
}

#[test]
fn safetensors_headers_never_panic_and_name_the_file() {
    let bytes = std::fs::read(Path::new(FIXTURE).join("model.safetensors")).unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(2);
    for case in 0..200 {
        let (b, desc) = mutate_bytes(&bytes, &mut rng, header);
        let path = write(tmp.path(), "model.safetensors", &b);
        let what = format!("safetensors case {case} ({desc})");
        no_panic(&what, || {
            match Weights::from_safetensors(std::slice::from_ref(&path), DType::F32, &Device::Cpu) {
                Err(e) => assert!(e.to_string().contains("model.safetensors"), "{what}: {e}"),
                Ok(w) => {
                    for k in w.keys() {
                        let _ = w.get_raw(&k);
                    }
                }
            }
        });
    }
}

/// The fixture's NF4 layers with their quant-state JSON replaced.
#[test]
fn quant_states_never_panic() {
    let src = Path::new("tests/fixtures/qlora/tiny_llama_bnb4/model.safetensors");
    let tensors = candle_core::safetensors::load(src, &Device::Cpu).unwrap();
    let layer = "model.layers.0.self_attn.q_proj";
    let state_key = format!("{layer}.weight.quant_state.bitsandbytes__nf4");
    let state: Vec<u8> = tensors[&state_key].to_vec1().unwrap();
    let doc: Value = serde_json::from_slice(&state).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(3);
    // The reported defect: blocksize 0 divided by zero.
    let mut cases: Vec<(Value, String)> = vec![
        (
            {
                let mut d = doc.clone();
                d["blocksize"] = Value::from(0);
                d
            },
            "blocksize 0".into(),
        ),
        (
            {
                let mut d = doc.clone();
                d["nested_blocksize"] = Value::from(0);
                d["nested_offset"] = Value::from(0.1);
                d
            },
            "nested_blocksize 0".into(),
        ),
    ];
    cases.extend((0..120).map(|_| mutate_json(&doc, &mut rng)));
    for (case, (v, desc)) in cases.into_iter().enumerate() {
        let mut t = tensors.clone();
        let bytes = v.to_string().into_bytes();
        t.insert(
            state_key.clone(),
            Tensor::from_vec(bytes.clone(), bytes.len(), &Device::Cpu).unwrap(),
        );
        let path = tmp.path().join("q.safetensors");
        candle_core::safetensors::save(&t, &path).unwrap();
        let what = format!("quant state case {case} ({desc})");
        let w = Weights::from_safetensors(std::slice::from_ref(&path), DType::F32, &Device::Cpu)
            .unwrap();
        if let Err(e) = no_panic(&what, || load_nf4(&w.pp(layer))) {
            assert!(e.to_string().contains(layer), "{what}: {e}");
        }
    }
}

#[test]
fn tokenizer_json_never_panics() {
    let path = Path::new("tests/fixtures/tiny-char-tokenizer/tokenizer.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(4);
    for case in 0..150 {
        let (v, desc) = mutate_json(&doc, &mut rng);
        let p = write(tmp.path(), "tokenizer.json", v.to_string().as_bytes());
        let what = format!("tokenizer case {case} ({desc})");
        match no_panic(&what, || Tokenizer::from_file(&p)) {
            Err(e) => assert!(e.to_string().contains("tokenizer.json"), "{what}: {e}"),
            Ok(t) => {
                no_panic(&what, || {
                    if let Ok(ids) = t.encode("Hello, wörld\n<image> ok") {
                        let _ = t.decode(&ids, true);
                    }
                    let _ = t.decode(&[0, 1, 2, 499, 500, 511, 4_000_000_000], false);
                });
            }
        }
    }
}

/// The tiny Llama decoder of the PEFT fixture.
fn tiny_llama(dir: &Path) -> Decoder {
    let cfg: DecoderConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let w = Weights::from_dir(dir, DType::F32, &Device::Cpu).unwrap();
    Decoder::new(&cfg, &w.pp("model"), &w).unwrap()
}

#[test]
fn adapter_files_never_panic_and_name_the_file() {
    let src = Path::new("tests/fixtures/qlora/tiny_llama_qlora_adapter");
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("adapter_config.json")).unwrap())
            .unwrap();
    let weights = std::fs::read(src.join("adapter_model.safetensors")).unwrap();
    let header = 8 + u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let base = Path::new("tests/fixtures/qlora/tiny_llama_bf16");
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(5);
    for case in 0..120 {
        let (c, w, desc) = if case % 2 == 0 {
            let (c, d) = mutate_json(&cfg, &mut rng);
            (c, weights.clone(), d)
        } else {
            let (w, d) = mutate_bytes(&weights, &mut rng, header);
            (cfg.clone(), w, d)
        };
        write(tmp.path(), "adapter_config.json", c.to_string().as_bytes());
        write(tmp.path(), "adapter_model.safetensors", &w);
        let what = format!("adapter case {case} ({desc})");
        let mut model = tiny_llama(base);
        if let Err(e) = no_panic(&what, || {
            deepsynth::lora::load_adapter(&mut model, tmp.path())
        }) {
            let msg = e.to_string();
            assert!(
                msg.contains("adapter_config.json")
                    || msg.contains("adapter_model.safetensors")
                    || msg.contains("lora"),
                "{what}: error names neither file nor field: {msg}"
            );
        }
    }
}

#[test]
fn pairs_files_never_panic_and_name_the_line() {
    let good_jsonl = "{\"id\": \"a\", \"text\": \"Doc one.\", \"summary\": \"One.\"}\n\
                      {\"id\": 2, \"text\": \"Doc two, with \\\"quotes\\\".\", \"summary\": \"Two.\"}\n";
    let good_csv = "id,text,summary\n1,\"Doc, one\",One\n2,\"Multi\nline\",\"Two \"\"q\"\"\"\n";
    let fields = PairFields {
        reference: "summary".into(),
        prediction: "text".into(),
        id: "id".into(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(6);
    for case in 0..300 {
        let (name, src) = if case % 2 == 0 {
            ("d.jsonl", good_jsonl)
        } else {
            ("d.csv", good_csv)
        };
        let (b, desc) = mutate_bytes(src.as_bytes(), &mut rng, src.len());
        let p = write(tmp.path(), name, &b);
        let what = format!("pairs case {case} ({desc})");
        match no_panic(&what, || load_pairs(&p, &fields)) {
            Err(e) => assert!(e.to_string().contains(name), "{what}: {e}"),
            Ok(l) => {
                for bad in &l.bad {
                    assert!(bad.line >= 1, "{what}: bad record without a line");
                }
            }
        }
    }
}

#[test]
fn images_never_panic() {
    let png = std::fs::read(Path::new(FIXTURE).join("source.png")).unwrap();
    let mut rng = Rng::new(7);
    for case in 0..200 {
        let (b, desc) = mutate_bytes(&png, &mut rng, 64);
        let what = format!("image case {case} ({desc})");
        if let Err(e) = no_panic(&what, || decode_image(&b, "page.png")) {
            assert!(e.to_string().contains("page.png"), "{what}: {e}");
        }
    }
    // A header claiming a 100000 x 100000 page is refused without allocating it.
    let mut huge = png.clone();
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    assert!(no_panic("huge image", || decode_image(&huge, "huge.png")).is_err());
}
