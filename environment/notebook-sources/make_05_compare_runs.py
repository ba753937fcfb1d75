"""Writes notebooks/05-compare-runs.ipynb (run from the repo root), without outputs: `bash environment/run-notebooks.sh --write` adds them."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import code, md, write  # noqa: E402

md("""
# Comparing runs in polars

Two QLoRA runs of the bundled tiny DeepSeek-OCR on the bundled corpus, identical except for the
LoRA rank (2 and 16), each writing its own run folder under one root. `Runs::load(root)` returns
every metric of every run as one long polars DataFrame (`run, step, tag, value, wall_time`), which
is all a comparison needs: filter, pivot, plot.

The model is tiny and the runs are short (4 steps each), so the differences are small; the
workflow is the one to use on real runs.
""")

code("""
use deepsynth::prelude::*;

let root: std::path::PathBuf = find_root();
let runs_dir: std::path::PathBuf = std::env::temp_dir().join("deepsynth-nb05");
let _ = std::fs::remove_dir_all(&runs_dir);
let mut finals: Vec<(String, usize, EvalReport)> = Vec::new();
for rank in [2usize, 16] {
    let mut b: Bundled = Bundled::load(&root, LoraConfig::new(rank, 2.0 * rank as f64), 7)?;
    b.train.truncate(32);
    let held: Vec<Example> = b.test[..4].to_vec();
    let mut cfg: RunConfig = b.run_config(1, 2e-3, 2, 4);
    cfg.generation.max_new_tokens = 16;
    cfg.early_stopping = None;
    let name: String = format!("rank-{rank:02}");
    let dir: std::path::PathBuf = runs_dir.join(&name);
    let mut tracker: RunTracker = RunTracker::open(&dir)?;
    tracker.scalar("eval/loss", 0, deepsynth::train::held_out_loss(&b.model, &b.enc, &held, 8)?)?;
    let out: RunOutcome = run(&mut b.model, &b.lora, &b.enc, &b.train, &held, &cfg, &dir, &mut tracker, None,
                              &mut |l: &str| if l.starts_with("eval") { println!("{name}: {l}") })?;
    finals.push((name, b.adapter.trainable_params, out.evals.last().unwrap().clone()));
}
""")

md("""
## All metrics of all runs
""")

code("""
let all: DataFrame = Runs::load(&runs_dir)?;
println!("{} rows from {} runs", all.height(), all.column("run")?.n_unique()?);
Table::new(all.clone()).with_max_rows(6)
""", ["text/html"], stable=True)

md("""
## The held-out loss of each run, step by step

`Series::from_runs` takes the rows of one tag from the long frame, one line per run.
""")

code("""
let series: Vec<Series> = Series::from_runs(&Runs::load(&runs_dir)?, "eval/loss")?;
for s in &series { println!("{}: {:?}", s.label, s.points); }
LineChart::new("Held-out loss by LoRA rank", "optimiser step", "cross-entropy", series.clone())
""", ["image/png"])

md("""
## Final scores side by side
""")

code("""
let table: DataFrame = {
    let metric = |k: &str| -> Vec<f64> { finals.iter().map(|(_, _, e)| e.metrics[k]).collect() };
    DataFrame::new(finals.len(), vec![
        Column::new("run".into(), finals.iter().map(|f| f.0.clone()).collect::<Vec<_>>()),
        Column::new("trainable".into(), finals.iter().map(|f| f.1 as u64).collect::<Vec<_>>()),
        Column::new("loss".into(), metric("loss")),
        Column::new("rougeL".into(), metric("rougeL")),
        Column::new("cer".into(), metric("cer")),
    ])?
};
Table::new(table.clone())
""", ["text/html"])

write("notebooks/05-compare-runs.ipynb")
