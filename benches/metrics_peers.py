"""Python peers for benches/metrics_vs_peers.rs: the same pairs, one metric family at a time.

Prints one JSON object: records/s (process CPU time) for rouge-score (rouge1/2/L/Lsum, stemmer
on), sacrebleu sentence BLEU and chrF, and jiwer WER and CER, each over every pair.

Each timed pass starts with sacrebleu's tokenizer caches cleared (`Tokenizer13a` and
`TokenizerRegexp` memoise up to 65,536 lines with `lru_cache`): repeated passes over the same
pairs would otherwise time cache lookups, while a real evaluation scores each pair once.
"""
import argparse
import json
import time


def timed(fn, pairs, min_seconds, reset=lambda: None):
    runs, spent = 0, 0.0
    while spent < min_seconds or runs == 0:
        reset()
        t0 = time.process_time()
        fn(pairs)
        spent += time.process_time() - t0
        runs += 1
    return len(pairs) * runs / spent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--min-seconds", type=float, default=2.0)
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
    out = {
        "versions": {"sacrebleu": sacrebleu.__version__, "jiwer": getattr(jiwer, "__version__", "?")},
        "rouge": timed(lambda ps: [scorer.score(r, p) for r, p in ps], pairs, args.min_seconds),
        "bleu": timed(lambda ps: [bleu.sentence_score(p, [r]) for r, p in ps], pairs, args.min_seconds,
                      clear_sacrebleu_caches),
        "chrf": timed(lambda ps: [chrf.sentence_score(p, [r]) for r, p in ps], pairs, args.min_seconds),
        "wer": timed(lambda ps: [jiwer.process_words(r, p) for r, p in ps], pairs, args.min_seconds),
        "cer": timed(lambda ps: [jiwer.process_characters(r, p) for r, p in ps], pairs, args.min_seconds),
        "cer_short": timed(lambda ps: [jiwer.process_characters(r, p) for r, p in ps],
                           [(r, p) for r, p in pairs if max(len(r), len(p)) < 500], args.min_seconds),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
