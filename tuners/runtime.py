#!/usr/bin/env python
"""Train the plan in ``plan.json``: one script for every tuning method (written by Tuning Advisor).

    python train.py [--plan plan.json] [--model PATH] [--data PATH] [--max-steps N] [--output DIR]
    torchrun --nproc-per-node N train.py ...      # N GPUs: DDP, or FSDP2 when the plan shards

What to train is data, not code: the plan's ``recipe`` says which weights are quantized (a
bitsandbytes config), which PEFT config wraps the model (LoRA, DoRA, prompt tuning...), whether
bottleneck adapters are inserted, whether a frozen teacher adds a distillation term, and what is
saved (a PEFT adapter, our adapter layers, or the whole model). The same functions run Tuning
Advisor's trial runs (``tuners/runtime.py`` is this file), so a trial and an export cannot disagree.

Needs torch, transformers, peft (and bitsandbytes for a quantized base or 8-bit Adam). Data:
JSONL, CSV or Parquet with input/output, prompt/completion, chat messages or text; the loss is on
the output part only.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings
from collections import namedtuple
from pathlib import Path

# --- data -------------------------------------------------------------------------------------

FORMATS = {"input_output": ("input", "output"), "prompt_completion": ("prompt", "completion"),
           "messages": ("messages",), "text": ("text",)}
Example = namedtuple("Example", "prompt completion")
"""``prompt``: what the model conditions on (no loss; empty for plain text); ``completion``: what it learns."""


class DataError(ValueError):
    """The data file cannot be used; the message says why in one line."""


# Bounds that keep reading a data file linear and small: a training file larger than this is read by
# a real training job's streaming loader, not held in one process here; a field longer than
# MAX_FIELD_CHARS (~250k tokens, far beyond any seq_len) is a wrong column or a dump, skipped as malformed.
MAX_DATA_BYTES = 1024**3
MAX_FIELD_CHARS = 1_000_000


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def read_rows(path) -> list[dict]:
    """Rows of a JSONL/JSON/CSV/Parquet file as dicts."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file '{path}' not found (give a .jsonl, .csv or .parquet file)")
    suffix = path.suffix.lower()
    size = path.stat().st_size
    if size > MAX_DATA_BYTES:
        raise DataError(f"data file '{path.name}' is {size / 1024**3:.1f} GiB; a trial reads at most "
                        f"{MAX_DATA_BYTES // 1024**3} GiB: give a sample of it (e.g. head -n 100000)")
    try:
        if suffix in (".jsonl", ".json"):
            text = path.read_text(encoding="utf-8")
            if suffix == ".json" and text.lstrip().startswith("["):
                rows = json.loads(text)
            else:
                rows, bad = [], []
                for n, line in enumerate(text.splitlines(), 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line, parse_constant=_no_constant))
                        except json.JSONDecodeError as exc:
                            bad.append((n, exc.msg))
                        except ValueError as exc:  # NaN / Infinity: Python reads them, JSON has no such thing
                            bad.append((n, str(exc)))
                if bad:  # every bad line, in one message: the first 20 by number, then a count
                    shown = ", ".join(str(n) for n, _ in bad[:20]) + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
                    first = f"line {bad[0][0]} is not valid JSON ({bad[0][1]})" if len(bad) == 1 else \
                        f"{len(bad)} lines are not valid JSON (lines {shown}; the first: {bad[0][1]})"
                    raise DataError(f"data file '{path.name}' {first}; each line must be one JSON object")
        elif suffix in (".csv", ".parquet"):
            import pandas as pd

            if suffix == ".csv" and path.read_bytes().count(b'"') % 2:
                # RFC 4180 doubles a quote inside a quoted field, so an odd count means one never closed
                # (pandas would read everything after it as one field of one row).
                raise DataError(f"data file '{path.name}' has an unclosed double quote: close it, or write a "
                                'literal quote as "" inside a quoted field')
            frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
            rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        else:
            raise DataError(f"data file '{path.name}' has an unsupported type '{suffix}' (use .jsonl, .csv or .parquet)")
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(f"data file '{path.name}' is not UTF-8 text") from None
    except Exception as exc:  # pandas/pyarrow parse errors
        raise DataError(f"data file '{path.name}' could not be parsed: {str(exc).splitlines()[0]}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"data file '{path.name}' must hold one JSON object per row")
    if not rows:
        raise DataError(f"data file '{path.name}' has no rows")
    return rows


def detect_format(rows: list[dict], name: str = "data") -> str:
    keys = set().union(*(r.keys() for r in rows[:100]))
    for fmt, cols in FORMATS.items():
        if set(cols) <= keys:
            return fmt
    raise DataError(f"{name}: none of its {len(keys)} columns is one we know (expected input/output, "
                    "prompt/completion, messages or text)")


def _render_messages(messages):
    """Chat rows: every turn up to the last assistant turn is the prompt; the last assistant turn is learned."""
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return None
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        return None
    prompt = "".join(f"<|{m.get('role', 'user')}|>\n{m.get('content') or ''}\n" for m in messages[:last])
    return Example(prompt + "<|assistant|>\n", str(messages[last].get("content") or ""))


def to_examples(rows: list[dict], fmt: str) -> list:
    """One Example per row; None where the row is empty, malformed or longer than MAX_FIELD_CHARS."""
    out = []
    for r in rows:
        if fmt == "messages":
            e = _render_messages(r.get("messages"))
        else:
            a, b = ("", "text") if fmt == "text" else FORMATS[fmt]
            prompt, completion = (r.get(a) if a else ""), r.get(b)
            e = None if completion is None or not str(completion).strip() else \
                Example("" if prompt is None else str(prompt), str(completion))
        out.append(None if e is None or len(e.prompt) + len(e.completion) > MAX_FIELD_CHARS else e)
    return out


def load_examples(path) -> list:
    rows = read_rows(path)
    usable = [e for e in to_examples(rows, detect_format(rows, Path(path).name)) if e is not None]
    if not usable:
        raise DataError(f"data file '{Path(path).name}' has no usable rows")
    return usable


def encode(examples, tokenizer, seq_len: int) -> list[dict]:
    """input_ids and labels per example; labels are -100 on the prompt (no loss there) and after truncation."""
    eos = tokenizer.eos_token_id
    out = []
    for e in examples:
        p = tokenizer(e.prompt, add_special_tokens=False)["input_ids"] if e.prompt else []
        c = tokenizer(e.completion, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        ids = (p + c)[:seq_len]
        labels = ([-100] * len(p) + c)[:seq_len]
        if all(x == -100 for x in labels):  # prompt alone fills the window: learn the tail instead
            labels = ids[:]
        out.append({"input_ids": ids, "labels": labels})
    return out


def pack(encoded: list[dict], seq_len: int) -> list[dict]:
    """Lays the encoded examples end to end and cuts rows of exactly ``seq_len`` tokens (no padding;
    the plan's ``packing``). Each example's first token gets no loss, so no row learns to predict one
    example from the end of another; attention still spans the examples of a row (plain packing, as
    TRL's ``packing=True`` without position resets). A tail shorter than a row is dropped, unless it
    is all there is."""
    ids, labels = [], []
    for e in encoded:
        ids += e["input_ids"]
        labels += [-100] + e["labels"][1:]
    rows = [{"input_ids": ids[i:i + seq_len], "labels": labels[i:i + seq_len]}
            for i in range(0, len(ids) - seq_len + 1, seq_len)]
    return rows or [{"input_ids": ids, "labels": labels}]


def collate(chunk: list[dict], pad_id: int, length: int):
    """Pads a list of encoded examples to ``length`` tokens: input_ids, attention_mask, labels."""
    import torch

    ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
    labels = torch.full((len(chunk), length), -100, dtype=torch.long)
    mask = torch.zeros((len(chunk), length), dtype=torch.long)
    for row, e in enumerate(chunk):
        n = min(len(e["input_ids"]), length)
        ids[row, :n] = torch.tensor(e["input_ids"][:n])
        labels[row, :n] = torch.tensor(e["labels"][:n])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# --- the model, as the recipe says ------------------------------------------------------------

DTYPES = ("bf16", "fp16", "fp32")


def torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
            "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def auto_class(config: dict):
    """The transformers auto class that builds a trainable LM for this config."""
    import transformers

    if config.get("is_encoder_decoder") or config.get("model_type") == "t5":
        return transformers.AutoModelForSeq2SeqLM
    return transformers.AutoModelForCausalLM


def quantization_config(spec: dict | None):
    """A ``BitsAndBytesConfig`` from the recipe's plain dict (dtype names as strings)."""
    if not spec:
        return None
    from transformers import BitsAndBytesConfig

    kwargs = dict(spec)
    if "bnb_4bit_compute_dtype" in kwargs:
        kwargs["bnb_4bit_compute_dtype"] = torch_dtype(kwargs["bnb_4bit_compute_dtype"])
    return BitsAndBytesConfig(**kwargs)


def load_dtype(settings: dict) -> str:
    """Mixed precision keeps fp32 master weights (autocast does the 16-bit math)."""
    return "fp32" if settings.get("mixed_precision") else settings["precision"]


def load_model(folder, recipe: dict, settings: dict, device: str, trust_remote_code: bool = False):
    """``from_pretrained`` with the plan's dtype, attention kernel and quantization."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code).to_dict()
    kwargs = {"dtype": torch_dtype(load_dtype(settings)), "attn_implementation": settings.get("attention", "sdpa"),
              "trust_remote_code": trust_remote_code}
    q = quantization_config(recipe.get("quantization"))
    if q is not None:
        kwargs["quantization_config"] = q
        if device.startswith("cuda"):
            kwargs["device_map"] = {"": device}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, info = auto_class(cfg).from_pretrained(folder, output_loading_info=True, **kwargs)
    missing = [k for k in info.get("missing_keys") or [] if not k.endswith(("rotary_emb.inv_freq", "position_ids"))]
    if missing:  # strict: weights that are not in the files would be random, and the run would be called real
        raise ValueError(f"the weights in {folder} miss {len(missing)} tensors (e.g. {missing[0]}): give a complete "
                         "model folder, or a config.json for random weights")
    if q is None:
        model.to(device)
    return model


def _bottleneck_classes():
    import torch
    from torch import nn

    class BottleneckAdapter(nn.Module):
        """Houlsby et al. 2019: down-projection, GELU, up-projection, residual; fp32, starts as identity."""

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


def add_adapters(model, size: int, wrapped) -> int:
    """Freezes the model and puts a bottleneck adapter after every sub-layer named in ``wrapped``."""
    bottleneck, wrapper = _bottleneck_classes()
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = model.config
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model", None) or cfg.n_embd
    targets = [(parent, name) for _, parent in model.named_modules() for name, child in parent.named_children()
               if name in wrapped and not isinstance(parent, wrapper) and not isinstance(child, wrapper)]
    if not targets:
        raise ValueError(f"no attention/MLP sub-layers named {list(wrapped)} in {type(model).__name__} for adapters")
    device = next(model.parameters()).device
    for parent, name in targets:
        setattr(parent, name, wrapper(getattr(parent, name), bottleneck(hidden, size).to(device)))
    return len(targets)


def prepare(model, recipe: dict, settings: dict, tokenizer_path=None):
    """The trainable model: PEFT config, adapter layers, or every weight, as the recipe says."""
    if recipe.get("prepare_kbit"):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(settings.get("gradient_checkpointing")),
            gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_spec = recipe.get("peft")
    if peft_spec:
        import peft

        kwargs = dict(peft_spec["kwargs"])
        masked_lm = type(model).__name__.endswith("ForMaskedLM")  # an encoder's MLM step (exact check only)
        kwargs.setdefault("task_type", "SEQ_2_SEQ_LM" if model.config.is_encoder_decoder else
                          None if masked_lm else "CAUSAL_LM")
        if kwargs.get("prompt_tuning_init") == "TEXT":
            kwargs["tokenizer_name_or_path"] = str(tokenizer_path)
        model = peft.get_peft_model(model, getattr(peft, peft_spec["config"])(**kwargs))
    elif recipe.get("adapters"):
        add_adapters(model, recipe["adapters"]["size"], recipe["adapters"]["wrapped"])
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    if settings.get("gradient_checkpointing") and not recipe.get("prepare_kbit"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        if recipe.get("trains") != "all":
            model.enable_input_require_grads()
    return model


def make_optimizer(name: str, params, lr: float, foreach: bool | None = None):
    """``foreach=None`` lets torch choose (foreach on CUDA, per tensor on CPU)."""
    import torch

    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, foreach=foreach)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, foreach=foreach)
    if name == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=lr)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)
    raise ValueError(f"unknown optimizer {name!r}")


def chunked_cross_entropy(hidden, head, labels, chunk: int = 1024):
    """Causal-LM cross-entropy from the last hidden states without the (tokens × vocab) logits: the head
    and the loss run ``chunk`` tokens at a time under activation checkpointing, so each chunk's fp32
    logits live only while it is computed (forward) or recomputed (backward) — the idea of Liger's
    FusedLinearCrossEntropy and Apple's Cut Cross-Entropy, in plain torch. Same value as transformers'
    loss: shifted labels, mean over the labelled tokens."""
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    h = hidden[:, :-1].reshape(-1, hidden.size(-1))
    y = labels[:, 1:].reshape(-1).to(h.device)
    count = (y != -100).sum()

    def part(h_chunk, y_chunk):
        return F.cross_entropy(head(h_chunk).float(), y_chunk, ignore_index=-100, reduction="sum")

    total = sum(checkpoint(part, h[i:i + chunk], y[i:i + chunk], use_reentrant=False)
                for i in range(0, h.size(0), chunk))
    return total / count.clamp(min=1) if torch.is_tensor(total) else hidden.sum() * 0


def fused_causal_lm_loss(model, batch):
    """The model's loss through ``chunked_cross_entropy``: its output head is swapped for an identity for
    the forward (so the model returns hidden states), then applied chunk by chunk. Prompt tuning's
    virtual tokens come first in the output: their positions get no label."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base = getattr(base, "_orig_mod", base)
    head = base.get_output_embeddings()
    base.set_output_embeddings(torch.nn.Identity())
    try:
        hidden = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    finally:
        base.set_output_embeddings(head)
    labels = batch["labels"]
    extra = hidden.size(1) - labels.size(1)
    if extra > 0:
        labels = torch.cat([labels.new_full((labels.size(0), extra), -100), labels], dim=1)
    return chunked_cross_entropy(hidden, head, labels)


def loss_fn(recipe: dict, teacher=None, fused: bool = False):
    """``loss(model, batch)``: the model's own loss (``fused``: chunked, without the full logits), or with
    a teacher the distillation mix (Hinton et al. 2015): (1 − α)·CE + α·T²·KL(teacher_T ‖ student_T) on
    the labelled tokens (the KL term needs both logits: distillation ignores ``fused``)."""
    spec = recipe.get("teacher")
    if not spec:
        return fused_causal_lm_loss if fused else (lambda model, batch: model(**batch).loss)
    temperature, alpha = float(spec["temperature"]), float(spec["alpha"])

    def distill(model, batch):
        import torch
        import torch.nn.functional as F

        out = model(**batch)
        with torch.no_grad():
            t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        mask = batch["labels"] != -100
        # One tokenizer, padded embeddings (Qwen2.5-0.5B 151,936 vs 7B 152,064 rows): the rows past the
        # smaller vocabulary are padding no token maps to, so only the shared rows are compared.
        n = min(out.logits.size(-1), t_logits.size(-1))
        s = out.logits[mask][..., :n].float() / temperature
        t = t_logits[mask][..., :n].float() / temperature
        kl = F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), log_target=True, reduction="batchmean")
        return (1 - alpha) * out.loss + alpha * temperature**2 * kl

    return distill


def train_step(model, optimizer, batch: dict, on_phase=lambda name: None, loss=None, autocast=None, accum: int = 1,
               update: bool = True):
    """Forward, backward and (when ``update``) the optimizer step with gradients freed.
    ``autocast=(device_type, dtype)`` runs the forward under ``torch.autocast`` (mixed precision).
    Returns the detached loss tensor (fake tensors in a dry run have no value to read)."""
    import torch

    on_phase("forward")
    with torch.autocast(autocast[0], dtype=autocast[1]) if autocast else contextlib.nullcontext():
        value = loss(model, batch) if loss else model(**batch).loss
    on_phase("backward")
    (value / accum if accum > 1 else value).backward()
    out = value.detach()
    del value
    if update:
        on_phase("optimizer")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return out


ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def save_artifact(model, out, recipe: dict, tokenizer=None, state_dict=None) -> Path:
    """The PEFT adapter (PEFT's format), our adapter layers (safetensors + config), or the whole model."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kind = recipe.get("save", "model")
    if kind == "adapters":
        from safetensors.torch import save_file

        state = state_dict if state_dict is not None else model.state_dict()
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items() if ".adapter." in k},
                  out / ADAPTER_WEIGHTS)
        (out / ADAPTER_CONFIG).write_text(json.dumps({"method": "bottleneck_adapters", **recipe["adapters"]}, indent=2))
    else:
        model.save_pretrained(out, state_dict=state_dict)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def load_artifact(base_model, folder):
    """A base model with a saved artifact applied (PEFT adapter or our adapter layers)."""
    folder = Path(folder)
    config = json.loads((folder / ADAPTER_CONFIG).read_text()) if (folder / ADAPTER_CONFIG).exists() else {}
    if config.get("method") == "bottleneck_adapters":
        from safetensors.torch import load_file

        add_adapters(base_model, config["size"], config["wrapped"])
        result = base_model.load_state_dict(load_file(folder / ADAPTER_WEIGHTS), strict=False)
        if result.unexpected_keys:
            raise ValueError(f"adapter weights do not match this model: {result.unexpected_keys[:3]}")
        return base_model
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, folder)


# --- several processes (torchrun) -------------------------------------------------------------


def distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) when run directly."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def sharded(sharding: str) -> bool:
    """FSDP2 shards the parameters (``fsdp``/``zero3``) or keeps them gathered after forward (``zero2``)."""
    return sharding in ("zero2", "zero3", "fsdp")


def wrap_distributed(model, sharding: str, device: str, mixed_precision_dtype=None, cpu_offload: bool = False):
    """DDP (``none``), FSDP2 full shard (``fsdp``/``zero3``) or FSDP2 keeping parameters gathered
    between forward and backward (``zero2``: gradients and optimizer states sharded) — the
    engines torch.distributed provides; nothing home-made. Under FSDP2, mixed precision casts at the
    all-gather (``MixedPrecisionPolicy``: 16-bit compute, fp32 gradient reduction), not by autocast;
    ``cpu_offload`` keeps each rank's parameter shard, gradients and optimizer states in host memory
    (``CPUOffloadPolicy``)."""
    import torch
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard
    from torch.nn.parallel import DistributedDataParallel

    if not sharded(sharding):
        return DistributedDataParallel(model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    reshard = sharding != "zero2"
    policy = MixedPrecisionPolicy(param_dtype=mixed_precision_dtype, reduce_dtype=torch.float32) \
        if mixed_precision_dtype is not None else MixedPrecisionPolicy()
    blocks = [m for m in model.modules() if type(m).__name__.endswith(("DecoderLayer", "Block", "EncoderLayer"))
              and not any(isinstance(c, type(m)) for c in m.children())]
    offload = CPUOffloadPolicy() if cpu_offload else OffloadPolicy()
    for block in blocks:
        fully_shard(block, reshard_after_forward=reshard, mp_policy=policy, offload_policy=offload)
    fully_shard(model, reshard_after_forward=reshard, mp_policy=policy, offload_policy=offload)
    return model


def full_state_dict(model):
    """The unsharded state dict on rank 0 (FSDP2/DDP alike), for saving."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def verify(model, out: Path, model_path, recipe: dict, settings: dict, device: str, ids: list[int]) -> float:
    """Loads the saved artifact afresh and compares its logits with the trained model's on ``ids``;
    writes both inputs and the trained logits to ``verify.safetensors``. Raises if they differ."""
    import torch
    from safetensors.torch import save_file

    probe = torch.tensor([ids], device=device)
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=probe).logits.float().cpu()
    save_file({"input_ids": probe.cpu(), "logits": trained}, out / "verify.safetensors")
    if recipe.get("save") == "model":
        fresh = load_model(out, {}, settings, device)
    else:
        base = load_model(model_path, recipe, settings, device)
        if recipe.get("prepare_kbit"):  # as in training: the non-quantized weights upcast to fp32
            from peft import prepare_model_for_kbit_training

            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
        fresh = load_artifact(base, out)
    fresh.eval()
    with torch.no_grad():
        again = fresh(input_ids=probe).logits.float().cpu()
    diff = float((again - trained).abs().max())
    if not diff <= 1e-3 * max(1.0, float(trained.abs().max())):
        raise RuntimeError(f"the saved artifact does not reproduce the trained model (max |Δ logit| {diff:.3g})")
    return diff


# --- the script -------------------------------------------------------------------------------


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", default=str(here / "plan.json"), help="the plan (default: plan.json beside this script)")
    ap.add_argument("--model", help="model folder (config, weights, tokenizer); default: the plan's model")
    ap.add_argument("--tokenizer", help="tokenizer folder if the model folder has none")
    ap.add_argument("--teacher", help="distillation: the teacher's model folder (default: the plan's)")
    ap.add_argument("--data", help="training data (default: the plan's data path)")
    ap.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    ap.add_argument("--output", default="output", help="where the adapter or model is saved (default: output)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verify", action="store_true",
                    help="after saving, load the base again with the saved artifact and check it reproduces the "
                         "trained model's outputs (writes verify.safetensors; loads the base a second time)")
    args = ap.parse_args(argv)

    import torch
    import transformers

    plan = json.loads(Path(args.plan).read_text())
    s, recipe, hardware = plan["settings"], plan["recipe"], plan.get("hardware", {})
    model_path = args.model or plan["model"]
    data_path = args.data or (plan.get("data") or {}).get("path")
    if not data_path:
        ap.error("no data: give --data FILE (the plan has no data path)")
    if Path(model_path).exists() and not (Path(model_path) / "config.json").is_file():
        ap.error(f"--model must be a Hugging Face model folder with config.json, or a hub id (got {model_path})")

    rank, local_rank, world = distributed()
    if world > 1:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    torch.manual_seed(args.seed)
    say = print if rank == 0 else (lambda *a, **k: None)

    tok = transformers.AutoTokenizer.from_pretrained(args.tokenizer or model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = prepare(load_model(model_path, recipe, s, device), recipe, s, tokenizer_path=args.tokenizer or model_path)
    teacher = None
    if recipe.get("teacher"):
        t = recipe["teacher"]
        teacher = load_model(args.teacher or t["model"], {"quantization": t.get("quantization")}, s, device).eval()
        teacher.requires_grad_(False)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    say(f"trainable parameters: {sum(p.numel() for p in params):,} of {sum(p.numel() for p in model.parameters()):,}")
    autocast = (device.split(":")[0], torch_dtype(s["precision"])) if s.get("mixed_precision") else None
    if world > 1:
        sharding = hardware.get("sharding", "none")
        model = wrap_distributed(model, sharding, device, autocast[1] if autocast and sharded(sharding) else None,
                                 cpu_offload=bool(hardware.get("cpu_offload")) and sharded(sharding))
        autocast = None if sharded(sharding) else autocast
        params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(s["optimizer"], params, float(s["lr"]))
    loss = loss_fn(recipe, teacher, fused=bool(s.get("fused_cross_entropy")))
    # Speed settings (issue 21): compile and the fused loss run here; the other two are not implemented
    # by this script, which says so instead of pretending.
    trained = torch.compile(model) if s.get("compile") else model
    for name in ("optimizer_in_backward", "activation_offloading"):
        if s.get(name):
            say(f"note: {name} is not implemented by this script: it runs without it (expect the memory and speed of "
                "the plan with it off)")

    encoded = encode(load_examples(data_path), tok, s["seq_len"])
    if s.get("packing"):
        encoded = pack(encoded, s["seq_len"])
    encoded = encoded[rank::world]
    if not encoded:
        ap.error("no usable examples for this rank")
    batch_size, accum = s["batch_size"], s.get("grad_accum", 1)
    if len(encoded) < batch_size * accum:
        ap.error(f"{len(encoded)} examples per rank are fewer than one optimizer step needs ({batch_size} × {accum}): "
                 "give more data, or lower batch_size or grad_accum in the plan")
    steps_per_epoch = max(1, len(encoded) // (batch_size * accum))
    total = math.ceil(steps_per_epoch * s.get("epochs", 1))
    if args.max_steps:
        total = min(total, args.max_steps)
    say(f"{len(encoded)} examples per rank, {world} rank(s), {total} optimizer steps")
    losses, step, t0, generator = [], 0, time.time(), torch.Generator().manual_seed(args.seed)
    while step < total:
        order = torch.randperm(len(encoded), generator=generator).tolist()
        for i in range(0, len(order) - batch_size * accum + 1, batch_size * accum):
            micro = [order[i + k * batch_size:i + (k + 1) * batch_size] for k in range(accum)]
            for k, idx in enumerate(micro):
                chunk = [encoded[j] for j in idx]
                length = s["seq_len"] if world > 1 else max(len(e["input_ids"]) for e in chunk)
                batch = {key: v.to(device) for key, v in collate(chunk, tok.pad_token_id, length).items()}
                value = train_step(trained, optimizer, batch, loss=loss, autocast=autocast, accum=accum,
                                   update=k == accum - 1)
            step += 1
            losses.append(float(value))
            if not math.isfinite(losses[-1]):
                say(f"error: loss is {losses[-1]} at step {step}: lower the learning rate or check the data")
                return 1
            say(f"step {step}/{total} loss {losses[-1]:.4f} ({time.time() - t0:.1f} s)", flush=True)
            if step >= total:
                break

    state = full_state_dict(model) if world > 1 else None
    if world > 1:
        model = getattr(model, "module", model)
    if rank == 0:
        out = save_artifact(model, args.output, recipe, tok, state_dict=state)
        log = {"losses": losses, "steps": step, "world_size": world, "seconds": time.time() - t0}
        if args.verify:
            log["verify_max_abs_diff"] = verify(model, out, model_path, recipe, s, device, encoded[0]["input_ids"][:16])
            say(f"reload check: the saved artifact reproduces the trained outputs (max |Δ logit| "
                f"{log['verify_max_abs_diff']:.2e})")
        (out / "train_log.json").write_text(json.dumps(log, indent=2))
        say(f"saved to {out}")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
