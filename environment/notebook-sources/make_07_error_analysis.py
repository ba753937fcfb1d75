"""Writes notebooks/07-error-analysis.ipynb (run from the repo root), without outputs: `bash environment/run-notebooks.sh --write` adds them."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import code, md, write  # noqa: E402

md("""
# Error analysis: which documents does the model get wrong, and why?

A corpus score says how good a run is on average; it does not say where to look next. This
notebook scores every held-out document on its own, puts the scores beside what each page shows
in one polars DataFrame, and then

1. sorts the documents by ROUGE-L and shows the worst summaries next to their references;
2. shows the pages of the worst documents in a grid, to see what the model read;
3. filters and groups: are long documents summarised worse than short ones?

It fine-tunes the bundled tiny model briefly first (as notebook 03 does, in seconds), so the
summaries are the tiny model's: short and often generic. The same cells work on a run of the real
model, with `Summarizer` or the run's `best/` adapter.
""")

code("""
use deepsynth::prelude::*;
use deepsynth::polars::prelude::{ChunkCompareIneq, ParquetReader, ParquetWriter, SerReader, SortMultipleOptions};

let root: std::path::PathBuf = find_root();
let mut b: Bundled = Bundled::load(&root, LoraConfig::new(8, 16.0).with_dropout(0.05), 42)?;
b.train.truncate(48);
let held: Vec<Example> = b.test[..24].to_vec();
let mut cfg: RunConfig = b.run_config(1, 2e-3, 6, 4);
cfg.generation.max_new_tokens = 16;
cfg.early_stopping = None;
let out_dir: std::path::PathBuf = std::env::temp_dir().join("deepsynth-nb07");
let _ = std::fs::remove_dir_all(&out_dir);
let mut tracker: RunTracker = RunTracker::open(&out_dir)?;
let outcome: RunOutcome = run(&mut b.model, &b.lora, &b.enc, &b.train, &held[..4], &cfg, &out_dir,
                              &mut tracker, None, &mut |_l: &str| {})?;
println!("fine-tuned: {} steps; held-out loss {:.3}", outcome.train_losses.len(),
         outcome.evals.last().unwrap().metrics["loss"]);
""")

md("""
## One row per document

`evaluate` generates a summary of each of the 24 held-out documents; the `Evaluator` scores each
pair on its own (`records_frame`: ROUGE precision/recall/F1, sentence BLEU and chrF, WER and CER
with their edit counts). Beside the scores go what the error analysis needs: the texts, the
document's length and how much of it the page shows.
""")

code("""
let report: EvalReport = evaluate(&b.model, &b.enc, &held, &cfg.generation)?;
let pairs: Vec<Pair> = report.samples.iter()
    .map(|s| Pair::new(s.id.clone(), s.reference.clone(), s.generated.clone()))
    .collect();
let scores: Evaluation = Evaluator::new(EvalConfig::default()).evaluate(&pairs);
let docs: Vec<Example> = report.samples.iter().map(|s| held[s.index].clone()).collect();
let shown: Vec<usize> = docs.iter().map(|ex| Ok(b.enc.shown(ex)?.shown_chars)).collect::<deepsynth::Result<_>>()?;
let mut frame: DataFrame = scores.records_frame()?;
frame.hstack_mut(&[
    Column::new("reference".into(), report.samples.iter().map(|s| s.reference.clone()).collect::<Vec<_>>()),
    Column::new("generated".into(), report.samples.iter().map(|s| s.generated.clone()).collect::<Vec<_>>()),
    Column::new("doc_chars".into(), docs.iter().map(|ex| ex.text.chars().count() as u64).collect::<Vec<_>>()),
    Column::new("shown_chars".into(), shown.iter().map(|&n| n as u64).collect::<Vec<_>>()),
])?;
println!("{} documents x {} columns", frame.height(), frame.width());
let view: DataFrame = frame.select(["id", "rougeL_fmeasure", "cer", "doc_chars", "shown_chars", "generated"])?;
Table::new(view.clone()).with_max_rows(6)
""", ["text/html"])

md("""
## The worst summaries

Sorted by ROUGE-L F1, lowest first (polars' eager `sort`; ties keep their order).
""")

code("""
let worst: DataFrame = frame
    .sort(["rougeL_fmeasure"], SortMultipleOptions::default().with_maintain_order(true))?
    .head(Some(6));
let worst_ids: Vec<String> = {
    let ids = worst.column("id")?.as_materialized_series();
    (0..ids.len()).map(|i| ids.str_value(i).map(|v| v.to_string())).collect::<Result<_, _>>()?
};
Table::new(worst.select(["id", "rougeL_fmeasure", "reference", "generated"])?)
""", ["text/html"])

md("""
## What the model read

The pages of those six documents, in the order above. A page that is mostly badges, install
commands or code is a page the reference description is hardly on.
""")

code("""
let pages: Vec<Page> = worst_ids.iter()
    .map(|id| {
        let ex: &Example = held.iter().find(|e| &e.id == id).unwrap();
        Ok(b.renderer.render(&ex.text)?.pages[0].clone())
    })
    .collect::<deepsynth::Result<Vec<Page>>>()?;
PageGrid::new(&pages, 3, 960)
""", ["image/png"])

md("""
## Filtered and grouped: long documents against short ones

Every held-out document fits its page here (`shown_chars == doc_chars`: the corpus keeps
documents a Tiny page can show), so the question is rather whether longer pages, with more text
around the part the description comes from, are summarised worse. A boolean mask on the length
column splits the frame at the median length; the mean ROUGE-L and CER of each half answer it.
""")

code("""
let median: f64 = frame.column("doc_chars")?.as_materialized_series().median().unwrap_or(0.0);
let long = frame.column("doc_chars")?.as_materialized_series().gt(median)?;
let groups: Vec<(String, DataFrame)> = vec![
    (format!("over {median:.0} chars"), frame.filter(&long)?),
    (format!("up to {median:.0} chars"), frame.filter(&!&long)?),
];
let mut bars: Vec<Bar> = Vec::new();
for (name, g) in &groups {
    let mean = |c: &str| -> f64 {
        g.column(c).ok().and_then(|col| col.as_materialized_series().mean()).unwrap_or(f64::NAN)
    };
    println!("{name:>16}: {:2} documents, mean ROUGE-L {:.3}, mean CER {:.3}", g.height(), mean("rougeL_fmeasure"), mean("cer"));
    bars.push(Bar { label: format!("{name} ({})", g.height()), value: mean("rougeL_fmeasure"), interval: None });
}
BarChart::new("Mean ROUGE-L F1 by document length", "ROUGE-L F1", bars.clone())
""", ["image/png"])

md("""
## Saving the analysis

The frame goes to Parquet for a later session, or for pandas and DuckDB.
""")

code("""
let path: std::path::PathBuf = out_dir.join("per-document.parquet");
let mut f = std::fs::File::create(&path)?;
ParquetWriter::new(&mut f).finish(&mut frame)?;
let back: DataFrame = ParquetReader::new(std::fs::File::open(&path)?).finish()?;
println!("wrote {} rows x {} columns; read back equal: {}", back.height(), back.width(), back.equals(&frame));
""", stable=True)

write("notebooks/07-error-analysis.ipynb")
