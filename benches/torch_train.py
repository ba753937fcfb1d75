"""PyTorch + PEFT (+ bitsandbytes) peer of the training benchmark (`benches/train_vs_peft.rs`):
LoRA fine-tuning steps of DeepSeek-OCR on random pages, the same computation as DeepSynth's
`Trainer::step`: frozen vision tower (no grad), decoder with PEFT LoRA on every decoder linear
(q, k, v, o, gate, up, down; experts included), causal-LM loss on the text positions, backward,
gradient clipping at 1.0, AdamW.

  python torch_train.py MODEL_DIR MODE STEPS BATCH IMAGE TEXT THREADS
      MODE: lora (dense f32 base) or qlora (bitsandbytes NF4 base with double quantisation)
      -> one JSON line: load_s, step_s (the timed steps after one warm-up), losses, peak_rss_mib

The forward pass is `torch_ocr.Ocr` (an independent torch implementation of the architecture,
checked against the fixture goldens) with its decoder linears routed through PEFT's modules.
Weights are read one tensor at a time and quantised as they load (as transformers does with
`load_in_4bit`), so peak memory is not inflated by a dense copy.
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_ocr import Ocr  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Node(torch.nn.Module):
    pass


def is_target(key):
    return key.startswith("model.layers.") and key.endswith(".weight") and key.split(".")[-2] in TARGETS


def load(d, mode):
    """The Ocr peer with its decoder linears as (PEFT-wrapped) modules."""
    m = Ocr.__new__(Ocr)
    m.cfg = json.load(open(os.path.join(d, "config.json")))
    m.dtype = torch.float32
    m.w = {}
    root = Node()
    if mode == "qlora":
        import bitsandbytes as bnb
    for f in sorted(x for x in os.listdir(d) if x.endswith(".safetensors")):
        with safe_open(os.path.join(d, f), "pt") as st:
            for key in st.keys():
                w = st.get_tensor(key)
                w = w.float() if w.is_floating_point() else w
                if not is_target(key):
                    m.w[key] = w
                    continue
                out_f, in_f = w.shape
                if mode == "qlora":
                    lin = bnb.nn.Linear4bit(in_f, out_f, bias=False, compute_dtype=torch.float32,
                                            quant_type="nf4", compress_statistics=True)
                    lin.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4",
                                                   compress_statistics=True)
                    lin = lin.to("cpu")
                else:
                    lin = torch.nn.Linear(in_f, out_f, bias=False)
                    lin.weight = torch.nn.Parameter(w, requires_grad=False)
                path = key[: -len(".weight")].split(".")
                node = root
                for p in path[:-1]:
                    if not hasattr(node, p):
                        node.add_module(p, Node())
                    node = getattr(node, p)
                node.add_module(path[-1], lin)
                del w
    # The rest of Ocr.__init__: sizes and the rotary tables.
    c = m.cfg
    m.h, m.nh = c["hidden_size"], c["num_attention_heads"]
    m.nkv = c.get("num_key_value_heads") or m.nh
    m.hd = m.h // m.nh
    m.sam = c["vision_config"]["width"]["sam_vit_b"]
    m.clip = c["vision_config"]["width"]["clip-l-14-224"]
    inv = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, m.hd, 2).float() / m.hd))
    t = torch.arange(c.get("max_position_embeddings", 2048), dtype=torch.float32)
    emb = torch.cat([torch.outer(t, inv)] * 2, -1)
    m.cos, m.sin = emb.cos(), emb.sin()
    peft = get_peft_model(root, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS))
    mods = dict(peft.base_model.model.named_modules())
    dense = Ocr.lin

    def lin(self, x, p, bias=True):
        mod = mods.get(p)
        return mod(x) if mod is not None else dense(self, x, p, bias)

    m.lin = lin.__get__(m)
    return m, peft


def train_logits(m, x):
    """Decoder over a whole batch `[B, L, H]` (equal lengths, causal), all logits."""
    c = m.cfg
    B, L, _ = x.shape
    cos, sin = m.cos[:L][None, None], m.sin[:L][None, None]
    rot = lambda t: torch.cat([-t[..., m.hd // 2:], t[..., : m.hd // 2]], -1)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        y = m.rms(x, p + ".input_layernorm")
        q = m.lin(y, p + ".self_attn.q_proj", False).view(B, L, m.nh, m.hd).transpose(1, 2)
        k = m.lin(y, p + ".self_attn.k_proj", False).view(B, L, m.nkv, m.hd).transpose(1, 2)
        v = m.lin(y, p + ".self_attn.v_proj", False).view(B, L, m.nkv, m.hd).transpose(1, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + m.lin(o.transpose(1, 2).reshape(B, L, -1), p + ".self_attn.o_proj", False)
        y = m.rms(x, p + ".post_attention_layernorm")
        if i >= c.get("first_k_dense_replace", 0) and c.get("n_routed_experts"):
            x = x + m.moe(y.reshape(B * L, -1), p + ".mlp").view(B, L, -1)
        else:
            x = x + m.mlp(y, p + ".mlp")
    x = m.rms(x, "model.norm")
    return F.linear(x, m.W("lm_head.weight")).float()


def main():
    d, mode, steps, batch, image, text, threads = sys.argv[1:8]
    steps, batch, image, text, threads = int(steps), int(batch), int(image), int(text), int(threads)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    m, peft = load(d, mode)
    load_s = time.perf_counter() - t0
    params = [p for p in peft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    vocab = m.cfg["vocab_size"]
    emb_w = m.W("model.embed_tokens.weight")
    with torch.no_grad():
        t = time.perf_counter()
        m.encode(torch.zeros(3, image, image))
        encode_s = time.perf_counter() - t
    step_s, losses = [], []
    for s in range(steps + 1):
        t = time.perf_counter()
        pixels = torch.rand(batch, 3, image, image) * 2 - 1
        with torch.no_grad():
            feats = torch.stack([m.encode(pixels[b]) for b in range(batch)])
        ids = torch.randint(2, vocab, (batch, text))
        x = torch.cat([emb_w[torch.zeros(batch, 1, dtype=torch.long)], feats, emb_w[ids]], 1)
        logits = train_logits(m, x)
        # Every text token is scored, the first one from the last image position (as the
        # shifted labels of the Rust side: -100 on BOS and the image positions).
        prefix = 1 + feats.shape[1]
        loss = F.cross_entropy(logits[:, prefix - 1:-1].reshape(-1, vocab), ids.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if s > 0:
            step_s.append(time.perf_counter() - t)
            losses.append(loss.item())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(load_s=load_s, encode_s=encode_s, step_s=step_s, losses=losses, peak_rss_mib=peak,
                          positions=int(x.shape[1]), trainable=sum(p.numel() for p in params),
                          torch=torch.__version__)))


if __name__ == "__main__":
    main()
