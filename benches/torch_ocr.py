"""PyTorch peer for the DeepSeek-OCR benchmarks: the same forward pass as DeepSynth's candle port
(SAM + compressor, CLIP, projector, DeepseekV2 MoE decoder with a KV cache), written in plain
torch ops from the architecture spec and reading the same safetensors checkpoint.

  python torch_ocr.py check FIXTURE_DIR          # parity with the fixture's goldens (prints max diffs)

No reference code is imported: this is an independent implementation of the computation, the
fallback peer of `benches/peer_model.py` when the official DeepSeek-OCR code is not available.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from safetensors.torch import load_file


def load_weights(d, dtype):
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors") and not f.startswith("adapter"))
    w = {}
    for f in files:
        for k, v in load_file(os.path.join(d, f)).items():
            w[k] = v.to(dtype) if v.is_floating_point() else v
    return w


def bicubic_aa(x, size):
    return F.interpolate(x.float(), size=size, mode="bicubic", antialias=True, align_corners=False)


class Ocr:
    def __init__(self, d, dtype):
        self.cfg = json.load(open(os.path.join(d, "config.json")))
        self.w = load_weights(d, dtype)
        self.dtype = dtype
        c = self.cfg
        self.h = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads") or self.nh
        self.hd = self.h // self.nh
        self.sam = c["vision_config"]["width"]["sam_vit_b"]
        self.clip = c["vision_config"]["width"]["clip-l-14-224"]
        inv = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, self.hd, 2, dtype=torch.int64).float() / self.hd))
        t = torch.arange(c.get("max_position_embeddings", 2048), dtype=torch.float32)
        f = torch.outer(t, inv)
        emb = torch.cat([f, f], -1)
        self.cos, self.sin = emb.cos(), emb.sin()

    def W(self, k):
        return self.w[k]

    def lin(self, x, p, bias=True):
        return F.linear(x, self.W(p + ".weight"), self.w.get(p + ".bias") if bias else None)

    # ---- SAM ----
    def rel_pos(self, table, size):
        want = 2 * size - 1
        if table.shape[0] != want:
            table = F.interpolate(table.float().t()[None], size=want, mode="linear")[0].t().to(table.dtype)
        r = torch.arange(size, device=table.device)
        idx = r[:, None] - r[None, :] + size - 1
        return table[idx]

    def sam_attn(self, x, p, heads):
        B, H, Wd, C = x.shape
        hd = C // heads
        qkv = self.lin(x, p + ".qkv").reshape(B, H * Wd, 3, heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, B * heads, H * Wd, hd).unbind(0)
        rh = self.rel_pos(self.W(p + ".rel_pos_h"), H)
        rw = self.rel_pos(self.W(p + ".rel_pos_w"), Wd)
        rq = q.reshape(B * heads, H, Wd, hd)
        rel_h = torch.einsum("bhwc,hkc->bhwk", rq, rh)
        rel_w = torch.einsum("bhwc,wkc->bhwk", rq, rw)
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(B, heads, H * Wd, H * Wd)
        o = F.scaled_dot_product_attention(
            q.view(B, heads, H * Wd, hd), k.view(B, heads, H * Wd, hd), v.view(B, heads, H * Wd, hd), attn_mask=bias
        )
        o = o.view(B, heads, H, Wd, hd).permute(0, 2, 3, 1, 4).reshape(B, H, Wd, C)
        return self.lin(o, p + ".proj")

    def sam_forward(self, x):
        s = self.sam
        pre = "model.sam_model"
        x = F.conv2d(x, self.W(pre + ".patch_embed.proj.weight"), self.W(pre + ".patch_embed.proj.bias"), stride=s.get("patch_size", 16))
        x = x.permute(0, 2, 3, 1)
        pos = self.W(pre + ".pos_embed")
        if pos.shape[1] != x.shape[1]:
            pos = bicubic_aa(pos.permute(0, 3, 1, 2), (x.shape[1], x.shape[2])).to(x.dtype).permute(0, 2, 3, 1)
        x = x + pos
        win = s.get("window_size", 14)
        eps = s.get("layer_norm_eps", 1e-6)
        for i in range(s["layers"]):
            p = f"{pre}.blocks.{i}"
            sc = x
            y = F.layer_norm(x, (x.shape[-1],), self.W(p + ".norm1.weight"), self.W(p + ".norm1.bias"), eps)
            if i not in s["global_attn_indexes"]:
                B, H, Wd, C = y.shape
                ph, pw = (win - H % win) % win, (win - Wd % win) % win
                y = F.pad(y, (0, 0, 0, pw, 0, ph))
                Hp, Wp = H + ph, Wd + pw
                y = y.view(B, Hp // win, win, Wp // win, win, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, win, win, C)
                y = self.sam_attn(y, p + ".attn", s["heads"])
                y = y.view(B, Hp // win, Wp // win, win, win, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
                y = y[:, :H, :Wd]
            else:
                y = self.sam_attn(y, p + ".attn", s["heads"])
            x = sc + y
            y = F.layer_norm(x, (x.shape[-1],), self.W(p + ".norm2.weight"), self.W(p + ".norm2.bias"), eps)
            x = x + self.lin(F.gelu(self.lin(y, p + ".mlp.lin1")), p + ".mlp.lin2")
        x = x.permute(0, 3, 1, 2)
        ln2d = lambda t, p: F.layer_norm(t.permute(0, 2, 3, 1), (t.shape[1],), self.W(p + ".weight"), self.W(p + ".bias"), eps).permute(0, 3, 1, 2)
        x = ln2d(F.conv2d(x, self.W(pre + ".neck.0.weight")), pre + ".neck.1")
        x = ln2d(F.conv2d(x, self.W(pre + ".neck.2.weight"), padding=1), pre + ".neck.3")
        x2 = F.conv2d(x, self.W(pre + ".net_2.weight"), stride=2, padding=1)
        return x2, F.conv2d(x2, self.W(pre + ".net_3.weight"), stride=2, padding=1)

    # ---- CLIP ----
    def clip_forward(self, sam):
        c = self.clip
        pre = "model.vision_model"
        B, C = sam.shape[:2]
        x = torch.cat([self.W(pre + ".embeddings.class_embedding").expand(B, 1, C), sam.flatten(2).transpose(1, 2)], 1)
        pos = self.W(pre + ".embeddings.position_embedding.weight")
        src, tgt = int(math.sqrt(pos.shape[0] - 1)), int(math.sqrt(x.shape[1]))
        if src != tgt:
            g = bicubic_aa(pos[1:].view(1, src, src, C).permute(0, 3, 1, 2), (tgt, tgt)).to(pos.dtype)
            pos = torch.cat([pos[:1], g.permute(0, 2, 3, 1).reshape(tgt * tgt, C)], 0)
        emb = x + pos[None]
        eps = c.get("layernorm_epsilon", 1e-5)
        x = F.layer_norm(emb, (C,), self.W(pre + ".pre_layrnorm.weight"), self.W(pre + ".pre_layrnorm.bias"), c.get("pre_layernorm_epsilon", 1e-5))
        nh = c["heads"]
        for i in range(c["layers"]):
            p = f"{pre}.transformer.layers.{i}"
            y = F.layer_norm(x, (C,), self.W(p + ".layer_norm1.weight"), self.W(p + ".layer_norm1.bias"), eps)
            qkv = self.lin(y, p + ".self_attn.qkv_proj").view(B, -1, 3, nh, C // nh)
            q, k, v = [t.squeeze(2).permute(0, 2, 1, 3) for t in torch.split(qkv, 1, dim=2)]
            o = F.scaled_dot_product_attention(q, k, v).permute(0, 2, 1, 3).reshape(B, -1, C)
            h = x + self.lin(o, p + ".self_attn.out_proj")
            y = F.layer_norm(h, (C,), self.W(p + ".layer_norm2.weight"), self.W(p + ".layer_norm2.bias"), eps)
            y = self.lin(y, p + ".mlp.fc1")
            x = h + self.lin(y * torch.sigmoid(1.702 * y), p + ".mlp.fc2")
        return emb, x

    def encode(self, pixels):
        n2, sam = self.sam_forward(pixels[None].to(self.dtype))
        _, clip = self.clip_forward(sam)
        feats = self.lin(torch.cat([clip[:, 1:], sam.flatten(2).permute(0, 2, 1)], -1), "model.projector.layers")[0]
        side = int(math.sqrt(feats.shape[0]))
        g = feats.view(side, side, -1)
        nl = self.W("model.image_newline").expand(side, 1, g.shape[-1])
        g = torch.cat([g, nl], 1).reshape(-1, g.shape[-1])
        return torch.cat([g, self.W("model.view_seperator")[None]], 0)

    # ---- decoder ----
    def rms(self, x, p):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.cfg.get("rms_norm_eps", 1e-6))
        return self.W(p + ".weight") * xf.to(x.dtype)

    def mlp(self, x, p):
        return self.lin(F.silu(self.lin(x, p + ".gate_proj", False)) * self.lin(x, p + ".up_proj", False), p + ".down_proj", False)

    def moe(self, x, p):
        c = self.cfg
        T, H = x.shape
        scores = F.linear(x.float(), self.W(p + ".gate.weight").float()).softmax(-1)
        w, idx = torch.topk(scores, c["num_experts_per_tok"], dim=-1)
        w = w * c.get("routed_scaling_factor", 1.0)
        out = torch.zeros(T, H, dtype=torch.float32, device=x.device)
        for e in idx.unique().tolist():
            tok, slot = (idx == e).nonzero(as_tuple=True)
            out.index_add_(0, tok, self.mlp(x[tok], f"{p}.experts.{e}").float() * w[tok, slot, None])
        out = out.to(x.dtype)
        if c.get("n_shared_experts"):
            out = out + self.mlp(x, p + ".shared_experts")
        return out

    def layer(self, i, x, cos, sin, rot, cache, causal):
        """Decoder layer `i` on `x` [B, L, H] (appending to the KV `cache` unless it is None)."""
        c = self.cfg
        B, L = x.shape[0], x.shape[1]
        p = f"model.layers.{i}"
        y = self.rms(x, p + ".input_layernorm")
        q = self.lin(y, p + ".self_attn.q_proj", False).view(B, L, self.nh, self.hd).transpose(1, 2)
        k = self.lin(y, p + ".self_attn.k_proj", False).view(B, L, self.nkv, self.hd).transpose(1, 2)
        v = self.lin(y, p + ".self_attn.v_proj", False).view(B, L, self.nkv, self.hd).transpose(1, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        if cache is not None:
            if i in cache:
                k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
            cache[i] = (k, v)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal and L > 1)
        x = x + self.lin(o.transpose(1, 2).reshape(B, L, -1), p + ".self_attn.o_proj", False)
        y = self.rms(x, p + ".post_attention_layernorm")
        if i >= c.get("first_k_dense_replace", 0) and c.get("n_routed_experts"):
            return x + self.moe(y.reshape(B * L, -1), p + ".mlp").view(B, L, -1)
        return x + self.mlp(y, p + ".mlp")

    def decoder_hidden(self, x, start, cache, causal=True):
        """`model.norm` of the last layer's output for `x` [B, L, H] at positions start..start+L,
        appending to the KV `cache` (a dict, layer -> (k, v))."""
        c = self.cfg
        B, L = x.shape[0], x.shape[1]
        cos = self.cos[start:start + L].to(x.dtype)[None, None]
        sin = self.sin[start:start + L].to(x.dtype)[None, None]
        rot = lambda t: torch.cat([-t[..., self.hd // 2:], t[..., : self.hd // 2]], -1)
        for i in range(c["num_hidden_layers"]):
            if getattr(self, "checkpoint", False) and torch.is_grad_enabled():
                # Gradient checkpointing (as transformers' non-reentrant one): the layer runs
                # again in the backward pass. No KV cache in training.
                x = torch.utils.checkpoint.checkpoint(self.layer, i, x, cos, sin, rot, None, causal, use_reentrant=False)
            else:
                x = self.layer(i, x, cos, sin, rot, cache, causal)
        return self.rms(x, "model.norm")

    def decoder(self, x, start, cache):
        """Logits of the last position."""
        h = self.decoder_hidden(x, start, cache)
        return F.linear(h[:, -1:], self.W("lm_head.weight")).float()


def check(d):
    g = load_file(os.path.join(d, "goldens.safetensors"))
    m = Ocr(d, torch.float32)
    with torch.no_grad():
        n2, sam = m.sam_forward(g["pixel_values_global"])
        feats = m.encode(g["pixel_values_global"][0])
        ids = g["full_input_ids"][0]
        emb = m.W("model.embed_tokens.weight")[ids].clone()
        emb[g["full_images_seq_mask"][0].bool()] = feats
        cache = {}
        # full logits: run the decoder position by position through the cache
        logits = torch.cat([m.decoder(emb[None, t:t + 1], t, cache) for t in range(len(ids))], 1)
    print("sam_out", (sam - g["sam_out_global"]).abs().max().item())
    print("image_features", (feats - g["image_features"]).abs().max().item())
    print("logits", (logits - g["logits"]).abs().max().item())


if __name__ == "__main__":
    check(sys.argv[2] if sys.argv[1] == "check" else sys.argv[1])
