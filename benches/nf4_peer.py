"""bitsandbytes / torch side of `cargo bench --bench nf4_vs_bnb`: NF4 dequantisation and 4-bit
matmul on the CPU for the weights and inputs the Rust bench wrote, one JSON line per measurement.

  python nf4_peer.py INPUTS THREADS M [M ...]
      INPUTS: safetensors with `w` [N, K] f32 and `x.M` [M, K] f32

Schedule, as on the Rust side: one untimed call, then timed calls until at least 1 s and 3 calls;
the best call is reported. bitsandbytes 0.50 looks for an optimised CPU 4-bit kernel in the
`kernels` package (downloaded from the Hugging Face Hub); without it (`cpu_kernel: false`) it uses
its built-in CPU path.
"""
import json
import sys
import time

import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F
from safetensors.torch import load_file


def best(f, min_s=1.0):
    f()
    n, spent, best_t = 0, 0.0, float("inf")
    while spent < min_s or n < 3:
        t = time.perf_counter()
        f()
        d = time.perf_counter() - t
        spent += d
        n += 1
        best_t = min(best_t, d)
    return best_t


def main():
    inputs, threads = sys.argv[1], int(sys.argv[2])
    ms = [int(m) for m in sys.argv[3:]]
    torch.set_num_threads(threads)
    t = load_file(inputs)
    w = t["w"]
    n, k = w.shape
    try:
        import kernels  # noqa: F401

        cpu_kernel = True
    except ImportError:
        cpu_kernel = False
    q, state = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    s = best(lambda: F.dequantize_4bit(q, state))
    print(json.dumps(dict(op="dequant", n=n, k=k, seconds=s, gbps=n * k * 4 / s / 1e9, bnb=bnb.__version__,
                          torch=torch.__version__, cpu_kernel=cpu_kernel)))
    wd = w.clone()
    for m in ms:
        x = t[f"x.{m}"]
        with torch.no_grad():
            t4 = best(lambda: bnb.matmul_4bit(x, q.t(), quant_state=state))
            td = best(lambda: x @ wd.t())
        fl = 2 * m * n * k
        print(json.dumps(dict(op="matmul", m=m, n=n, k=k, nf4_gflops=fl / t4 / 1e9, dense_gflops=fl / td / 1e9)))


main()
