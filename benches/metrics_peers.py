"""Python peers for benches/metrics_vs_peers.rs: the same pairs, one metric family at a time.

Prints one JSON object: records per CPU second (process CPU time) for rouge-score
(rouge1/2/L/Lsum, stemmer on), sacrebleu sentence BLEU and chrF, and jiwer WER and CER, each over
every pair, with the same schedule as the Rust side: WARMUP untimed passes, then the best of ROUNDS
timed passes.

Cold (the headline) starts every pass with the library's caches cleared: sacrebleu's tokenizers
(`Tokenizer13a` and `TokenizerRegexp` memoise up to 65,536 lines with `lru_cache`). Warm keeps
them across passes. rouge-score (with nltk's Porter stemmer), sacrebleu's chrF and jiwer keep no
cache of inputs between calls, so their warm figure is their cold measurement (`"cached": false`).
"""
import argparse
import json
import time
from importlib.metadata import version


def timed(fn, pairs, warmup, rounds, reset=None):
    for _ in range(warmup):
        if reset:
            reset()
        fn(pairs)
    best = float("inf")
    for _ in range(rounds):
        if reset:
            reset()
        t0 = time.process_time()
        fn(pairs)
        best = min(best, time.process_time() - t0)
    return len(pairs) / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with open(args.pairs, encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f if line.strip()]
    pairs = [(p["reference"], p["prediction"]) for p in pairs]

    from rouge_score import rouge_scorer
    import sacrebleu
    from sacrebleu.metrics import BLEU, CHRF
    import jiwer

    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp

    def clear_sacrebleu_caches():
        Tokenizer13a.__call__.cache_clear()
        TokenizerRegexp.__call__.cache_clear()

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    bleu = BLEU(effective_order=True)
    chrf = CHRF()
    short = [(r, p) for r, p in pairs if max(len(r), len(p)) < 500]
    w, n = args.warmup, args.rounds
    out = {
        "versions": {k: version(k) for k in ("rouge-score", "nltk", "sacrebleu", "jiwer")},
        "warmup": w,
        "rounds": n,
    }
    uncached = {
        "rouge": (lambda ps: [scorer.score(r, p) for r, p in ps], pairs),
        "chrf": (lambda ps: [chrf.sentence_score(p, [r]) for r, p in ps], pairs),
        "wer": (lambda ps: [jiwer.process_words(r, p) for r, p in ps], pairs),
        "cer": (lambda ps: [jiwer.process_characters(r, p) for r, p in ps], pairs),
        "cer_short": (lambda ps: [jiwer.process_characters(r, p) for r, p in ps], short),
    }
    for key, (fn, ps) in uncached.items():
        rate = timed(fn, ps, w, n)
        out[key] = {"cold": rate, "warm": rate, "cached": False}
    bleu_fn = lambda ps: [bleu.sentence_score(p, [r]) for r, p in ps]
    out["bleu"] = {
        "cold": timed(bleu_fn, pairs, w, n, clear_sacrebleu_caches),
        "warm": timed(bleu_fn, pairs, w, n),
        "cached": True,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
