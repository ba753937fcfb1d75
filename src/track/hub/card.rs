//! The model card (`README.md`) of a pushed adapter, shaped like the cards PEFT and
//! `transformers.Trainer` write: YAML metadata (`base_model`, `library_name: peft`, `tags`,
//! `datasets`, a `model-index` with the best held-out metrics) and sections for the evaluation
//! results, every evaluation of the run, and the training settings.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use crate::track::RunSummary;

/// What a model card says.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CardInputs {
    /// The repository (`owner/name`).
    pub repo: String,
    /// The base model: a Hub id goes in the metadata, a local folder in the text only.
    pub base_model: Option<String>,
    /// The training and evaluation data: Hub ids go in the metadata.
    pub datasets: Vec<String>,
    /// The run's summary (best metrics, settings).
    pub summary: RunSummary,
    /// Every evaluation: step, training loss at that step, metric values.
    pub evals: Vec<(u64, Option<f64>, BTreeMap<String, f64>)>,
    /// The adapter's `adapter_config.json`.
    pub adapter: Option<Value>,
}

/// A YAML scalar: JSON's string syntax, which YAML reads as the same string.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// The Hub id in `s`, if it names one: `owner/name[@revision]` that is not a local path, or
/// `hf://owner/name[@revision][/config]/split` (a dataset split).
fn hub_id(s: &str) -> Option<&str> {
    let (s, split) = match s.strip_prefix("hf://") {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    let mut parts = s.split('/');
    let (owner, name) = (parts.next()?, parts.next()?);
    if !split && (parts.next().is_some() || std::path::Path::new(s).exists()) {
        return None;
    }
    let name = name.split('@').next()?;
    let id = &s[..owner.len() + 1 + name.len()];
    super::RepoId::parse(id).is_ok().then_some(id)
}

/// The last part of a local path (the card does not show where files were on the machine).
fn local_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// Cells like Trainer's tables: four decimals, `-` when missing.
fn cell(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

/// The card's text.
pub fn model_card(c: &CardInputs) -> String {
    let base = c.base_model.as_deref();
    let base_id = base.and_then(hub_id);
    let datasets: Vec<&str> = c.datasets.iter().filter_map(|d| hub_id(d)).collect();
    let s = &c.summary;
    let mut y = String::from("---\n");
    if let Some(b) = base_id {
        let _ = writeln!(y, "base_model: {}", q(b));
    }
    y.push_str("library_name: peft\n");
    let mut tags: Vec<String> = [
        "deepsynth",
        "lora",
        "qlora",
        "summarization",
        "deepseek-ocr",
    ]
    .map(String::from)
    .to_vec();
    if let Some(b) = base_id {
        tags.insert(0, format!("base_model:adapter:{b}"));
    }
    y.push_str("tags:\n");
    for t in &tags {
        let _ = writeln!(y, "- {}", q(t));
    }
    if !datasets.is_empty() {
        y.push_str("datasets:\n");
        for d in &datasets {
            let _ = writeln!(y, "- {}", q(d));
        }
    }
    y.push_str("pipeline_tag: image-text-to-text\n");
    let _ = write!(y, "model-index:\n- name: {}\n  results:", q(&c.repo));
    if s.best_eval.is_empty() {
        y.push_str(" []\n");
    } else {
        y.push_str("\n  - task:\n      type: summarization\n      name: Summarization\n");
        if let Some(d) = datasets.first() {
            let _ = writeln!(
                y,
                "    dataset:\n      name: {}\n      type: {}",
                q(d),
                q(d)
            );
        }
        y.push_str("    metrics:\n");
        for (k, v) in &s.best_eval {
            let _ = writeln!(
                y,
                "    - type: {}\n      value: {v}\n      name: {}",
                q(k),
                q(&format!("best held-out {k}"))
            );
        }
    }
    y.push_str("---\n\n");

    let _ = writeln!(y, "# {}\n", c.repo);
    let _ = writeln!(
        y,
        "A LoRA adapter for {} that writes summaries of documents read from rendered page \
         images, fine-tuned with DeepSynth (QLoRA on DeepSeek-OCR, in Rust with candle). Load \
         it with PEFT: `PeftModel.from_pretrained(base, \"{}\")`.\n",
        match (base_id, base) {
            (Some(b), _) => format!("[{b}](https://huggingface.co/{b})"),
            (None, Some(local)) =>
                format!("the base model `{}` (a local folder)", local_name(local)),
            (None, None) => "its base model".into(),
        },
        c.repo
    );
    if !c.datasets.is_empty() {
        let names: Vec<String> = c
            .datasets
            .iter()
            .map(|d| match hub_id(d) {
                Some(id) => format!("[{id}](https://huggingface.co/datasets/{id})"),
                None => format!("`{}` (a local file)", local_name(d)),
            })
            .collect();
        let _ = writeln!(y, "Data: {}.\n", names.join(", "));
    }
    y.push_str("## Evaluation results\n\n");
    match (&s.watched, s.best) {
        (Some(w), Some((step, v))) => {
            let _ = writeln!(
                y,
                "The adapter is the run's best by held-out {w}: {v:.4} at step {step} \
                 (run status: {}, {} steps).\n",
                s.status, s.steps
            );
        }
        _ => {
            let _ = writeln!(y, "Run status: {}, {} steps.\n", s.status, s.steps);
        }
    }
    if !s.best_eval.is_empty() {
        y.push_str("| metric | best held-out value |\n|---|---|\n");
        for (k, v) in &s.best_eval {
            let _ = writeln!(y, "| {k} | {v:.4} |");
        }
        y.push('\n');
    }
    if !c.evals.is_empty() {
        let names: std::collections::BTreeSet<&String> =
            c.evals.iter().flat_map(|(_, _, m)| m.keys()).collect();
        y.push_str("### Training results\n\n| step | training loss |");
        for n in &names {
            let _ = write!(y, " {n} |");
        }
        y.push_str("\n|---|---|");
        y.push_str(&"---|".repeat(names.len()));
        y.push('\n');
        for (step, loss, m) in &c.evals {
            let _ = write!(y, "| {step} | {} |", cell(*loss));
            for n in &names {
                let _ = write!(y, " {} |", cell(m.get(*n).copied()));
            }
            y.push('\n');
        }
        y.push('\n');
    }
    y.push_str("## Training procedure\n\n### Training hyperparameters\n\n");
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let a = c.adapter.as_ref();
    let rows = [
        ("learning_rate", s.learning_rate.map(|v| format!("{v:e}"))),
        ("train_batch_size", s.batch_size.map(|v| v.to_string())),
        (
            "gradient_accumulation_steps",
            s.grad_accum.map(|v| v.to_string()),
        ),
        ("num_epochs", s.epochs.map(|v| v.to_string())),
        ("lora_r", s.lora_r.map(|v| v.to_string())),
        ("lora_alpha", s.lora_alpha.map(|v| v.to_string())),
        (
            "lora_dropout",
            a.and_then(|a| a["lora_dropout"].as_f64())
                .map(|v| v.to_string()),
        ),
        (
            "target_modules",
            a.map(|a| &a["target_modules"])
                .filter(|t| !t.is_null())
                .map(|t| t.to_string()),
        ),
        (
            "last_training_loss",
            s.last_train_loss.map(|v| format!("{v:.4}")),
        ),
        ("wall_time_s", Some(format!("{:.1}", s.wall_time_s))),
    ];
    for (k, v) in rows {
        let _ = writeln!(y, "- {k}: {}", opt(v));
    }
    let _ = writeln!(
        y,
        "\n### Framework versions\n\n- DeepSynth {} (Rust, candle); the adapter is PEFT's format \
         (`adapter_config.json`, `adapter_model.safetensors`)",
        env!("CARGO_PKG_VERSION")
    );
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_has_peft_metadata_and_tables() {
        let mut summary = RunSummary {
            status: "finished".into(),
            steps: 20,
            watched: Some("rougeL".into()),
            best: Some((10, 0.25)),
            learning_rate: Some(2e-4),
            lora_r: Some(8),
            ..Default::default()
        };
        summary.best_eval.insert("rougeL".into(), 0.25);
        summary.best_eval.insert("loss".into(), 1.5);
        let c = CardInputs {
            repo: "me/ocr-sum".into(),
            base_model: Some("deepseek-ai/DeepSeek-OCR".into()),
            datasets: vec![
                "hf://ccdv/cnn_dailymail/3.0.0/train".into(),
                "local.jsonl".into(),
            ],
            summary,
            evals: vec![(10, Some(2.0), [("rougeL".to_string(), 0.25)].into())],
            adapter: Some(serde_json::json!({"lora_dropout": 0.05, "target_modules": ["q_proj"]})),
        };
        let card = model_card(&c);
        let (front, body) = card[4..].split_once("\n---\n").unwrap();
        for want in [
            "base_model: \"deepseek-ai/DeepSeek-OCR\"",
            "library_name: peft",
            "- \"base_model:adapter:deepseek-ai/DeepSeek-OCR\"",
            "- \"qlora\"",
            "datasets:\n- \"ccdv/cnn_dailymail\"\n",
            "- type: \"rougeL\"\n      value: 0.25\n",
        ] {
            assert!(front.contains(want), "{want} missing from\n{front}");
        }
        assert!(!front.contains("local.jsonl"));
        assert!(body.contains("| rougeL | 0.2500 |"), "{body}");
        assert!(body.contains("| 10 | 2.0000 | 0.2500 |"), "{body}");
        assert!(body.contains("- learning_rate: 2e-4"), "{body}");
        assert!(body.contains("- target_modules: [\"q_proj\"]"), "{body}");
        // A local base model stays out of the metadata.
        let local = CardInputs {
            base_model: Some("tests/fixtures/deepseek-ocr-tiny".into()),
            ..c
        };
        let card = model_card(&local);
        assert!(!card.contains("base_model:"), "{card}");
        assert!(
            card.contains("`deepseek-ocr-tiny` (a local folder)"),
            "{card}"
        );
        assert!(card.contains("`local.jsonl` (a local file)"), "{card}");
        assert!(!card.contains("tests/fixtures"), "{card}");
    }
}
