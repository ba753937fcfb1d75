//! Random-initialised checkpoints in DeepSeek-OCR's real tensor names and shapes, for tests
//! and benchmarks of the full-size configuration without a download.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::config::Config;
use crate::rng::Rng;
use crate::weights::WeightsError;

/// Every tensor of the checkpoint with its shape, in the real checkpoint's names (the unused
/// CLIP patch embedding included, as in `deepseek-ai/DeepSeek-OCR`).
pub fn tensor_specs(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<(String, Vec<usize>)> = Vec::new();
    let mut add = |name: String, shape: &[usize]| v.push((name, shape.to_vec()));
    let d = &cfg.decoder;
    let h = d.hidden_size;
    let hd = d.head_dim();
    add("model.embed_tokens.weight".into(), &[d.vocab_size, h]);
    add("lm_head.weight".into(), &[d.vocab_size, h]);
    add("model.norm.weight".into(), &[h]);
    let mlp = |add: &mut dyn FnMut(String, &[usize]), p: String, inter: usize| {
        add(format!("{p}.gate_proj.weight"), &[inter, h]);
        add(format!("{p}.up_proj.weight"), &[inter, h]);
        add(format!("{p}.down_proj.weight"), &[h, inter]);
    };
    for i in 0..d.num_hidden_layers {
        let p = format!("model.layers.{i}");
        add(format!("{p}.input_layernorm.weight"), &[h]);
        add(format!("{p}.post_attention_layernorm.weight"), &[h]);
        add(
            format!("{p}.self_attn.q_proj.weight"),
            &[d.num_attention_heads * hd, h],
        );
        add(
            format!("{p}.self_attn.k_proj.weight"),
            &[d.kv_heads() * hd, h],
        );
        add(
            format!("{p}.self_attn.v_proj.weight"),
            &[d.kv_heads() * hd, h],
        );
        add(
            format!("{p}.self_attn.o_proj.weight"),
            &[h, d.num_attention_heads * hd],
        );
        if d.is_moe_layer(i) {
            add(format!("{p}.mlp.gate.weight"), &[d.routed_experts(), h]);
            for e in 0..d.routed_experts() {
                mlp(
                    &mut add,
                    format!("{p}.mlp.experts.{e}"),
                    d.moe_intermediate_size,
                );
            }
            if let Some(s) = d.n_shared_experts.filter(|&s| s > 0) {
                mlp(
                    &mut add,
                    format!("{p}.mlp.shared_experts"),
                    d.moe_intermediate_size * s,
                );
            }
        } else {
            mlp(&mut add, format!("{p}.mlp"), d.intermediate_size);
        }
    }
    let s = &cfg.vision_config.width.sam_vit_b;
    let grid = cfg.vision_config.image_size / s.patch_size;
    let w = s.width;
    let hdim = w / s.heads;
    let sm = "model.sam_model";
    add(
        format!("{sm}.patch_embed.proj.weight"),
        &[w, 3, s.patch_size, s.patch_size],
    );
    add(format!("{sm}.patch_embed.proj.bias"), &[w]);
    add(format!("{sm}.pos_embed"), &[1, grid, grid, w]);
    let mlp_w = (w as f64 * s.mlp_ratio) as usize;
    for i in 0..s.layers {
        let b = format!("{sm}.blocks.{i}");
        let rel = if s.global_attn_indexes.contains(&i) {
            grid
        } else {
            s.window_size
        };
        for n in ["norm1", "norm2"] {
            add(format!("{b}.{n}.weight"), &[w]);
            add(format!("{b}.{n}.bias"), &[w]);
        }
        add(format!("{b}.attn.qkv.weight"), &[3 * w, w]);
        add(format!("{b}.attn.qkv.bias"), &[3 * w]);
        add(format!("{b}.attn.proj.weight"), &[w, w]);
        add(format!("{b}.attn.proj.bias"), &[w]);
        add(format!("{b}.attn.rel_pos_h"), &[2 * rel - 1, hdim]);
        add(format!("{b}.attn.rel_pos_w"), &[2 * rel - 1, hdim]);
        add(format!("{b}.mlp.lin1.weight"), &[mlp_w, w]);
        add(format!("{b}.mlp.lin1.bias"), &[mlp_w]);
        add(format!("{b}.mlp.lin2.weight"), &[w, mlp_w]);
        add(format!("{b}.mlp.lin2.bias"), &[w]);
    }
    let o = s.out_chans;
    add(format!("{sm}.neck.0.weight"), &[o, w, 1, 1]);
    add(format!("{sm}.neck.1.weight"), &[o]);
    add(format!("{sm}.neck.1.bias"), &[o]);
    add(format!("{sm}.neck.2.weight"), &[o, o, 3, 3]);
    add(format!("{sm}.neck.3.weight"), &[o]);
    add(format!("{sm}.neck.3.bias"), &[o]);
    let (c2, c3) = (
        s.downsample_channels[0],
        cfg.vision_config.sam_output_channels(),
    );
    add(format!("{sm}.net_2.weight"), &[c2, o, 3, 3]);
    add(format!("{sm}.net_3.weight"), &[c3, c2, 3, 3]);
    if let Some(c) = &cfg.vision_config.width.clip_l {
        let vm = "model.vision_model";
        let cg = c.image_size / c.patch_size;
        add(format!("{vm}.embeddings.class_embedding"), &[c.width]);
        add(
            format!("{vm}.embeddings.patch_embedding.weight"),
            &[c.width, 3, c.patch_size, c.patch_size],
        );
        add(
            format!("{vm}.embeddings.position_embedding.weight"),
            &[cg * cg + 1, c.width],
        );
        add(format!("{vm}.pre_layrnorm.weight"), &[c.width]);
        add(format!("{vm}.pre_layrnorm.bias"), &[c.width]);
        for i in 0..c.layers {
            let l = format!("{vm}.transformer.layers.{i}");
            for n in ["layer_norm1", "layer_norm2"] {
                add(format!("{l}.{n}.weight"), &[c.width]);
                add(format!("{l}.{n}.bias"), &[c.width]);
            }
            add(
                format!("{l}.self_attn.qkv_proj.weight"),
                &[3 * c.width, c.width],
            );
            add(format!("{l}.self_attn.qkv_proj.bias"), &[3 * c.width]);
            add(
                format!("{l}.self_attn.out_proj.weight"),
                &[c.width, c.width],
            );
            add(format!("{l}.self_attn.out_proj.bias"), &[c.width]);
            add(format!("{l}.mlp.fc1.weight"), &[c.ffn_hidden_size, c.width]);
            add(format!("{l}.mlp.fc1.bias"), &[c.ffn_hidden_size]);
            add(format!("{l}.mlp.fc2.weight"), &[c.width, c.ffn_hidden_size]);
            add(format!("{l}.mlp.fc2.bias"), &[c.width]);
        }
    }
    if let Some(q) = &cfg.vision_config.width.qwen2 {
        let e = "model.qwen2_model";
        let kv = q.kv_heads * q.head_dim();
        for i in 0..q.layers {
            let l = format!("{e}.model.model.layers.{i}");
            add(format!("{l}.input_layernorm.weight"), &[q.dim]);
            add(format!("{l}.post_attention_layernorm.weight"), &[q.dim]);
            for (n, out) in [("q_proj", q.dim), ("k_proj", kv), ("v_proj", kv)] {
                add(format!("{l}.self_attn.{n}.weight"), &[out, q.dim]);
                add(format!("{l}.self_attn.{n}.bias"), &[out]);
            }
            add(format!("{l}.self_attn.o_proj.weight"), &[q.dim, q.dim]);
            let m = q.intermediate_size;
            add(format!("{l}.mlp.gate_proj.weight"), &[m, q.dim]);
            add(format!("{l}.mlp.up_proj.weight"), &[m, q.dim]);
            add(format!("{l}.mlp.down_proj.weight"), &[q.dim, m]);
        }
        add(format!("{e}.model.model.norm.weight"), &[q.dim]);
        add(format!("{e}.query_768.weight"), &[q.queries_tile, q.dim]);
        add(format!("{e}.query_1024.weight"), &[q.queries_global, q.dim]);
    }
    let p = &cfg.projector_config;
    add(
        "model.projector.layers.weight".into(),
        &[p.n_embed, p.input_dim],
    );
    add("model.projector.layers.bias".into(), &[p.n_embed]);
    if cfg.vision_config.width.clip_l.is_some() {
        add("model.image_newline".into(), &[p.n_embed]);
    }
    add("model.view_seperator".into(), &[p.n_embed]);
    v
}

/// A random tensor for `name`: norm weights near 1, biases near 0, the rest N(0, 0.02)-like
/// (uniform with the same standard deviation, which is faster to draw).
fn random_tensor(
    name: &str,
    shape: &[usize],
    seed: u64,
    dtype: DType,
) -> candle_core::Result<Tensor> {
    let n: usize = shape.iter().product();
    let (mean, std) = if name.ends_with("norm.weight")
        || name.contains("layernorm")
        || name.contains("layer_norm")
        || name.contains("norm1.weight")
        || name.contains("norm2.weight")
        || name.contains("neck.1.weight")
        || name.contains("neck.3.weight")
        || name.ends_with("layrnorm.weight")
    {
        (1.0, 0.02)
    } else {
        (0.0, 0.02)
    };
    let half = std * 3f64.sqrt();
    const CHUNK: usize = 1 << 16;
    let v: Vec<f32> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .flat_map_iter(|c| {
            let mut rng = Rng::new(seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let len = CHUNK.min(n - c * CHUNK);
            (0..len).map(move |_| (mean + rng.uniform(-half, half)) as f32)
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)?.to_dtype(dtype)
}

/// Writes a random checkpoint of `cfg` into `dir` (`config.json`, shards of about
/// `shard_bytes`, `model.safetensors.index.json`), holding one shard in memory at a time.
/// Returns the number of parameters written.
pub fn write_random_checkpoint(
    cfg: &Config,
    dir: &Path,
    dtype: DType,
    seed: u64,
    shard_bytes: usize,
) -> Result<usize, super::ModelError> {
    let io = |e: crate::fsutil::IoError| super::ModelError::from(WeightsError::from(e));
    crate::fsutil::create_dir_all(dir).map_err(io)?;
    crate::fsutil::atomic_write(&dir.join("config.json"), cfg.to_json_string().as_bytes())
        .map_err(io)?;
    let specs = tensor_specs(cfg);
    let mut shards: Vec<Vec<(String, Vec<usize>)>> = vec![Vec::new()];
    let mut size = 0;
    for (name, shape) in specs {
        let bytes = shape.iter().product::<usize>() * dtype.size_in_bytes();
        if size + bytes > shard_bytes && !shards.last().expect("one shard").is_empty() {
            shards.push(Vec::new());
            size = 0;
        }
        size += bytes;
        shards.last_mut().expect("one shard").push((name, shape));
    }
    let count = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut params = 0;
    for (si, shard) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{count:05}.safetensors", si + 1);
        let tensors = shard
            .iter()
            .enumerate()
            .map(|(ti, (name, shape))| {
                params += shape.iter().product::<usize>();
                weight_map.insert(name.clone(), file.clone());
                Ok((
                    name.clone(),
                    random_tensor(
                        name,
                        shape,
                        seed.wrapping_add((si * 100_000 + ti) as u64),
                        dtype,
                    )?,
                ))
            })
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(super::ModelError::from)?;
        let bytes = safetensors::serialize(tensors.iter().map(|(k, t)| (k.clone(), t)), None)
            .map_err(|e| super::ModelError::Input {
                what: "random checkpoint".into(),
                reason: e.to_string(),
            })?;
        drop(tensors);
        crate::fsutil::atomic_write(&dir.join(&file), &bytes).map_err(io)?;
    }
    let index = serde_json::json!({"metadata": {"total_size": params * dtype.size_in_bytes()}, "weight_map": weight_map});
    crate::fsutil::atomic_write(
        &dir.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index)
            .expect("index serialises")
            .as_bytes(),
    )
    .map_err(io)?;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec: 2,710 tensors and 3,336,106,240 parameters in the real checkpoint.
    #[test]
    fn full_size_specs_match_the_real_checkpoint() {
        let specs = tensor_specs(&Config::deepseek_ocr());
        assert_eq!(specs.len(), 2710);
        let params: usize = specs.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(params, 3_336_106_240);
    }
}
