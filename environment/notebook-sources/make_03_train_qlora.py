"""Writes notebooks/03-train-qlora.ipynb (run from the repo root), without outputs: `bash environment/run-notebooks.sh --write` adds them."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import code, md, write  # noqa: E402

md("""
# QLoRA fine-tuning, step by step

This notebook fine-tunes the **bundled tiny DeepSeek-OCR** (`models/deepsynth-ocr-tiny`: the real
architecture at 1/4000 of the size, pretrained by `deepsynth pretrain` on the pages of the bundled
corpus) to summarise rendered pages of the **bundled corpus** (`data/crates-readme`: the READMEs of
permissively licensed Rust crates, each crate's own one-line description as the reference summary).

QLoRA here means what it means for the full model: the decoder's linear layers are quantised to
NF4 (bitsandbytes' format, double-quantised) as they load, and only the LoRA matrices train.
Training lines print as they happen; the loss and ROUGE curves are drawn at the end (the Rust
kernel, evcxr 0.22, shows a cell's image only when the cell finishes, so a chart cannot update
while the run goes).

The tiny model is small enough to train on a laptop CPU in a minute, and that is all it is: its
summaries are short and generic. The same code drives `deepseek-ai/DeepSeek-OCR`.
""")

code("""
use deepsynth::prelude::*;

let root: std::path::PathBuf = find_root();
let mut b: Bundled = Bundled::load(&root, LoraConfig::new(8, 16.0).with_dropout(0.05), 42)?;
b.train.truncate(48);
println!("{} training / {} held-out documents", b.train.len(), b.test.len());
println!("adapter: {} LoRA layers, {} trainable parameters", b.adapter.adapted_layers, b.adapter.trainable_params);
""", stable=True)

md("""
## What the model sees

Each document is rendered with the Tiny preset (512 x 512 pixels, 64 visual tokens after
DeepSeek-OCR's 16x compression). Three held-out pages:
""")

code("""
let pages: Vec<Page> = b.test.iter().take(3)
    .map(|ex| Ok(b.renderer.render(&ex.text)?.pages[0].clone()))
    .collect::<deepsynth::Result<Vec<Page>>>()?;
PageGrid::new(&pages, 3, 960)
""", ["image/png"])

md("""
## Before training

The adapter starts with `B = 0`, so the model is exactly the pretrained one. Scored on 6 held-out
documents: greedy summaries against the references (ROUGE F-measure, CER and WER as rates) and the
held-out cross-entropy of the reference summaries.
""")

code("""
let mut cfg: RunConfig = b.run_config(1, 2e-3, 3, 6);
cfg.generation.max_new_tokens = 16;
let held: Vec<Example> = b.test[..6].to_vec();
let before: EvalReport = evaluate(&b.model, &b.enc, &held, &cfg.generation)?;
for (k, v) in &before.metrics { println!("{k:>7}: {v:.4}"); }
""")

md("""
## Training

One epoch over 48 documents (6 optimiser steps of 8), evaluated every 3 steps: a short run, so
the notebook finishes in seconds; `deepsynth quickstart` does the full one. The kernel compiles
DeepSynth and its dependencies optimised (cells themselves compile unoptimised, which is quick),
so these steps run as fast as in the command line. `run` writes
checkpoints (verified, renamed into place), `best/`, TensorBoard events and `metrics.jsonl` into the
run folder, and calls the log function with whole lines, which the notebook shows as they come.
""")

code("""
let out_dir: std::path::PathBuf = std::env::temp_dir().join("deepsynth-nb03");
let _ = std::fs::remove_dir_all(&out_dir);
let mut tracker: RunTracker = RunTracker::open(&out_dir)?;
cfg.early_stopping = None;
let outcome: RunOutcome = run(&mut b.model, &b.lora, &b.enc, &b.train, &held, &cfg, &out_dir,
                              &mut tracker, None, &mut |line: &str| println!("{line}"))?;
let after: EvalReport = outcome.evals.last().unwrap().clone();
println!("held-out loss {:.3} -> {:.3}", before.metrics["loss"], after.metrics["loss"]);
""")

md("""
## Curves

`TrainingReport` holds the run for plotting and for the HTML report that `deepsynth quickstart`
writes. The loss: training loss per step, held-out loss at step 0 and at each evaluation.
""")

code("""
let report: TrainingReport = TrainingReport::from_run("notebook run", vec![], &before, &outcome, &held, &b.renderer);
report.loss_chart()
""", ["image/png"])

code("""
report.rouge_chart()
""", ["image/png"])

md("""
## Summaries before and after
""")

code("""
let samples: DataFrame = {
    let rows: &[SampleRow] = &report.samples;
    DataFrame::new(rows.len(), vec![
        Column::new("reference".into(), rows.iter().map(|r| r.reference.clone()).collect::<Vec<_>>()),
        Column::new("before".into(), rows.iter().map(|r| r.before.clone()).collect::<Vec<_>>()),
        Column::new("after".into(), rows.iter().map(|r| r.after.clone()).collect::<Vec<_>>()),
    ])?
};
Table::new(samples.clone())
""", ["text/html"])

md("""
## The run folder

Every scalar the run logged, as a polars DataFrame (`Runs::load` reads every run under a folder).
The same values are in the TensorBoard event file beside it.
""")

code("""
let metrics: DataFrame = Runs::load(&out_dir)?;
println!("{} rows; files: {:?}", metrics.height(),
         std::fs::read_dir(&out_dir)?.filter_map(|e| e.ok()).map(|e| e.file_name()).collect::<Vec<_>>());
Table::new(metrics.clone()).with_max_rows(8)
""", ["text/html"])

write("notebooks/03-train-qlora.ipynb")
