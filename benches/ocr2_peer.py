"""PyTorch side of the DeepSeek-OCR 2 rows of `cargo bench --bench ocr_forward`: transformers'
native `deepseek_ocr2` (5.24.0, its default CPU kernels: SDPA attention, default experts path)
reads the exact views and ids the Rust bench wrote, encodes them, prefills and decodes greedily
with the KV cache, keeping logits only where they are used (as DeepSynth's `generate`).

  python ocr2_peer.py forward MODEL_DIR INPUTS MODE NEW_TOKENS WARMUP REPS THREADS
      MODEL_DIR: the tiny fixture (its hf_config.json is the native config) or a full-size
                 checkpoint under the real names (the native config is built with the sizes of
                 tests/fixtures/deepseek-ocr2-tiny/count_params.py); transformers' own key
                 conversion loads the real names.
      MODE: f32 | bf16 (every weight and activation in that dtype)
      INPUTS: safetensors with `pixels` [3, S, S] f32, `tiles` [T, 3, t, t] f32, `input_ids` [L]
              i64, `image_mask` [L] u8
      -> one JSON line: the best of REPS timed runs (by total) after WARMUP untimed ones, the
         generated tokens, idle_rss_mib (VmHWM after importing torch and transformers, before
         loading) and peak_rss_mib (VmHWM at the end).
"""
import json
import os
import sys
import tempfile
import time

import torch

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "deepseek-ocr2-tiny")


def hwm_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def native_folder(model_dir, tmp):
    """A folder transformers loads natively: its config.json plus links to our weights."""
    from transformers import DeepseekOcr2Config

    hf = os.path.join(model_dir, "hf_config.json")
    if os.path.exists(hf):
        with open(hf) as f:
            cfg = DeepseekOcr2Config.from_dict(json.load(f))
    else:
        sys.path.insert(0, FIXTURE)
        from count_params import ENCODER, SAM, TEXT

        cfg = DeepseekOcr2Config(vision_config={"sam_config": SAM, "encoder_config": ENCODER}, text_config=TEXT,
                                 image_token_id=128815, tie_word_embeddings=False)
    cfg.save_pretrained(tmp)
    for name in os.listdir(model_dir):
        if name.endswith(".safetensors") or name.endswith(".safetensors.index.json"):
            os.symlink(os.path.abspath(os.path.join(model_dir, name)), os.path.join(tmp, name))
    return tmp


def run_once(model, inp, new_tokens, dtype):
    ids, mask = inp["input_ids"].long(), inp["image_mask"].bool()
    pixels, tiles = inp["pixels"].to(dtype)[None], inp["tiles"].to(dtype)
    with torch.no_grad():
        t = time.perf_counter()
        feats = model.model.get_image_features(pixel_values=pixels, pixel_values_local=tiles,
                                               num_local_patches=[tiles.shape[0]]).pooler_output[0]
        encode_s = time.perf_counter() - t
        emb = model.get_input_embeddings()(ids[None])
        emb = emb.masked_scatter(mask[None, :, None], feats.to(emb.dtype))
        t = time.perf_counter()
        out = model(inputs_embeds=emb, use_cache=True, logits_to_keep=1)
        prefill_s = time.perf_counter() - t
        tokens = [int(out.logits[0, -1].argmax())]
        t = time.perf_counter()
        past = out.past_key_values
        for _ in range(new_tokens - 1):
            out = model(input_ids=torch.tensor([[tokens[-1]]]), past_key_values=past, use_cache=True,
                        logits_to_keep=1)
            past = out.past_key_values
            tokens.append(int(out.logits[0, -1].argmax()))
        decode_s = time.perf_counter() - t
    return dict(encode_s=encode_s, prefill_s=prefill_s, decode_s=decode_s, tokens=tokens, positions=int(ids.shape[0]))


def forward(model_dir, inputs, mode, new_tokens, warmup, reps, threads):
    torch.set_num_threads(threads)
    import transformers
    from safetensors.torch import load_file
    from transformers import DeepseekOcr2ForConditionalGeneration

    idle = hwm_mib()
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[mode]
    inp = load_file(inputs)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        model = DeepseekOcr2ForConditionalGeneration.from_pretrained(native_folder(model_dir, tmp), dtype=dtype).eval()
        load_s = time.perf_counter() - t
    load_peak = hwm_mib()
    for _ in range(warmup):
        run_once(model, inp, new_tokens, dtype)
    runs = [run_once(model, inp, new_tokens, dtype) for _ in range(reps)]
    best = min(runs, key=lambda r: r["encode_s"] + r["prefill_s"] + r["decode_s"])
    best.update(load_s=load_s, idle_rss_mib=idle, load_peak_rss_mib=load_peak, peak_rss_mib=hwm_mib(),
                warmup=warmup, reps=reps, torch=torch.__version__, transformers=transformers.__version__,
                backend="transformers' native deepseek_ocr2 (its default CPU kernels: SDPA attention)",
                builders="from_pretrained on the same safetensors (transformers' key conversion)")
    print(json.dumps(best))


if __name__ == "__main__":
    if sys.argv[1] != "forward":
        sys.exit(__doc__)
    a = sys.argv[2:]
    forward(a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]), int(a[6]))
