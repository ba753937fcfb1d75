//! Training checkpoints: one folder with the PEFT adapter, `optimizer.safetensors` (AdamW
//! moments), `trainer_state.json` (step, skipped batches, dropout generator, settings, caller
//! state) and `manifest.json` (SHA-256 of every file). Written to a temporary folder, verified by
//! reading everything back, then renamed; loading checks every hash first, so a truncated or
//! altered checkpoint is refused with the file named.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::TrainConfig;
use super::TrainError;
use crate::lora::{self, LoraConfig};
use crate::model::DeepseekOcr;
use crate::rng::Rng;

const OPTIMIZER: &str = "optimizer.safetensors";
const STATE: &str = "trainer_state.json";
const MANIFEST: &str = "manifest.json";

/// `trainer_state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// Optimiser steps done.
    pub step: u64,
    /// Micro-batches skipped so far.
    pub skipped: u64,
    /// LoRA dropout generator.
    pub dropout_rng: Rng,
    /// Settings.
    pub train: TrainConfig,
    /// The caller's state (data position, best metric, ...).
    pub extra: serde_json::Value,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn bad(dir: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: dir.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks `manifest.json` against the files of `dir`.
fn verify(dir: &Path) -> Result<(), TrainError> {
    let text = std::fs::read_to_string(dir.join(MANIFEST))
        .map_err(|e| bad(dir, format!("{MANIFEST}: {e}")))?;
    let manifest: BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| bad(dir, format!("{MANIFEST}: {e}")))?;
    for f in [
        lora::ADAPTER_CONFIG,
        lora::ADAPTER_WEIGHTS,
        OPTIMIZER,
        STATE,
    ] {
        let want = manifest
            .get(f)
            .ok_or_else(|| bad(dir, format!("{MANIFEST} does not list {f}")))?;
        let bytes = std::fs::read(dir.join(f)).map_err(|e| bad(dir, format!("{f}: {e}")))?;
        if &sha256_hex(&bytes) != want {
            return Err(bad(
                dir,
                format!("{f} is corrupted (SHA-256 differs from {MANIFEST})"),
            ));
        }
    }
    Ok(())
}

/// Writes a checkpoint into `dir` atomically.
pub(super) fn save(
    model: &DeepseekOcr,
    lora_cfg: &LoraConfig,
    optimizer: &[(String, Tensor)],
    state: &State,
    dir: &Path,
) -> Result<(), TrainError> {
    let opt_bytes = safetensors::serialize(optimizer.iter().map(|(k, t)| (k.clone(), t)), None)
        .map_err(|e| bad(dir, format!("serialise optimizer state: {e}")))?;
    let state_json = serde_json::to_string_pretty(state).expect("state serialises");
    crate::fsutil::atomic_dir(
        dir,
        |tmp| {
            lora::write_adapter_files(model, lora_cfg, tmp)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            std::fs::write(tmp.join(OPTIMIZER), &opt_bytes)?;
            std::fs::write(tmp.join(STATE), state_json.as_bytes())?;
            let mut manifest = BTreeMap::new();
            for f in [
                lora::ADAPTER_CONFIG,
                lora::ADAPTER_WEIGHTS,
                OPTIMIZER,
                STATE,
            ] {
                manifest.insert(f.to_string(), sha256_hex(&std::fs::read(tmp.join(f))?));
            }
            std::fs::write(
                tmp.join(MANIFEST),
                serde_json::to_string_pretty(&manifest).expect("manifest"),
            )
        },
        |tmp| {
            verify(tmp).map_err(|e| std::io::Error::other(e.to_string()))?;
            lora::verify_adapter_files(tmp).map_err(|e| std::io::Error::other(e.to_string()))?;
            candle_core::safetensors::load(tmp.join(OPTIMIZER), &Device::Cpu)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok(())
        },
    )
    .map_err(|e| bad(dir, e.to_string()))
}

/// The trainer state of a checkpoint, after verifying every file's hash.
pub(super) fn read_state(dir: &Path) -> Result<State, TrainError> {
    verify(dir)?;
    let text =
        std::fs::read_to_string(dir.join(STATE)).map_err(|e| bad(dir, format!("{STATE}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| bad(dir, format!("{STATE}: {e}")))
}

/// Loads a checkpoint after verifying every file's hash.
pub(super) fn load(
    model: &mut DeepseekOcr,
    dir: &Path,
) -> Result<(LoraConfig, HashMap<String, Tensor>, State), TrainError> {
    verify(dir)?;
    let cfg = lora::load_adapter(model, dir)?;
    let tensors = candle_core::safetensors::load(dir.join(OPTIMIZER), &Device::Cpu)
        .map_err(|e| bad(dir, format!("{OPTIMIZER}: {e}")))?;
    let text =
        std::fs::read_to_string(dir.join(STATE)).map_err(|e| bad(dir, format!("{STATE}: {e}")))?;
    let state: State =
        serde_json::from_str(&text).map_err(|e| bad(dir, format!("{STATE}: {e}")))?;
    Ok((cfg, tensors, state))
}
