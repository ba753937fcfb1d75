"""Writes notebooks/06-your-own-data.ipynb (run from the repo root), without outputs: `bash environment/run-notebooks.sh --write` adds them."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import code, md, write  # noqa: E402

md("""
# Your own documents

The other notebooks use the bundled corpus. This one starts from a file of your own, the way a
new project does: documents with reference summaries in JSONL (Parquet and CSV work the same),
one of them too long for a page and one broken. It shows

1. loading the file, with the broken record reported (file line and reason), not silently dropped;
2. checking how each document fits on the page the model reads, before any training;
3. what the overflow policies do with a document longer than a page;
4. fine-tuning the bundled model on your documents mixed with the corpus, and scoring them.
""")

code(r'''
use deepsynth::prelude::*;
use deepsynth::data::{fit_document, FittedPage, LoadedPairs, OnOverflow};

let dir: std::path::PathBuf = std::env::temp_dir().join("deepsynth-nb06");
std::fs::create_dir_all(&dir)?;
let path: std::path::PathBuf = dir.join("my-documents.jsonl");
let long_report: String = (1..=40)
    .map(|i| format!("Section {i}. The regional office reported steady sales, higher shipping costs and a cautious outlook for the next quarter. "))
    .collect();
let lines: Vec<String> = vec![
    r#"{"id": "bridge", "text": "The city will close the old river bridge for repairs from May to September. Buses will use the northern bridge, and a free ferry will run every twenty minutes during the day.", "summary": "The river bridge closes for repairs from May to September; buses reroute and a free ferry runs."}"#.to_string(),
    r#"{"id": "library", "text": "The public library now lends laptops and wireless hotspots for up to two weeks. Borrowers need a library card, and devices can be reserved online.", "summary": "The library lends laptops and hotspots for two weeks to card holders."}"#.to_string(),
    format!(r#"{{"id": "report", "text": "{long_report}", "summary": "Regional sales were steady, costs rose and the outlook is cautious."}}"#),
    r#"{"id": "broken", "text": "A record without its summary field."}"#.to_string(),
];
std::fs::write(&path, lines.join("\n") + "\n")?;

let fields: PairFields = PairFields { reference: "summary".into(), prediction: "text".into(), id: "id".into() };
let loaded: LoadedPairs = load_pairs(&path, &fields)?;
println!("{} usable document(s) in {}", loaded.pairs.len(), path.file_name().unwrap().to_string_lossy());
for bad in &loaded.bad {
    println!("skipped line {}: {}", bad.line, bad.reason);
}
let mine: Vec<Example> = loaded.pairs.into_iter().map(Example::from).collect();
''', stable=True)

md("""
## The same documents as CSV or Parquet

`load_pairs` reads `.csv` (RFC 4180, a header row) and `.parquet` the same way, with the same
field names; a spreadsheet export or a DataFrame saved by pandas or polars works as is. Here the
usable documents are written both ways and read back.
""")

code(r'''
use deepsynth::polars::prelude::ParquetWriter;
let csv: String = {
    let quote = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
    std::iter::once("id,text,summary".to_string())
        .chain(mine.iter().map(|e| format!("{},{},{}", quote(&e.id), quote(&e.text), quote(&e.summary))))
        .collect::<Vec<_>>()
        .join("\n")
};
let csv_path: std::path::PathBuf = dir.join("my-documents.csv");
std::fs::write(&csv_path, csv + "\n")?;
let mut frame: DataFrame = DataFrame::new(mine.len(), vec![
    Column::new("id".into(), mine.iter().map(|e| e.id.clone()).collect::<Vec<_>>()),
    Column::new("text".into(), mine.iter().map(|e| e.text.clone()).collect::<Vec<_>>()),
    Column::new("summary".into(), mine.iter().map(|e| e.summary.clone()).collect::<Vec<_>>()),
])?;
let parquet_path: std::path::PathBuf = dir.join("my-documents.parquet");
ParquetWriter::new(std::fs::File::create(&parquet_path)?).finish(&mut frame)?;
for path in [&csv_path, &parquet_path] {
    let again: Vec<Example> = load_pairs(path, &fields)?.pairs.into_iter().map(Example::from).collect();
    println!("{}: {} documents, the same as the JSONL file: {}",
             path.file_name().unwrap().to_string_lossy(), again.len(), again == mine);
}
''', stable=True)

md("""
## How each document fits on the page

The bundled model reads Tiny pages (512 x 512 pixels, 64 visual tokens). `fit_document` renders a
document the way training does and says how much of it the page shows. Check this before a long
run: a document cut to its first page trains the model to summarise text it never saw.
""")

code('''
let mut b: Bundled = Bundled::load(&find_root(), LoraConfig::new(8, 16.0).with_dropout(0.05), 42)?;
let mut fitted: Vec<FittedPage> = Vec::new();
for ex in &mine {
    let f: FittedPage = fit_document(&b.renderer, &ex.text, OnOverflow::Truncate)?;
    println!("{:<8} {:>5} chars, {} page(s) needed, {:>5} shown, {:>5} cut off",
             ex.id, ex.text.chars().count(), f.pages_needed, f.shown_chars, f.truncated_chars);
    fitted.push(f);
}
let pages: Vec<Page> = fitted.iter().map(|f| f.page.clone()).collect();
PageGrid::new(&pages, 3, 960)
''', ["image/png"], stable=True)

md("""
## Documents longer than a page

`OnOverflow` decides: `Truncate` (the default) keeps the first page and counts what was cut,
`Skip` leaves the document out of training (a run lists it in `skipped.jsonl`), `Error` stops with
a typed error that says how much would be lost. On the command line it is `--on-overflow`, and
`--mode auto` moves long documents to a Gundam page (1280 x 1920 pixels, read as a global view
plus six tiles) before cutting anything.
""")

code('''
let report: Example = mine.iter().find(|e| e.id == "report").cloned().expect("the long document");
match fit_document(&b.renderer, &report.text, OnOverflow::Error) {
    Ok(f) => panic!("the long report fitted on one page: {} chars shown", f.shown_chars),
    Err(e) => println!("OnOverflow::Error -> {e}"),
}
let first_page: FittedPage = fit_document(&b.renderer, &report.text, OnOverflow::Truncate)?;
println!("OnOverflow::Truncate -> the page ends with: ...{}",
         first_page.shown_text(&report.text).chars().rev().take(60).collect::<Vec<char>>()
             .into_iter().rev().collect::<String>());
''', stable=True)

md("""
## Fine-tuning on your documents

Your documents go into the training set beside 40 documents of the bundled corpus (a handful of
examples alone would only be memorised). The held-out loss on your documents is the cross-entropy
of their reference summaries given their pages, before and after one epoch.
""")

code('''
b.train.truncate(40);
b.train.extend(mine.iter().cloned());
let mut cfg: RunConfig = b.run_config(1, 2e-3, 1000, mine.len());
cfg.generation.max_new_tokens = 24;
cfg.early_stopping = None;
let before: EvalReport = evaluate(&b.model, &b.enc, &mine, &cfg.generation)?;
let out_dir: std::path::PathBuf = dir.join("run");
let _ = std::fs::remove_dir_all(&out_dir);
let mut tracker: RunTracker = RunTracker::open(&out_dir)?;
let outcome: RunOutcome = run(&mut b.model, &b.lora, &b.enc, &b.train, &mine, &cfg, &out_dir,
                              &mut tracker, None, &mut |line: &str| println!("{line}"))?;
let after: EvalReport = outcome.evals.last().cloned().expect("a final evaluation");
println!("loss on your documents: {:.3} -> {:.3}", before.metrics["loss"], after.metrics["loss"]);
for s in &after.samples {
    println!("{}: {:?}", s.id, s.generated);
}
''')

md("""
The bundled model learns the corpus's wording but does not read its pages (see
`models/deepsynth-ocr-tiny/README.md`), so what it writes for your documents is crate-README
boilerplate; the mechanics are the same with `deepseek-ai/DeepSeek-OCR`, which does read.
The run folder has the adapter (`best/`, PEFT format), checkpoints, TensorBoard events and
`metrics.jsonl`, as for any run; `deepsynth train --train my-documents.jsonl ...` does the same
from the command line.
""")

write("notebooks/06-your-own-data.ipynb")
