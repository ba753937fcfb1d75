//! `deepsynth train` on the tiny fixture model (shared via `#[path]`): the options every such
//! test passes, and a five-document JSONL dataset.

use std::path::{Path, PathBuf};

/// `train` with the tiny model and tokenizer, 256-pixel pages, batch 2 without accumulation,
/// 4-token evaluation summaries, offline.
pub const TINY_TRAIN: [&str; 16] = [
    "train",
    "--model",
    "tests/fixtures/deepseek-ocr-tiny",
    "--tokenizer",
    "tests/fixtures/tiny-char-tokenizer/tokenizer.json",
    "--mode",
    "256",
    "--render-preset",
    "tiny",
    "--batch-size",
    "2",
    "--gradient-accumulation-steps",
    "1",
    "--max-new-tokens",
    "4",
    "--offline",
];

/// Writes `dir/data.jsonl`: five short news items (`id`, `text`, `summary`).
pub fn dataset(dir: &Path) -> PathBuf {
    let p = dir.join("data.jsonl");
    let rows = [
        (
            "The council approved the new park on Monday.",
            "Park approved.",
        ),
        (
            "Heavy rain closed two roads in the north.",
            "Rain closes roads.",
        ),
        ("The museum opens a modern art wing.", "Museum expands."),
        (
            "Local team wins the cup after a late goal.",
            "Team wins cup.",
        ),
        ("The library stays open late for exams.", "Library hours."),
    ];
    let text: String = rows
        .iter()
        .enumerate()
        .map(|(i, (t, s))| {
            serde_json::json!({"id": format!("n{i}"), "text": t, "summary": s}).to_string() + "\n"
        })
        .collect();
    std::fs::write(&p, text).unwrap();
    p
}
