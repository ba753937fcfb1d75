"""Writes notebooks/04-inference.ipynb (run from the repo root), without outputs: `bash environment/run-notebooks.sh --write` adds them."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import code, md, write  # noqa: E402

md("""
# Generating summaries: greedy, sampling and beam search

A `Summarizer` takes text (rendered to a page first) or a page image and returns the summary with
the latency of every stage (render, encode, prefill, decode), tokens per second and the number of
visual tokens the page became. Decoding is set by a `GenerationConfig` with transformers' names
and semantics (temperature, top-k, top-p, beams, length penalty, early stopping, repetition
penalty, no-repeat n-grams); the tests check greedy and beam search token for token against
transformers' `generate`.

This notebook drives the **tiny test model** of `tests/fixtures/deepseek-ocr-tiny` (random
weights, the real architecture) with a character tokenizer, so it runs anywhere in seconds: the
"summaries" are noise, the API, the settings and the timings are real. Point `LoadOptions::new`
at a real model folder or Hub id (`deepseek-ai/DeepSeek-OCR`) plus an adapter for real output.
""")

code("""
use deepsynth::prelude::*;

let mut opts: LoadOptions = LoadOptions::new("../tests/fixtures/deepseek-ocr-tiny");
opts.tokenizer = Some("../tests/fixtures/tiny-char-tokenizer/tokenizer.json".into());
opts.mode = ImageMode::plain(256);
let mut summarizer: Summarizer = Summarizer::load(&opts)?;
{
    let cfg = summarizer.model().config();
    println!("decoder: {} layers, width {}, {} routed experts (top-{}), vocabulary {}",
             cfg.decoder.num_hidden_layers, cfg.decoder.hidden_size,
             cfg.decoder.routed_experts(), cfg.decoder.experts_per_token(), cfg.decoder.vocab_size);
}
""", stable=True)

md("""
## The page

Text is rendered with the same `Renderer` as in the rendering tutorial; here a short news item on
a Tiny-preset page, resized to the model's 256-pixel view by the Pillow-exact preprocessing.
""")

code("""
let text: &str = "The city council approved a new budget on Tuesday. It raises spending on \\
                  schools and public transport, and cuts the cost of bus tickets for students.";
let rendered: Rendered = Renderer::from_preset(Preset::Tiny)?.render(text)?;
let page: Page = rendered.pages[0].clone();
page
""", ["image/png"])

md("""
## Three ways to decode the same page

`greedy` (DeepSeek-OCR's default, with `no_repeat_ngram_size` 20), `sampling` (temperature 0.7,
top-p 0.9, top-k 50, repetition penalty 1.1, seeded: the same seed gives the same text) and
`beam4` (four beams, early stopping). Each row has the summary, why decoding stopped, the stage
timings and tokens per second.
""")

code("""
let rgb: deepsynth::image::RgbImage = page.to_rgb();
let mut results: Vec<(String, Summary)> = Vec::new();
for (name, preset) in [("greedy", GenerationConfig::greedy()), ("sampling", GenerationConfig::sampling()),
                       ("beam4", GenerationConfig::beam4())] {
    let mut g: GenerationConfig = preset;
    g.max_new_tokens = 24;
    g.eos_token_ids = summarizer.generation.eos_token_ids.clone();
    summarizer.generation = g;
    let s: Summary = summarizer.summarize_image(&rgb)?;
    println!("{name:>8}: {} tokens in {:.3} s ({:.0} tokens/s), {} visual tokens",
             s.tokens.len(), s.timings.decode_s, s.tokens_per_s, s.visual_tokens);
    results.push((name.to_string(), s));
}
let table: Table = {
    let rows: Vec<(&str, &Summary)> = results.iter().map(|(n, s)| (n.as_str(), s)).collect();
    Table::new(comparison_frame(&rows)?)
};
table
""", ["text/html"])

md("""
## Seeds and settings

Sampling is reproducible: the same seed gives the same tokens, another seed other ones. Invalid
settings are refused with the field named.
""")

code("""
let mut g: GenerationConfig = GenerationConfig::sampling();
g.max_new_tokens = 12;
g.eos_token_ids = vec![1];
summarizer.generation = g.clone();
let a: Vec<u32> = summarizer.summarize_image(&rgb)?.tokens;
let b: Vec<u32> = summarizer.summarize_image(&rgb)?.tokens;
summarizer.generation.seed = 1;
let c: Vec<u32> = summarizer.summarize_image(&rgb)?.tokens;
println!("same seed, same tokens: {}; another seed differs: {}", a == b, a != c);
assert_eq!(a, b);
let mut bad: GenerationConfig = GenerationConfig::sampling();
bad.temperature = 0.0;
println!("{}", bad.validate().unwrap_err());
""", stable=True)

write("notebooks/04-inference.ipynb")
