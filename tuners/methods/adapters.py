"""Bottleneck adapter layers (Houlsby et al. 2019): a small down-projection, GELU, up-projection
and residual after every block's attention and feed-forward sub-layers; the base is frozen.

PEFT has no such method, so this is our own small module. Adapters live in fp32 (as PEFT keeps its
adapters) and start as the identity (up-projection zero), so training starts from the base model.
"""
from __future__ import annotations

import json
from pathlib import Path

# Sub-layers that get an adapter on their output, by the names transformers gives them.
WRAPPED = ("self_attn", "attn", "mlp", "SelfAttention", "DenseReluDense")
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def _modules():
    import torch
    from torch import nn

    class BottleneckAdapter(nn.Module):
        def __init__(self, hidden: int, size: int):
            super().__init__()
            self.down = nn.Linear(hidden, size, dtype=torch.float32)
            self.up = nn.Linear(size, hidden, dtype=torch.float32)
            nn.init.normal_(self.down.weight, std=0.02)
            nn.init.zeros_(self.down.bias)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

        def forward(self, x):
            delta = self.up(nn.functional.gelu(self.down(x.to(torch.float32))))
            return x + delta.to(x.dtype)

    class WithAdapter(nn.Module):
        """Runs the wrapped sub-layer, then the adapter on its (first) output."""

        def __init__(self, inner: nn.Module, adapter: nn.Module):
            super().__init__()
            self.inner = inner
            self.adapter = adapter

        def forward(self, *args, **kwargs):
            out = self.inner(*args, **kwargs)
            if isinstance(out, tuple):
                return (self.adapter(out[0]),) + out[1:]
            return self.adapter(out)

        def __getattr__(self, name):  # attributes the parent block reads from the sub-layer
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.inner, name)

    return BottleneckAdapter, WithAdapter


def hidden_size(config) -> int:
    return getattr(config, "hidden_size", None) or getattr(config, "d_model", None) or config.n_embd


def add_adapters(model, size: int):
    """Freezes the model and inserts adapters; returns how many were inserted."""
    bottleneck, wrapper = _modules()
    for p in model.parameters():
        p.requires_grad_(False)
    h = hidden_size(model.config)
    targets = [(parent, name) for _, parent in model.named_modules() for name, child in parent.named_children()
               if name in WRAPPED and not isinstance(parent, wrapper) and not isinstance(child, wrapper)]
    for parent, name in targets:
        inner = getattr(parent, name)
        setattr(parent, name, wrapper(inner, bottleneck(h, size)))
    if not targets:
        raise ValueError(f"no attention/MLP sub-layers found in {type(model).__name__} to attach adapters to")
    return len(targets)


def adapter_state(model) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if ".adapter." in k}


def load_kwargs(setup) -> dict:
    return {}


def prepare(model, setup, options):
    add_adapters(model, setup.adapter_size)
    return model


def loss(model, batch, state):
    return model(**batch).loss


def save(model, folder, state):
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(model), folder / WEIGHTS_NAME)
    (folder / CONFIG_NAME).write_text(json.dumps({"method": "bottleneck_adapters", "adapter_size": state["setup"].adapter_size,
                                                  "wrapped": list(WRAPPED)}, indent=2))
    return folder


def load_adapters(model, folder):
    """Inserts adapters into a base model and loads trained ones saved by ``save``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    add_adapters(model, config["adapter_size"])
    missing = model.load_state_dict(load_file(folder / WEIGHTS_NAME), strict=False)
    if missing.unexpected_keys:
        raise ValueError(f"adapter weights do not match this model: {missing.unexpected_keys[:3]}")
    return model
