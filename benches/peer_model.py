"""The PyTorch side of the model benchmarks (`ocr_forward`, `train_vs_peft`): one DeepSeek-OCR model
behind a small interface, built from one of two backends, with the frozen weights kept in the same
dtypes as DeepSynth's.

Backends
  official     the official DeepSeek-OCR PyTorch code (the Hugging Face remote code:
               modeling_deepseekocr.py, deepencoder.py, modeling_deepseekv2.py,
               configuration_deepseek_v2.py, conversation.py), imported at run time from the
               folder named by $DEEPSYNTH_OCR_CODE. Nothing of it is in this repository; see
               README.md ("Benchmarks") for how to get it. It needs transformers <= 4.47
               (environment/requirements-bench-models.txt pins 4.46.3).
  independent  benches/torch_ocr.py, this repository's own plain-torch implementation written from
               the architecture spec (used when the official code is not available).

What is used of the official code: `DeepseekOCRForCausalLM` is built by its own constructors (SAM
`ImageEncoderViT`, CLIP `VitModel`, `MlpProjector`, `DeepseekV2Model` with its MoE and
transformers' `LlamaAttention`, `lm_head`), and the image encoder and the decoder run through their
own `forward`s. Two things are done here instead of by `DeepseekOCRModel.forward`:
  - its builders hard-code the full sizes (`build_sam_vit_b`, `build_clip_l`, `n_embed = 1280`,
    `net_2`/`net_3` channels): for a config that is not the real size (the tiny fixture) they are
    replaced at run time by builders of the same official classes with the config's sizes;
  - the glue that merges image features into the embeddings (`global_features` + `image_newline`
    + `view_seperator`, then `masked_scatter_`) is repeated here in the same order, because the
    official glue calls `.cuda()` on the mask and prints shapes on every call. Then the decoder
    (`DeepseekV2Model.forward`) runs on the merged embeddings and `lm_head` is applied only where
    a logit is used: at the positions the loss scores in training, at the last position in
    generation (DeepSynth does the same: `ForwardOptions::scored_only`, last-only prefill).

Every kept tensor is a copy in anonymous memory, as DeepSynth's are: safetensors' `get_tensor`
returns tensors that keep the checkpoint file mapped, whose pages would otherwise count in the
peer's resident memory (and defer the reading to the first forward pass).

Dtypes (the same as DeepSynth's for each mode):
  f32     every tensor in float32.
  bf16    every tensor in bfloat16 (compute in bf16).
  nf4     (inference; `QuantizeSpec::nf4_decoder()`) / qlora (training): every linear of
          `model.layers.*` (attention q/k/v/o, dense MLP, experts, shared experts) NF4 with
          double quantisation, blocksize 64, f32 compute (bitsandbytes `Linear4bit`); the other
          frozen linear weights (SAM, CLIP, projector, `lm_head`) and `embed_tokens` stay in the
          checkpoint's dtype when it is 16-bit and are widened to f32 at each use
          (`compact_frozen`); everything else (norms, convolutions, biases, position tables, the
          MoE gate) in f32. Tensors are read one at a time and quantised as they load.
  lora    (training) every tensor in float32.
"""
import json
import os
import sys
import types
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open

HERE = os.path.dirname(os.path.abspath(__file__))
OFFICIAL_FILES = [
    "modeling_deepseekocr.py",
    "deepencoder.py",
    "modeling_deepseekv2.py",
    "configuration_deepseek_v2.py",
    "conversation.py",
]
PKG = "deepseek_ocr_official"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rss_mib():
    """Peak resident memory of this process so far (`VmHWM`, as the Rust side reads it), MiB.

    Not `ru_maxrss`: Linux carries that over `execve` from the forked parent, so a peer started
    by a bench process holding 2 GB would report at least 2 GB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def official_code():
    """(folder, None) when $DEEPSYNTH_OCR_CODE holds the official files, else (None, why not)."""
    d = os.environ.get("DEEPSYNTH_OCR_CODE")
    if not d:
        return None, "DEEPSYNTH_OCR_CODE is not set"
    missing = [f for f in OFFICIAL_FILES if not os.path.isfile(os.path.join(d, f))]
    if missing:
        return None, f"{d} lacks {', '.join(missing)}"
    return d, None


def import_official(d):
    """Imports the official files as the package `deepseek_ocr_official` (they use relative imports)."""
    if PKG not in sys.modules:
        pkg = types.ModuleType(PKG)
        pkg.__path__ = [d]
        sys.modules[PKG] = pkg
    import importlib

    # modeling_deepseekocr imports torchvision (for its image preprocessing, not used here).
    ocr = importlib.import_module(PKG + ".modeling_deepseekocr")
    enc = importlib.import_module(PKG + ".deepencoder")
    v2 = importlib.import_module(PKG + ".modeling_deepseekv2")
    return ocr, enc, v2


def is_real_size(cfg):
    w = cfg["vision_config"]["width"]
    return (
        cfg["hidden_size"] == 1280
        and w["sam_vit_b"]["width"] == 768
        and w["sam_vit_b"]["layers"] == 12
        and w["clip-l-14-224"]["width"] == 1024
        and w["clip-l-14-224"]["layers"] == 24
    )


def patch_builders(ocr, enc, cfg):
    """Replaces the official builders (which hard-code the full sizes) by builders of the same
    official classes with this config's sizes. Returns a description of what was patched."""
    vc = cfg["vision_config"]
    sam = vc["width"]["sam_vit_b"]
    clip = vc["width"]["clip-l-14-224"]
    proj = cfg["projector_config"]

    def build_sam(checkpoint=None):
        out_chans = sam.get("out_chans", 256)
        m = enc.ImageEncoderViT(
            depth=sam["layers"],
            embed_dim=sam["width"],
            img_size=vc["image_size"],
            mlp_ratio=sam.get("mlp_ratio", 4),
            norm_layer=partial(torch.nn.LayerNorm, eps=sam.get("layer_norm_eps", 1e-6)),
            num_heads=sam["heads"],
            patch_size=sam.get("patch_size", 16),
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=sam["global_attn_indexes"],
            window_size=sam.get("window_size", 14),
            out_chans=out_chans,
        )
        c2, c3 = sam.get("downsample_channels", [512, 1024])
        # `ImageEncoderViT.__init__` hard-codes net_2 256->512 and net_3 512->1024.
        m.net_2 = nn.Conv2d(out_chans, c2, kernel_size=3, stride=2, padding=1, bias=False)
        m.net_3 = nn.Conv2d(c2, c3, kernel_size=3, stride=2, padding=1, bias=False)
        return m.eval()

    def build_clip():
        c = dict(enc.vit_model_cfg)
        c.update(
            num_layers=clip["layers"],
            hidden_size=clip["width"],
            num_heads=clip["heads"],
            num_attention_heads=clip["heads"],
            ffn_hidden_size=clip.get("ffn_hidden_size", 4096),
            image_size=clip.get("image_size", 224),
            patch_size=clip.get("patch_size", 14),
            layernorm_epsilon=clip.get("layernorm_epsilon", 1e-5),
            pre_layernorm_epsilon=clip.get("pre_layernorm_epsilon", 1e-5),
        )
        return enc.VitModel(cfg=enc.adict(c), freeze_embed=False, freeze_pre_norm=False)

    def build_projector(_cfg):
        return enc.MlpProjector(
            enc.adict(projector_type=proj["projector_type"], input_dim=proj["input_dim"], n_embed=proj["n_embed"])
        )

    ocr.build_sam_vit_b = build_sam
    ocr.build_clip_l = build_clip
    ocr.MlpProjector = build_projector
    orig_init = ocr.DeepseekOCRModel.__init__
    if not getattr(orig_init, "_deepsynth_patched", False):

        def init(self, config):
            orig_init(self, config)
            n = proj["n_embed"]
            if self.image_newline.shape[0] != n:  # `n_embed = 1280` is hard-coded
                self.image_newline = nn.Parameter(torch.randn(n) / n**0.5)
                self.view_seperator = nn.Parameter(torch.randn(n) / n**0.5)

        init._deepsynth_patched = True
        ocr.DeepseekOCRModel.__init__ = init
    return (
        f"builders patched with the config's sizes: SAM {sam['layers']}x{sam['width']} "
        f"(img {vc['image_size']}, window {sam.get('window_size', 14)}, neck {sam.get('out_chans', 256)}, "
        f"downsample {sam.get('downsample_channels')}), CLIP {clip['layers']}x{clip['width']}, "
        f"projector {proj['input_dim']}->{proj['n_embed']}"
    )


def checkpoint_files(d):
    return [
        os.path.join(d, f)
        for f in sorted(os.listdir(d))
        if f.endswith(".safetensors") and (f == "model.safetensors" or f.startswith("model-"))
    ]


class HalfLinear(nn.Module):
    """A frozen linear kept in its 16-bit checkpoint dtype and widened to the input's dtype at each
    call (DeepSynth's `compact_frozen`)."""

    def __init__(self, weight, bias):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x):
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


def nf4_linear(weight, bias, compute=torch.float32, device="cpu"):
    """bitsandbytes `Linear4bit` (NF4, double quantisation, blocksize 64) computing in `compute`;
    moved to a GPU it is quantised there, as `from_pretrained(..., quantization_config=...)` does."""
    import bitsandbytes as bnb

    out_f, in_f = weight.shape
    lin = bnb.nn.Linear4bit(
        in_f, out_f, bias=bias is not None, compute_dtype=compute, quant_type="nf4", compress_statistics=True
    )
    lin.weight = bnb.nn.Params4bit(
        weight.float(), requires_grad=False, quant_type="nf4", compress_statistics=True, blocksize=64
    )
    if bias is not None:
        lin.bias = nn.Parameter(bias.float(), requires_grad=False)
    # On CPUs with AVX512-BF16, bitsandbytes' inference path repacks the weight and computes in
    # bf16 (and fails when in_features is not a multiple of the blocksize, as in the tiny config);
    # f32 compute, as DeepSynth's NF4 linears do, is its generic path.
    lin.support_avx512bf16_for_cpu = False
    return lin.to(device)


def placement(mode, key, stored, is_linear_weight, is_embedding, compute=torch.float32):
    """(how, dtype) for one checkpoint tensor under `mode` (see the module docstring); with a
    bf16 `compute` (PEFT + bitsandbytes' `compute_dtype=bf16`, the GPU setting) every tensor that
    is not NF4 is bf16."""
    if mode == "bf16":
        return "dense", torch.bfloat16
    if compute == torch.bfloat16:
        if mode in ("nf4", "qlora") and is_linear_weight and key.startswith("model.layers.") and "lm_head" not in key:
            return "nf4", None
        return "dense", torch.bfloat16
    if mode in ("f32", "lora"):
        return "dense", torch.float32
    # nf4 / qlora
    if is_linear_weight and key.startswith("model.layers.") and "lm_head" not in key:
        return "nf4", None
    if (is_linear_weight or is_embedding) and stored in (torch.bfloat16, torch.float16):
        return "compact", stored
    return "dense", torch.float32


class OfficialModel:
    """The official `DeepseekOCRForCausalLM` with the interface the benchmark scripts use."""

    label = "official DeepSeek-OCR code"

    def __init__(self, d, mode, code):
        ocr, enc, v2 = import_official(code)
        self.v2 = v2
        cfg_json = json.load(open(os.path.join(d, "config.json")))
        self.patched = "official builders unpatched (real sizes)"
        if not is_real_size(cfg_json):
            self.patched = patch_builders(ocr, enc, cfg_json)
        config = ocr.DeepseekOCRConfig(**cfg_json)
        config._attn_implementation = "eager"  # what from_pretrained picks for this code on CPU
        from accelerate import init_empty_weights

        with init_empty_weights():  # parameters on `meta`; the checkpoint's tensors are assigned below
            model = ocr.DeepseekOCRForCausalLM(config)
        self.compute = torch.bfloat16 if mode == "bf16" else torch.float32
        mods = dict(model.named_modules())
        for f in checkpoint_files(d):
            with safe_open(f, "pt") as st:
                keys = set(st.keys())

                def how_of(key):
                    parent, _, name = key.rpartition(".")
                    mod = mods.get(parent)
                    stored = st.get_slice(key).get_dtype()
                    stored = {"BF16": torch.bfloat16, "F16": torch.float16}.get(stored, torch.float32)
                    is_lin = isinstance(mod, nn.Linear) and name == "weight"
                    return placement(mode, key, stored, is_lin, isinstance(mod, nn.Embedding))

                for key in sorted(keys):
                    parent, _, name = key.rpartition(".")
                    mod = mods.get(parent)
                    if mod is None or not (name in mod._parameters or name in mod._buffers):
                        raise KeyError(f"checkpoint tensor {key} has no place in the official model")
                    if name == "bias" and isinstance(mod, nn.Linear) and how_of(parent + ".weight")[0] != "dense":
                        continue  # read with its weight below
                    t = st.get_tensor(key)
                    if not t.is_floating_point():
                        mod._buffers[name] = t.clone()
                        continue
                    how, dtype = how_of(key)
                    if how == "compact" and isinstance(mod, nn.Embedding):
                        mod.weight = nn.Parameter(t.clone(), requires_grad=False)
                    elif how in ("nf4", "compact"):
                        bias_key = parent + ".bias"
                        bias = st.get_tensor(bias_key).to(torch.float32, copy=True) if bias_key in keys else None
                        new = nf4_linear(t, bias) if how == "nf4" else HalfLinear(t.clone(), bias)
                        gp, _, child = parent.rpartition(".")
                        setattr(mods[gp] if gp else model, child, new)
                        mods[parent] = new
                    elif name in mod._parameters:
                        mod._parameters[name] = nn.Parameter(t.to(dtype, copy=True), requires_grad=False)
                    else:
                        mod._buffers[name] = t.to(dtype, copy=True)
                    del t
        left = [n for n, p in model.named_parameters() if p.device.type == "meta"]
        left += [n for n, b in model.named_buffers() if b.device.type == "meta"]
        if left:
            raise KeyError(f"not in the checkpoint: {left[:5]} ({len(left)})")
        self.model = model.eval()
        self.inner = model.model
        self.config = config

    # -- the interface --
    def encode(self, pixels):
        """Image features of one page [3, S, S] (global view only, no tiles), as the official
        forward arranges them: grid rows each followed by `image_newline`, then `view_seperator`."""
        m = self.inner
        with torch.no_grad():
            image_ori = pixels[None].to(self.compute)
            f1 = m.sam_model(image_ori)
            f2 = m.vision_model(image_ori, f1)
            g = m.projector(torch.cat((f2[:, 1:], f1.flatten(2).permute(0, 2, 1)), dim=-1))
            _, hw, n_dim = g.shape
            h = int(hw**0.5)
            g = g.view(h, h, n_dim)
            nl = m.image_newline.to(g.dtype)[None, None, :].expand(h, 1, n_dim)
            g = torch.cat([g, nl], dim=1).view(-1, n_dim)
            return torch.cat([g, m.view_seperator.to(g.dtype)[None, :]], dim=0)

    def embed(self, ids):
        return self.inner.embed_tokens(ids).to(self.compute)

    def hidden(self, embeds, past=None, use_cache=False):
        out = self.v2.DeepseekV2Model.forward(
            self.inner, inputs_embeds=embeds, past_key_values=past, use_cache=use_cache, return_dict=True
        )
        return out.last_hidden_state, out.past_key_values

    def head(self, h):
        return self.model.lm_head(h).float()

    def enable_checkpointing(self):
        """Gradient checkpointing of the decoder layers as transformers'
        `gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})`
        sets it up (the official DeepseekV2Model reads these two attributes in training)."""
        import functools

        import torch.utils.checkpoint

        self.inner.gradient_checkpointing = True
        self.inner._gradient_checkpointing_func = functools.partial(torch.utils.checkpoint.checkpoint, use_reentrant=False)

    def peft_root(self):
        return self.model

    def train(self, on):
        self.model.train(on)


class IndependentModel:
    """benches/torch_ocr.py's `Ocr` with the same interface; its decoder linears are modules (so
    that PEFT can wrap them) placed by the same dtype rules."""

    label = "independent torch implementation (benches/torch_ocr.py)"
    patched = "n/a"

    def __init__(self, d, mode, device="cpu", compute=None):
        sys.path.insert(0, HERE)
        from torch_ocr import Ocr

        self.compute = compute or (torch.bfloat16 if mode == "bf16" else torch.float32)
        self.device = device
        m = Ocr.__new__(Ocr)
        m.cfg = json.load(open(os.path.join(d, "config.json")))
        m.dtype = self.compute
        m.w = {}
        root = nn.Module()
        for f in checkpoint_files(d):
            with safe_open(f, "pt") as st:
                for key in st.keys():
                    t = st.get_tensor(key)
                    if not t.is_floating_point():
                        m.w[key] = t.to(device, copy=True)
                        continue
                    # 2-D `.weight`s are linear weights, but for these three.
                    is_lin = (
                        key.endswith(".weight")
                        and t.dim() == 2
                        and not any(x in key for x in ("embed_tokens", "position_embedding", ".gate.weight"))
                    )
                    how, dtype = placement(
                        mode, key, t.dtype, is_lin, key.endswith("embed_tokens.weight"), self.compute
                    )
                    if how == "nf4" or (is_lin and key.startswith("model.layers.")):
                        out_f, in_f = t.shape
                        if how == "nf4":
                            lin = nf4_linear(t, None, self.compute, device)
                        else:
                            lin = nn.Linear(in_f, out_f, bias=False, device=device)
                            lin.weight = nn.Parameter(t.to(device, dtype, copy=True), requires_grad=False)
                        path = key[: -len(".weight")].split(".")
                        node = root
                        for p in path[:-1]:
                            if not hasattr(node, p):
                                node.add_module(p, nn.Module())
                            node = getattr(node, p)
                        node.add_module(path[-1], lin)
                    else:
                        m.w[key] = t.to(device, copy=True) if how == "compact" else t.to(device, dtype, copy=True)
        c = m.cfg
        m.h, m.nh = c["hidden_size"], c["num_attention_heads"]
        m.nkv = c.get("num_key_value_heads") or m.nh
        m.hd = m.h // m.nh
        m.sam = c["vision_config"]["width"]["sam_vit_b"]
        m.clip = c["vision_config"]["width"]["clip-l-14-224"]
        inv = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, m.hd, 2).float() / m.hd))
        t = torch.arange(c.get("max_position_embeddings", 2048), dtype=torch.float32)
        emb = torch.cat([torch.outer(t, inv)] * 2, -1)
        m.cos, m.sin = emb.cos().to(device), emb.sin().to(device)
        self.root = root
        self.mods = dict(root.named_modules())
        def lin(this, x, p, bias=True):
            mod = self.mods.get(p)
            if mod is not None:
                return mod(x)
            w = this.w[p + ".weight"]
            b = this.w.get(p + ".bias") if bias else None
            return F.linear(x, w.to(x.dtype), None if b is None else b.to(x.dtype))

        m.lin = lin.__get__(m)
        self.m = m

    def set_peft(self, peft_model):
        self.mods = dict(peft_model.base_model.model.named_modules())

    def encode(self, pixels):
        with torch.no_grad():
            return self.m.encode(pixels)

    def embed(self, ids):
        return self.m.W("model.embed_tokens.weight")[ids].to(self.compute)

    def hidden(self, embeds, past=None, use_cache=False):
        start = 0 if past is None else past["len"]
        cache = {} if past is None else past
        h = self.m.decoder_hidden(embeds, start, cache, causal=True)
        cache["len"] = start + embeds.shape[1]
        return h, cache

    def head(self, h):
        return F.linear(h, self.m.W("lm_head.weight").to(h.dtype)).float()

    def enable_checkpointing(self):
        """Gradient checkpointing of the decoder layers (`Ocr.layer` under
        `torch.utils.checkpoint`, non-reentrant)."""
        self.m.checkpoint = True

    def peft_root(self):
        return self.root

    def train(self, on):
        self.root.train(on)


def load(d, mode, device="cpu", compute=None):
    """(model, why the official code is not used or None). Off the CPU (or with a `compute` dtype)
    the independent implementation is used: the official glue is not adapted to it here."""
    if device != "cpu" or compute is not None:
        return IndependentModel(d, mode, device, compute), f"device {device}: the independent implementation"
    code, why = official_code()
    if code is not None:
        return OfficialModel(d, mode, code), None
    return IndependentModel(d, mode), why


def read_inputs(path):
    """Every tensor of the benchmark's input file (written by the Rust bench)."""
    out = {}
    with safe_open(path, "pt") as st:
        for k in st.keys():
            out[k] = st.get_tensor(k).clone()
    return out
