//! The bundled setup: the tiny DeepSeek-OCR of `models/deepsynth-ocr-tiny` (pretrained by
//! `deepsynth pretrain`), loaded with an NF4 decoder and a fresh LoRA adapter (QLoRA), and the
//! crate-README corpus of `data/crates-readme`, ready for [`super::run`]. Used by
//! `deepsynth quickstart` and the training notebooks.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use candle_core::{DType, Device};

use super::examples::{Example, ExampleEncoder};
use super::run::{EarlyStopping, RunConfig};
use super::trainer::TrainConfig;
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
pub fn load_examples(path: &Path) -> crate::Result<Vec<Example>> {
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
    /// The model: NF4 decoder with a LoRA adapter attached (B = 0: the base model's output).
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
    pub fn load(root: &Path, lora: LoraConfig, seed: u64) -> crate::Result<Self> {
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
        mut lora: LoraConfig,
        seed: u64,
    ) -> crate::Result<Self> {
        let config = Config::from_file(model_dir.join("config.json"))?;
        let w = Weights::from_dir(model_dir, DType::F32, &Device::Cpu)?
            .with_quantize(Some(QuantizeSpec::nf4_decoder()));
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
            &Device::Cpu,
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

/// The repository root when running from it or from a sub-folder such as `notebooks/`: the
/// first of `.`, `..` that holds [`BUNDLED_MODEL`].
pub fn find_root() -> PathBuf {
    for c in [".", ".."] {
        if Path::new(c)
            .join(BUNDLED_MODEL)
            .join("config.json")
            .is_file()
        {
            return PathBuf::from(c);
        }
    }
    PathBuf::from(".")
}
