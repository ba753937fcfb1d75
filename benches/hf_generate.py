"""transformers side of `cargo bench --bench generate_vs_hf`: tokens/s of `generate` (greedy and
beam search) on the tiny Llama fixture in float32, one JSON line per setting.

  python hf_generate.py MODEL_DIR THREADS NEW_TOKENS

Schedule, as on the Rust side: one untimed generation of the same length, then the best of 3.
EOS never ends a run (min_new_tokens = max_new_tokens on both sides), and `generate` computes
`lm_head` at the last prompt position only (as ours does).
"""
import json
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    d, threads, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    # `torch_dtype` was renamed `dtype` in transformers 4.56.
    kw = {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": torch.float32}
    m = AutoModelForCausalLM.from_pretrained(d, **kw)
    m.eval()
    prompt = torch.tensor([[1, 17, 42, 99, 3, 200, 5, 77]])
    for name, kw in [("greedy", dict(num_beams=1)), ("beam4", dict(num_beams=4, early_stopping=True))]:
        run = lambda: m.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                 eos_token_id=None, pad_token_id=0, **kw)
        with torch.no_grad():
            run()
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                out = run()
                best = min(best, time.perf_counter() - t)
        n = out.shape[1] - prompt.shape[1]
        print(json.dumps(dict(setting=name, tokens=n, seconds=best, tokens_per_s=n / best,
                              transformers=transformers.__version__, torch=torch.__version__)))


main()
