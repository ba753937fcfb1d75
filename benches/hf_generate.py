"""transformers side of `cargo bench --bench generate_vs_hf`: tokens/s of `generate` (greedy and
beam search) on the tiny Llama fixture in float32, one JSON line per setting.

  python hf_generate.py MODEL_DIR THREADS NEW_TOKENS [DEVICE [DTYPE]]

DEVICE is `cpu` (default) or `cuda[:N]`, DTYPE `f32` (default) or `bf16`; on a GPU each timed
generation ends with `torch.cuda.synchronize()`.

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
    device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[sys.argv[5] if len(sys.argv) > 5 else "f32"]
    torch.set_num_threads(threads)
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    # `torch_dtype` was renamed `dtype` in transformers 4.56.
    kw = {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": dtype}
    m = AutoModelForCausalLM.from_pretrained(d, **kw).to(device)
    m.eval()
    prompt = torch.tensor([[1, 17, 42, 99, 3, 200, 5, 77]], device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for name, kw in [("greedy", dict(num_beams=1)), ("beam4", dict(num_beams=4, early_stopping=True))]:
        run = lambda: m.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                 eos_token_id=None, pad_token_id=0, **kw)
        with torch.no_grad():
            run()
            sync()
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                out = run()
                sync()
                best = min(best, time.perf_counter() - t)
        n = out.shape[1] - prompt.shape[1]
        print(json.dumps(dict(setting=name, tokens=n, seconds=best, tokens_per_s=n / best, device=device,
                              transformers=transformers.__version__, torch=torch.__version__)))


main()
