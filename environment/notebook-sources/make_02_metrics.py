"""Writes notebooks/02-metrics.ipynb (run from the repo root), without outputs: `bash environment/run-notebooks.sh --write` adds them."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import code, md, write  # noqa: E402

md("""
# Evaluation metrics

DeepSynth scores summaries with the metrics papers report, computed **exactly** as the Python
reference packages compute them by default, so numbers can be compared with published ones:

| metric | reference implementation | scale |
|---|---|---|
| ROUGE-1, ROUGE-2, ROUGE-L, ROUGE-Lsum | Google's `rouge-score` 0.1.2 (+ NLTK Porter stemmer) | 0-1 |
| BLEU (13a tokenizer, exp smoothing) and chrF | `sacrebleu` 2.6.0 | 0-100 |
| WER and CER with substitution / deletion / insertion counts | `jiwer` 4.0.0 | ratio |

The tests check every number against goldens produced by those packages on 2,000+ pairs.
Results come back as polars DataFrames.
""")

code("""
use deepsynth::prelude::*;

let pairs: Vec<Pair> = vec![
    Pair::new("storm", "A powerful storm hit the coast on Monday, cutting power to thousands of homes.",
              "A strong storm struck the coast Monday and left thousands of homes without power."),
    Pair::new("market", "Stocks fell sharply after the central bank raised interest rates again.",
              "Stock markets dropped after another interest rate rise by the central bank."),
    Pair::new("science", "Researchers found that the new battery design lasts twice as long.",
              "The new battery design lasts twice as long, researchers found."),
    Pair::new("sports", "The home team won the final 3-1 after extra time.",
              "The final ended 3-1 for the home team after extra time."),
    Pair::new("empty", "The council approved the budget for next year.", ""),
];
let evaluator: Evaluator = Evaluator::new(EvalConfig::default().with_stemmer(true));
let evaluation: Evaluation = evaluator.evaluate(&pairs);
println!("{} records, {} summary rows", evaluation.records.len(), evaluation.summary.len());
evaluation
""", ["text/html"], stable=True)

md("""
The summary has one row per corpus statistic: ROUGE as the mean over records (with precision and
recall too), BLEU and chrF as sacrebleu's corpus scores, WER and CER as jiwer's micro averages.
`low`/`mid`/`high` come from a seeded bootstrap (1,000 resamples, 95%), so they are the same on
every run. The per-record table has every score and the edit operation counts:
""")

code("""
let records: DataFrame = evaluation.records_frame()?;
println!("{:?}", records.get_column_names());
Table::new(records.clone())
""", ["text/html"], stable=True)

md("""
## A chart of the corpus scores

`evaluation.chart()` draws every corpus score on a 0-100 scale with its bootstrap interval.
""")

code("""
evaluation.chart()
""", ["image/png"])

md("""
## Non-English text

`rouge-score` keeps only ASCII letters and digits: accented letters split words and Chinese,
Russian or Greek text has no tokens at all, so such summaries score 0 even when perfect. That is
the default (it is what papers report), and the Unicode tokenizer is an option that never
changes it:
""")

code("""
let french: Vec<Pair> = vec![Pair::new("fr", "Le modèle résume la page en quelques phrases.",
                                  "Le modèle résume la page en quelques phrases.")];
let chinese: Vec<Pair> = vec![Pair::new("zh", "模型读取整页图像，然后写出简短的摘要。", "模型读取整页图像，写出摘要。")];
for (name, tokenizer) in [
    ("rouge-score", RougeTokenizer::RougeScore { stem: false }),
    ("unicode", RougeTokenizer::Unicode { stem: Stemming::Off }),
] {
    let ev = Evaluator::new(EvalConfig::default().with_metrics(&[Metric::Rouge1, Metric::RougeL]).with_rouge_tokenizer(tokenizer));
    let fr = ev.evaluate(&french);
    let zh = ev.evaluate(&chinese);
    println!("{name:>12}: French ROUGE-1 F = {:.3}, Chinese ROUGE-1 F = {:.3}",
             fr.get(Metric::Rouge1, "fmeasure").unwrap().value,
             zh.get(Metric::Rouge1, "fmeasure").unwrap().value);
}
""", stable=True)

md("""
## Single pairs

The building blocks are plain functions: sacrebleu's argument order (hypothesis first) for BLEU
and chrF, jiwer's (reference first) for WER and CER.
""")

code("""
let (reference, hypothesis): (&str, &str) = ("the cat sat on the mat", "the cat sat on a mat");
println!("sentence BLEU = {:.4}", sentence_bleu(hypothesis, &[reference]).score);
println!("chrF          = {:.4}", sentence_chrf(hypothesis, &[reference]).score);
println!("WER           = {:.4}", wer(reference, hypothesis));
let counts: EditCounts = process_words(reference, hypothesis);
println!("hits {}, substitutions {}, deletions {}, insertions {}",
         counts.hits, counts.substitutions, counts.deletions, counts.insertions);
assert_eq!(counts.substitutions, 1);
""", stable=True)

write("notebooks/02-metrics.ipynb")
