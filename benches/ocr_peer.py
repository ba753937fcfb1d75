"""PyTorch side of `cargo bench --bench ocr_forward`: one Base-mode page through DeepSeek-OCR (image
encoder, prefill, greedy decoding with the KV cache) on the exact pixels and ids the Rust bench
wrote, with the official DeepSeek-OCR code when $DEEPSYNTH_OCR_CODE names it (see peer_model.py),
else benches/torch_ocr.py.

  python ocr_peer.py forward MODEL_DIR INPUTS MODE NEW_TOKENS WARMUP REPS THREADS
      MODE: f32 | bf16 | nf4 (the dtype rules of peer_model.py)
      INPUTS: safetensors with `pixels` [3, S, S] f32, `input_ids` [L] i64, `image_mask` [L] u8
      -> one JSON line: the best of REPS timed runs (by total) after WARMUP untimed ones, the
         generated tokens, and memory: idle_rss_mib (after importing torch, transformers, the
         model code and, for nf4, bitsandbytes, before loading) and peak_rss_mib (VmHWM at the end)
  python ocr_peer.py check FIXTURE_DIR
      -> max |diff| of image features and teacher-forced logits against the fixture's goldens

Logits: only where they are used (the last prefill position, then each decoded position), as
DeepSynth's `generate` does. NEW_TOKENS tokens take NEW_TOKENS - 1 decoder passes after the
prefill (the last token needs none), as in DeepSynth's `generate`.
"""
import json
import sys
import time

import torch

import peer_model


def merged(model, ids, mask, feats):
    emb = model.embed(ids[None])
    return emb.masked_scatter(mask.bool()[None, :, None], feats.to(emb.dtype))


def run_once(model, inp, new_tokens):
    ids, mask, pixels = inp["input_ids"].long(), inp["image_mask"], inp["pixels"]
    with torch.no_grad():
        t = time.perf_counter()
        feats = model.encode(pixels)
        encode_s = time.perf_counter() - t
        emb = merged(model, ids, mask, feats)
        t = time.perf_counter()
        h, past = model.hidden(emb, None, use_cache=True)
        logits = model.head(h[:, -1:])
        prefill_s = time.perf_counter() - t
        t = time.perf_counter()
        tokens = []
        for step in range(new_tokens):
            tok = int(logits[0, -1].argmax())
            tokens.append(tok)
            if step + 1 == new_tokens:
                break
            h, past = model.hidden(model.embed(torch.tensor([[tok]])), past, use_cache=True)
            logits = model.head(h[:, -1:])
        decode_s = time.perf_counter() - t
    return dict(encode_s=encode_s, prefill_s=prefill_s, decode_s=decode_s, tokens=tokens)


def forward(d, inputs, mode, new_tokens, warmup, reps, threads):
    torch.set_num_threads(threads)
    code, why = peer_model.official_code()
    if code is not None:
        peer_model.import_official(code)
    if mode == "nf4":
        import bitsandbytes  # noqa: F401
    import transformers  # reported below; imported before the idle baseline, as in every mode

    idle = peer_model.rss_mib()
    t0 = time.perf_counter()
    model, why = peer_model.load(d, mode)
    load_s = time.perf_counter() - t0
    load_peak = peer_model.rss_mib()
    inp = peer_model.read_inputs(inputs)
    for _ in range(warmup):
        run_once(model, inp, new_tokens)
    runs = [run_once(model, inp, new_tokens) for _ in range(reps)]
    best = min(runs, key=lambda r: r["encode_s"] + r["prefill_s"] + r["decode_s"])

    print(
        json.dumps(
            dict(
                best,
                backend=model.label,
                official_missing=why,
                builders=model.patched,
                load_s=load_s,
                positions=int(inp["input_ids"].shape[0]),
                idle_rss_mib=idle,
                load_peak_rss_mib=load_peak,
                peak_rss_mib=peer_model.rss_mib(),
                torch=torch.__version__,
                transformers=transformers.__version__,
                warmup=warmup,
                reps=reps,
            )
        )
    )


def check(d):
    import os

    from safetensors.torch import load_file

    g = load_file(os.path.join(d, "goldens.safetensors"))
    model, why = peer_model.load(d, "f32")
    print("backend:", model.label, "|", why or model.patched)
    with torch.no_grad():
        feats = model.encode(g["pixel_values_global"][0])
        emb = merged(model, g["full_input_ids"][0], g["full_images_seq_mask"][0], feats)
        h, _ = model.hidden(emb)
        logits = model.head(h)
    print("image_features", (feats - g["image_features"]).abs().max().item())
    print("logits", (logits - g["logits"]).abs().max().item())


if __name__ == "__main__":
    if sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        a = sys.argv[2:]
        forward(a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]), int(a[6]))
