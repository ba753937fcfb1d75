//! Deterministic synthetic news-style text for tests and benchmarks (shared via `#[path]`).

const VOCAB: &[&str] = &[
    "the",
    "government",
    "announced",
    "on",
    "Tuesday",
    "that",
    "new",
    "measures",
    "would",
    "take",
    "effect",
    "next",
    "month,",
    "according",
    "to",
    "officials",
    "familiar",
    "with",
    "plan.",
    "Analysts",
    "said",
    "markets",
    "reacted",
    "cautiously",
    "while",
    "investors",
    "weighed",
    "inflation",
    "data",
    "and",
    "interest",
    "rates.",
    "In",
    "a",
    "statement,",
    "spokesperson",
    "described",
    "decision",
    "as",
    "necessary",
    "step",
    "toward",
    "stability.",
    "Critics",
    "argued",
    "it",
    "came",
    "too",
    "late",
    "for",
    "families",
    "already",
    "struggling",
    "with",
    "rising",
    "costs.",
    "\"We",
    "will",
    "keep",
    "working,\"",
    "she",
    "added.",
    "2024",
    "percent",
    "U.S.",
    "well-known",
    "mid-term",
    "A.V.",
    "Wolf",
];

/// `words` pseudo-random words (LCG seeded by `seed`), a paragraph break every 97 words.
pub fn news_text(words: usize, seed: u64) -> String {
    let step = |s: u64| {
        s.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
    };
    let mut state = step(seed);
    let mut out = String::new();
    for i in 0..words {
        state = step(state);
        if i > 0 {
            out.push(if i % 97 == 0 { '\n' } else { ' ' });
        }
        out.push_str(VOCAB[(state >> 33) as usize % VOCAB.len()]);
    }
    out
}
