//! The bundled setup: the tiny DeepSeek-OCR of `models/deepsynth-ocr-tiny` (pretrained by
//! `deepsynth pretrain`), loaded with an NF4 decoder and a fresh LoRA adapter (QLoRA), and the
//! crate-README corpus of `data/crates-readme`, ready for [`super::run`]. Used by
//! `deepsynth quickstart` and the training notebooks.
//!
//! Both are embedded in the library, so an installed `deepsynth` finds them from any folder:
//! [`bundled_root`] is the repository when run from it (so a model rebuilt by `deepsynth
//! pretrain` is used at once), else a copy of the embedded files written once, verified, under
//! the user's cache folder.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use candle_core::{DType, Device};

use crate::device::DeviceSpec;

use sha2::{Digest, Sha256};

use super::config::{EarlyStopping, RunConfig, TrainConfig};
use super::examples::{Example, ExampleEncoder};
use super::TrainError;
use crate::data::{load_pairs, ImageMode, PairFields, SpecialIds, TextCodec, Tokenizer};
use crate::lora::{self, LoraConfig, LoraSummary};
use crate::model::{Config, DeepseekOcr};
use crate::render::{Preset, Renderer};
use crate::rng::Rng;
use crate::weights::{QuantizeSpec, Weights};

/// The bundled model folder, relative to the repository root.
pub const BUNDLED_MODEL: &str = "models/deepsynth-ocr-tiny";
/// The bundled training documents.
pub const BUNDLED_TRAIN: &str = "data/crates-readme/train.jsonl";
/// The bundled held-out documents.
pub const BUNDLED_TEST: &str = "data/crates-readme/test.jsonl";
/// The fine-tuning prompt.
pub const SUMMARY_PROMPT: &str = "<image>\nSummarize:";

/// Loads `path` (JSONL/Parquet/CSV with `text` and `summary` columns) as examples.
pub fn load_examples(path: &Path) -> Result<Vec<Example>, TrainError> {
    let fields = PairFields {
        reference: "summary".into(),
        prediction: "text".into(),
        id: "id".into(),
    };
    Ok(load_pairs(path, &fields)?
        .pairs
        .into_iter()
        .map(Example::from)
        .collect())
}

/// A QLoRA-ready model with its data.
pub struct Bundled {
    /// The model: NF4 (or int8, see [`Bundled::load_quantized`]) decoder with a LoRA adapter
    /// attached (B = 0: the base model's output).
    pub model: DeepseekOcr,
    /// Pages (Tiny preset, 512-pixel view), prompt and tokenizer.
    pub enc: ExampleEncoder,
    /// The renderer of the pages (for previews).
    pub renderer: Renderer,
    /// The adapter's settings.
    pub lora: LoraConfig,
    /// What the adapter adds.
    pub adapter: LoraSummary,
    /// Training documents.
    pub train: Vec<Example>,
    /// Held-out documents.
    pub test: Vec<Example>,
}

impl Bundled {
    /// Loads the bundled model and corpus under `root` (the repository root) with a fresh
    /// adapter of `lora` seeded by `seed`.
    pub fn load(root: &Path, lora: LoraConfig, seed: u64) -> Result<Self, TrainError> {
        Self::load_from(
            &root.join(BUNDLED_MODEL),
            &root.join(BUNDLED_TRAIN),
            &root.join(BUNDLED_TEST),
            lora,
            seed,
        )
    }

    /// [`Self::load`] with explicit model folder and data files.
    pub fn load_from(
        model_dir: &Path,
        train: &Path,
        test: &Path,
        lora: LoraConfig,
        seed: u64,
    ) -> Result<Self, TrainError> {
        Self::load_quantized(
            model_dir,
            train,
            test,
            lora,
            seed,
            QuantizeSpec::nf4_decoder(),
        )
    }

    /// [`Self::load_from`] with the decoder quantised by `quantize` (e.g.
    /// [`QuantizeSpec::int8_decoder`] for 8-bit QLoRA) instead of NF4, on the default device
    /// ([`DeviceSpec::Auto`]: the first CUDA GPU of a `cuda` build, else the CPU).
    pub fn load_quantized(
        model_dir: &Path,
        train: &Path,
        test: &Path,
        lora: LoraConfig,
        seed: u64,
        quantize: QuantizeSpec,
    ) -> Result<Self, TrainError> {
        let device = DeviceSpec::Auto.resolve().unwrap_or(Device::Cpu);
        Self::load_on(model_dir, train, test, lora, seed, quantize, &device)
    }

    /// [`Self::load_quantized`] on `device`: the model, its adapters and every batch the
    /// quickstart's run makes live there.
    pub fn load_on(
        model_dir: &Path,
        train: &Path,
        test: &Path,
        mut lora: LoraConfig,
        seed: u64,
        quantize: QuantizeSpec,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let config = Config::from_file(model_dir.join("config.json"))?;
        let w = Weights::from_dir(model_dir, DType::F32, device)
            .map_err(crate::model::ModelError::from)?
            .with_quantize(Some(quantize));
        let mut model = DeepseekOcr::new(&config, &w)?;
        if lora.base_model_name_or_path.is_none() {
            lora.base_model_name_or_path = Some(model_dir.display().to_string());
        }
        let adapter = lora::apply_lora(&mut model, &lora, &mut Rng::new(seed))?;
        let codec: Rc<dyn TextCodec> =
            Rc::new(Tokenizer::from_file(model_dir.join("tokenizer.json"))?);
        let renderer = Renderer::from_preset(Preset::Tiny)?;
        let enc = ExampleEncoder::new(
            renderer.clone(),
            ImageMode::plain(512),
            codec,
            SUMMARY_PROMPT,
            SpecialIds {
                bos: config.decoder.bos_token_id.unwrap_or(0),
                eos: config.decoder.eos_token_id.unwrap_or(1),
                image: config.image_token_id,
            },
            device,
        );
        Ok(Self {
            model,
            enc,
            renderer,
            lora,
            adapter,
            train: load_examples(train)?,
            test: load_examples(test)?,
        })
    }

    /// The quickstart's run settings for `epochs` over the training documents: batch 8, peak
    /// learning rate `lr` with 10% warm-up and cosine decay, evaluation every `eval_every`
    /// steps on `max_eval` held-out documents (greedy, 32 new tokens), early stopping on
    /// ROUGE-L after 3 evaluations without gain.
    pub fn run_config(
        &self,
        epochs: usize,
        lr: f64,
        eval_every: u64,
        max_eval: usize,
    ) -> RunConfig {
        let mut cfg = RunConfig::new(TrainConfig::new(lr, 1));
        cfg.batch_size = 8;
        cfg.epochs = epochs.max(1);
        cfg.eval_every = eval_every;
        cfg.keep_last = 1;
        cfg.max_eval_examples = max_eval;
        cfg.generation.max_new_tokens = 32;
        cfg.train.total_steps = cfg.steps_for(self.train.len()).max(1);
        cfg.train.warmup_steps = cfg.train.total_steps / 10;
        cfg.early_stopping = Some(EarlyStopping {
            metric: "rougeL".into(),
            patience: 3,
            higher_is_better: true,
        });
        cfg
    }
}

/// The bundled files, embedded: `(path under the root, bytes)`.
const EMBEDDED: [(&str, &[u8]); 5] = [
    (
        "models/deepsynth-ocr-tiny/config.json",
        include_bytes!("../../models/deepsynth-ocr-tiny/config.json"),
    ),
    (
        "models/deepsynth-ocr-tiny/model.safetensors",
        include_bytes!("../../models/deepsynth-ocr-tiny/model.safetensors"),
    ),
    (
        "models/deepsynth-ocr-tiny/tokenizer.json",
        include_bytes!("../../models/deepsynth-ocr-tiny/tokenizer.json"),
    ),
    (
        "data/crates-readme/train.jsonl",
        include_bytes!("../../data/crates-readme/train.jsonl"),
    ),
    (
        "data/crates-readme/test.jsonl",
        include_bytes!("../../data/crates-readme/test.jsonl"),
    ),
];

/// The repository root when running from it or from a sub-folder such as `notebooks/`: the
/// first of `.`, `..` that holds [`BUNDLED_MODEL`].
fn repository_root() -> Option<PathBuf> {
    [".", ".."].into_iter().map(PathBuf::from).find(|c| {
        c.join(BUNDLED_MODEL).join("config.json").is_file()
            && c.join(BUNDLED_TRAIN).is_file()
            && c.join(BUNDLED_TEST).is_file()
    })
}

/// The folder holding the embedded copy: `$DEEPSYNTH_CACHE`, else `$XDG_CACHE_HOME/deepsynth`,
/// else `~/.cache/deepsynth`, else the system's temporary folder.
fn cache_folder() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("DEEPSYNTH_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("deepsynth")))
        .or_else(|| env("HOME").map(|p| p.join(".cache/deepsynth")))
        .unwrap_or_else(|| std::env::temp_dir().join("deepsynth"))
}

fn embedded_digest(files: &[(&str, &[u8])]) -> String {
    let mut h = Sha256::new();
    for (name, bytes) in files {
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `dir` holds exactly `files`.
fn holds(dir: &Path, files: &[(&str, &[u8])]) -> bool {
    files
        .iter()
        .all(|(name, bytes)| std::fs::read(dir.join(name)).is_ok_and(|b| b == *bytes))
}

/// Writes `files` under `parent/bundled-<digest>` unless a verified copy is there; returns it.
fn materialise(parent: &Path, files: &[(&str, &[u8])]) -> Result<PathBuf, TrainError> {
    let dir = parent.join(format!("bundled-{}", &embedded_digest(files)[..16]));
    if holds(&dir, files) {
        return Ok(dir);
    }
    crate::fsutil::atomic_dir(
        &dir,
        |tmp| {
            for (name, bytes) in files {
                let path = tmp.join(name);
                if let Some(p) = path.parent() {
                    std::fs::create_dir_all(p)?;
                }
                std::fs::write(&path, bytes)?;
            }
            Ok(())
        },
        |tmp| {
            if holds(tmp, files) {
                Ok(())
            } else {
                Err(std::io::Error::other("the written copy differs"))
            }
        },
    )
    .map_err(|e| TrainError::Checkpoint {
        path: dir.clone(),
        reason: format!("writing the bundled model and corpus: {e}"),
    })?;
    Ok(dir)
}

/// The root under which [`BUNDLED_MODEL`], [`BUNDLED_TRAIN`] and [`BUNDLED_TEST`] are found:
/// the repository (`.` or `..`) when run from it, else the embedded copy written (once,
/// verified) under the user's cache folder.
pub fn bundled_root() -> Result<PathBuf, TrainError> {
    match repository_root() {
        Some(root) => Ok(root),
        None => materialise(&cache_folder(), &EMBEDDED),
    }
}

/// [`bundled_root`], or `.` if the embedded copy cannot be written (loading then names the
/// missing file).
pub fn find_root() -> PathBuf {
    bundled_root().unwrap_or_else(|_| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_copy_is_written_once_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let files: [(&str, &[u8]); 2] = [("a/x.json", b"{}"), ("b.txt", b"hello")];
        let root = materialise(dir.path(), &files).unwrap();
        assert_eq!(std::fs::read(root.join("b.txt")).unwrap(), b"hello");
        assert_eq!(materialise(dir.path(), &files).unwrap(), root);
        // A damaged copy is replaced.
        std::fs::write(root.join("a/x.json"), b"{broken").unwrap();
        assert_eq!(materialise(dir.path(), &files).unwrap(), root);
        assert_eq!(std::fs::read(root.join("a/x.json")).unwrap(), b"{}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary folders left behind");
    }

    #[test]
    fn the_embedded_files_are_the_repository_files() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(holds(repo, &EMBEDDED));
    }
}
