"""PyTorch + PEFT (+ bitsandbytes) side of `cargo bench --bench train_vs_peft`: LoRA / QLoRA training
steps of DeepSeek-OCR on the exact pages, ids and labels the Rust bench wrote, the same computation
as DeepSynth's `Trainer::step`: frozen vision tower (no grad), PEFT LoRA r=16 alpha 32 dropout 0.05
on every decoder linear (q, k, v, o, gate, up, down; experts and shared experts included), the
decoder in training mode (MoE balancing loss included), `lm_head` and cross-entropy only at the
positions the labels score (DeepSynth: `ForwardOptions::scored_only`), backward, gradient clipping
at 1.0, AdamW (lr 1e-4, weight decay 0.01).

  python torch_train.py MODEL_DIR INPUTS MODE WARMUP THREADS [DEVICE [DTYPE]]
      MODE: lora (f32 base) | qlora (NF4 decoder linears, f32 compute; the dtype rules of
            peer_model.py, the same as DeepSynth's `QuantizeSpec::nf4_decoder()`) | qlora-gc
            (qlora with gradient checkpointing of the decoder layers, non-reentrant)
      INPUTS: a folder of `step-S.safetensors` (S = 0, 1, ...), each with `pixels` [B, 3, S, S]
              f32, `input_ids` [B, L] i64, `image_mask` [B, L] u8, `labels` [B, L] i64
              (-100 = not scored), read just before its step and dropped after it
      DEVICE: cpu (default) or cuda[:N]; DTYPE: f32 (default) or bf16, the compute dtype
              (bitsandbytes' `compute_dtype`; every tensor that is not NF4 in it). Off the CPU the
              model is benches/torch_ocr.py's, each step ends with `torch.cuda.synchronize()`
              before the clock is read, and the process pauses 0.5 s after creating its CUDA
              context so that the caller can sample the context's memory alone.
      -> one JSON line: step_s (the steps after the first WARMUP), losses, memory: idle_rss_mib
         (after importing torch, transformers, peft, bitsandbytes and the model code, before
         loading) and peak_rss_mib (VmHWM at the end); on a GPU also gpu_max_allocated_mib
         (torch's own count)

The model is the official DeepSeek-OCR code when $DEEPSYNTH_OCR_CODE names it, else
benches/torch_ocr.py (see peer_model.py).
"""
import json
import sys
import time

import torch
import torch.nn.functional as F

import peer_model


def main():
    d, inputs, mode, warmup, threads = sys.argv[1:6]
    warmup, threads = int(warmup), int(threads)
    device = sys.argv[6] if len(sys.argv) > 6 else "cpu"
    compute = {"f32": None, "bf16": torch.bfloat16}[sys.argv[7] if len(sys.argv) > 7 else "f32"]
    on_gpu = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    if on_gpu:
        torch.zeros(1, device=device)
        time.sleep(0.5)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    code, _ = peer_model.official_code()
    if code is not None and not on_gpu:
        peer_model.import_official(code)
    import bitsandbytes  # noqa: F401  (imported in both modes, as the idle baseline counts it)
    import peft
    from peft import LoraConfig, get_peft_model

    idle = peer_model.rss_mib()
    t0 = time.perf_counter()
    model, why = peer_model.load(d, "qlora" if mode.startswith("qlora") else "lora", device, compute)
    if mode.endswith("-gc"):
        model.enable_checkpointing()
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=peer_model.LORA_TARGETS)
    wrapped = get_peft_model(model.peft_root(), lora)
    if hasattr(model, "set_peft"):
        model.set_peft(wrapped)
    load_s = time.perf_counter() - t0
    params = [p for p in wrapped.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    import os

    step_file = lambda s: os.path.join(inputs, f"step-{s}.safetensors")
    steps = 0
    while os.path.exists(step_file(steps)):
        steps += 1
    model.train(True)

    # One page's encoder alone (as the Rust side reports it).
    first = peer_model.read_inputs(step_file(0))["pixels"][0].to(device)
    t = time.perf_counter()
    model.encode(first)
    sync()
    encode_s = time.perf_counter() - t

    step_s, losses = [], []
    for s in range(steps):
        inp = {k: v.to(device) for k, v in peer_model.read_inputs(step_file(s)).items()}
        pixels, ids = inp["pixels"], inp["input_ids"].long()
        mask, labels = inp["image_mask"].bool(), inp["labels"].long()
        t = time.perf_counter()
        feats = torch.cat([model.encode(pixels[b]) for b in range(pixels.shape[0])])
        emb = model.embed(ids).masked_scatter(mask[..., None], feats.to(model.compute))
        h, _ = model.hidden(emb)
        shift = labels[:, 1:]
        scored = shift != -100
        logits = model.head(h[:, :-1][scored])
        loss = F.cross_entropy(logits, shift[scored])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sync()
        if s >= warmup:
            step_s.append(time.perf_counter() - t)
            losses.append(loss.item())
        del inp, pixels, feats, emb, h, logits  # this step's inputs go before the next are read
    import transformers

    print(
        json.dumps(
            dict(
                backend=model.label,
                official_missing=why,
                builders=model.patched,
                load_s=load_s,
                encode_s=encode_s,
                step_s=step_s,
                losses=losses,
                positions=int(ids.shape[1]),
                scored_per_step=int(scored.sum()),
                trainable=sum(p.numel() for p in params),
                idle_rss_mib=idle,
                peak_rss_mib=peer_model.rss_mib(),
                gpu_max_allocated_mib=torch.cuda.max_memory_allocated() / 2**20 if on_gpu else None,
                device=device,
                torch=torch.__version__,
                transformers=transformers.__version__,
                peft=peft.__version__,
                bitsandbytes=bitsandbytes.__version__,
            )
        )
    )


if __name__ == "__main__":
    main()
