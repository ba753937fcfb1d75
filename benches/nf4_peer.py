"""bitsandbytes / torch side of `cargo bench --bench nf4_vs_bnb`: NF4 dequantisation and 4-bit
matmul on the CPU for the same shapes, one JSON line per measurement.

  python nf4_peer.py THREADS N K M [M ...]
"""
import json
import sys
import time

import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F


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
    threads, n, k = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    ms = [int(m) for m in sys.argv[4:]]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    w = torch.randn(n, k) * 0.02
    q, state = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    t = best(lambda: F.dequantize_4bit(q, state))
    print(json.dumps(dict(op="dequant", n=n, k=k, seconds=t, gbps=n * k * 4 / t / 1e9, bnb=bnb.__version__)))
    wd = F.dequantize_4bit(q, state).float()
    for m in ms:
        x = torch.randn(m, k)
        with torch.no_grad():
            t4 = best(lambda: bnb.matmul_4bit(x, q.t(), quant_state=state))
            td = best(lambda: x @ wd.t())
        fl = 2 * m * n * k
        print(json.dumps(dict(op="matmul", m=m, n=n, k=k, nf4_gflops=fl / t4 / 1e9, dense_gflops=fl / td / 1e9)))


main()
