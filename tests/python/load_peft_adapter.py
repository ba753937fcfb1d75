"""Loads a DeepSynth adapter folder with PEFT onto a module tree built from a base checkpoint's
2-D weights (every linear of the model under its checkpoint name, vision included, so PEFT's own
target matching decides what gets LoRA), then prints what PEFT made of it as JSON. Used by
tests/python_readers.rs.

usage: load_peft_adapter.py ADAPTER_DIR BASE.safetensors
"""
import json
import sys

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file

adapter_dir, base_path = sys.argv[1], sys.argv[2]
base = load_file(base_path)


class Node(torch.nn.Module):
    pass


class Root(Node):
    # PeftModelForCausalLM (task_type CAUSAL_LM, as our config says) wraps generation.
    def prepare_inputs_for_generation(self, *args, **kwargs):
        return kwargs


root = Root()
for key, w in base.items():
    if not key.endswith(".weight") or w.dim() != 2 or "embed" in key or key.startswith("lm_head"):
        continue
    path = key[: -len(".weight")].split(".")
    node = root
    for p in path[:-1]:
        if not hasattr(node, p):
            node.add_module(p, Node())
        node = getattr(node, p)
    node.add_module(path[-1], torch.nn.Linear(w.shape[1], w.shape[0], bias=False))

cfg = LoraConfig.from_pretrained(adapter_dir)
model = get_peft_model(root, cfg)
ours = load_file(f"{adapter_dir}/adapter_model.safetensors")
expected = get_peft_model_state_dict(model)
result = set_peft_model_state_dict(model, ours)
loaded = get_peft_model_state_dict(model)
out = {
    "r": cfg.r,
    "task_type": str(cfg.task_type),
    "peft_class": type(model).__name__,
    "lora_alpha": cfg.lora_alpha,
    "target_modules": sorted(cfg.target_modules),
    "peft_keys": sorted(expected),
    "our_keys": sorted(ours),
    "shapes_match": all(tuple(expected[k].shape) == tuple(ours[k].shape) for k in ours if k in expected),
    "unexpected_keys": sorted(result.unexpected_keys),
    "values_equal": all(torch.equal(loaded[k], ours[k]) for k in ours if k in loaded),
}
print(json.dumps(out))
