#!/usr/bin/env python
"""Train the plan in ``plan.json``: one script for every tuning method (written by Tuning Advisor).

    python train.py [--plan plan.json] [--model PATH] [--data PATH] [--max-steps N] [--output DIR]
    torchrun --nproc-per-node N train.py ...      # N GPUs: DDP, or FSDP2 when the plan shards

What to train is data, not code: the plan's ``recipe`` says which weights are quantized (a
bitsandbytes config), which PEFT config wraps the model (LoRA, DoRA, prompt tuning...), whether
bottleneck adapters are inserted, whether a frozen teacher adds a distillation term, and what is
saved (a PEFT adapter, our adapter layers, or the whole model). The same functions run Tuning
Advisor's trial runs (``tuners/runtime.py`` is this file), so a trial and an export cannot disagree.
Beside it: ``traindata.py`` (reading, encoding, packing and batching the data) and ``trainloop.py``
(schedule, clipping, eval, checkpoints, progress).

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
from dataclasses import dataclass, field
from pathlib import Path

# --- the files beside this one: traindata.py (the data), trainloop.py (the loop) ------------------


def _sibling(name: str):
    """``name``.py beside this file, imported once: ``tuners.<name>`` when this is ``tuners.runtime`` (the
    trial, the dry run, tests), the plain module ``name`` when this runs as the exported ``train.py``, whose
    folder (where the export copies the siblings) is on ``sys.path`` — put there if ``python -P`` left it out."""
    import importlib

    if __package__:
        return importlib.import_module(f"{__package__}.{name}")
    folder = str(Path(__file__).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


traindata = _sibling("traindata")
# Its names, as they were before the split: ``runtime.encode``, ``runtime.loader``... keep working.
FORMATS, Example, DataError = traindata.FORMATS, traindata.Example, traindata.DataError
MAX_DATA_BYTES, MAX_FIELD_CHARS = traindata.MAX_DATA_BYTES, traindata.MAX_FIELD_CHARS
read_rows, detect_format, to_examples, load_examples = (traindata.read_rows, traindata.detect_format,
                                                        traindata.to_examples, traindata.load_examples)
encode, pack, collate = traindata.encode, traindata.pack, traindata.collate
training_rows, arrange, loader = traindata.training_rows, traindata.arrange, traindata.loader

# --- the model, as the recipe says ------------------------------------------------------------

DTYPES = ("bf16", "fp16", "fp32")


def torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
            "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def model_class(config: dict):
    """The transformers auto class that builds a trainable LM for this config: seq2seq for T5-style
    encoder-decoders, the masked-LM head for BERT-style encoders, a causal LM otherwise."""
    import transformers

    arch = (config.get("architectures") or [""])[0]
    if config.get("is_encoder_decoder") or config.get("model_type") == "t5":
        return transformers.AutoModelForSeq2SeqLM
    if config.get("model_type") in ("bert", "roberta") or "MaskedLM" in arch:
        return transformers.AutoModelForMaskedLM
    return transformers.AutoModelForCausalLM


auto_class = model_class


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


def load_model(source, recipe: dict, settings: dict, device: str, trust_remote_code: bool = False):
    """The base model in the plan's dtype, attention kernel and quantization: ``from_pretrained`` from a
    model folder, or (``source`` a config dict) built from the config with random weights — the dry run
    does this under fake tensors, so the dtype is set as the default while building, never by ``.to``."""
    if isinstance(source, dict):
        return _from_config(source, settings)
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code).to_dict()
    kwargs = {"dtype": torch_dtype(load_dtype(settings)), "attn_implementation": settings.get("attention", "sdpa"),
              "trust_remote_code": trust_remote_code}
    q = quantization_config(recipe.get("quantization"))
    if q is not None:
        kwargs["quantization_config"] = q
        if device.startswith("cuda"):
            kwargs["device_map"] = {"": device}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, info = model_class(cfg).from_pretrained(source, output_loading_info=True, **kwargs)
    missing = [k for k in info.get("missing_keys") or [] if not k.endswith(("rotary_emb.inv_freq", "position_ids"))]
    if missing:  # strict: weights that are not in the files would be random, and the run would be called real
        raise ValueError(f"the weights in {source} miss {len(missing)} tensors (e.g. {missing[0]}): give a complete "
                         "model folder, or a config.json for random weights")
    if q is None:
        model.to(device)
    return model


def _from_config(config: dict, settings: dict):
    import torch
    import transformers

    cfg = {k: v for k, v in config.items() if k not in ("torch_dtype", "dtype")}
    conf = transformers.AutoConfig.for_model(**cfg)
    conf._attn_implementation = settings.get("attention", "sdpa")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype(load_dtype(settings)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model_class(cfg).from_config(conf)
    finally:
        torch.set_default_dtype(previous)


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


def make_optimizer(spec: dict, params, lr: float, foreach: bool | None = None):
    """The optimizer the recipe names: ``{"class": "torch.optim.AdamW", "kwargs": {...}, "foreach": true}``
    (Tuning Advisor's optimizer registry writes it). ``foreach=None`` lets torch choose (foreach on CUDA,
    per tensor on CPU), for optimizers that take the switch."""
    import importlib

    module, _, name = spec["class"].rpartition(".")
    kwargs = dict(spec.get("kwargs") or {})
    if spec.get("foreach"):
        kwargs["foreach"] = foreach
    return getattr(importlib.import_module(module), name)(params, lr=lr, **kwargs)


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


# --- one builder: the plan -> the model, optimizer, loss and data that run ---------------------
# The trial, this script and the dry run (under fake tensors) all build through ``build`` and train
# through ``Built.step`` on groups from ``loader``: what a trial measures is what the project trains.


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of the optimizer's state tensors (each tensor once; a sharded one by its local shard)."""
    seen, total = set(), 0
    for state in optimizer.state.values():
        for value in state.values():
            if hasattr(value, "numel") and id(value) not in seen:
                seen.add(id(value))
                local = getattr(value, "_local_tensor", value)
                total += local.numel() * local.element_size()
    return total


@dataclass
class Built:
    """What ``build`` makes of a plan; ``step`` runs one optimizer step and counts its micro-batches."""

    model: object
    optimizer: object
    loss: object
    teacher: object = None
    autocast: tuple | None = None
    """``(device_type, dtype)`` for ``torch.autocast`` under mixed precision (None: no autocast)."""
    accum: int = 1
    steps_taken: list = field(default_factory=list)
    """Micro-batches each optimizer step ran (what ``report`` says, not what the plan asked)."""
    runner: object = None
    """What the steps call when it is not the model itself (``torch.compile``'s wrapper)."""

    def step(self, group: list, on_phase=lambda name: None, update=None):
        """One optimizer step over the micro-batches in ``group``: each loss divided by their number,
        gradients accumulated, then the update: ``update(optimizer)`` when given (``train.py`` clips the
        gradients and advances its schedule there), else the optimizer's step with gradients freed.
        Returns the mean loss (a detached tensor)."""
        values = [train_step(self.runner or self.model, self.optimizer, batch, on_phase, loss=self.loss, autocast=self.autocast,
                             accum=len(group), update=update is None and k == len(group) - 1)
                  for k, batch in enumerate(group)]
        if update is not None:
            on_phase("optimizer")
            update(self.optimizer)
        self.steps_taken.append(len(group))
        return sum(values) / len(values)

    def trainable_params(self) -> list:
        return [p for p in self.model.parameters() if p.requires_grad]

    def trainable(self) -> list:
        base = getattr(self.model, "module", self.model)  # DDP wraps; FSDP2 keeps the names
        return [name for name, p in base.named_parameters() if p.requires_grad]

    def report(self) -> dict:
        """The same fields from the trial, train.py and the dry run (tests compare them)."""
        counts = sorted(set(self.steps_taken))
        params = [p for p in self.model.parameters() if p.requires_grad]
        return {"trainable_names": self.trainable(), "trainable_params": sum(p.numel() for p in params),
                "optimizer_state_bytes": optimizer_state_bytes(self.optimizer),
                "micro_batches_per_step": counts[0] if len(counts) == 1 else counts or None}


def build(plan: dict, source, device: str, *, teacher=None, tokenizer_path=None, trust_remote_code: bool = False,
          world: int = 1, foreach: bool | None = None) -> Built:
    """The plan document (``settings``, ``recipe``, ``hardware``) as it runs: the base model (class, dtype,
    quantization, device map) from ``source`` (a folder, or a config dict for random weights), the
    method's wrapping, a frozen teacher, autocast, DDP/FSDP2 over ``world`` ranks, the optimizer."""
    s, recipe, hardware = plan["settings"], plan["recipe"], plan.get("hardware") or {}
    model = prepare(load_model(source, recipe, s, device, trust_remote_code), recipe, s, tokenizer_path=tokenizer_path)
    model.train()
    frozen = None
    if recipe.get("teacher"):
        spec = recipe["teacher"]
        frozen = load_model(teacher or spec["model"], {"quantization": spec.get("quantization")}, s, device).eval()
        frozen.requires_grad_(False)
    autocast = (device.split(":")[0], torch_dtype(s["precision"])) if s.get("mixed_precision") else None
    if world > 1:  # DDP or FSDP2 as the plan shards; under FSDP2 mixed precision casts at the all-gather
        fsdp = recipe["sharding"]["engine"] == "fully_shard"
        model = wrap_distributed(model, recipe["sharding"], device, autocast[1] if autocast and fsdp else None,
                                 cpu_offload=bool(hardware.get("cpu_offload")) and fsdp)
        autocast = None if fsdp else autocast
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(recipe["optimizer"], params, float(s["lr"]), foreach=foreach)
    loss = loss_fn(recipe, frozen, fused=bool(s.get("fused_cross_entropy")))
    if s.get("compile"):  # the steps run the compiled module; the model itself is what is saved
        import torch

        return Built(model, optimizer, loss, frozen, autocast, int(s.get("grad_accum", 1)), runner=torch.compile(model))
    return Built(model, optimizer, loss, frozen, autocast, int(s.get("grad_accum", 1)))


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


def wrap_distributed(model, sharding: dict, device: str, mixed_precision_dtype=None, cpu_offload: bool = False):
    """The recipe's ``sharding`` (``{"engine": "ddp"|"fully_shard", "reshard_after_forward": bool}``, from Tuning
    Advisor's sharding registry): DDP, FSDP2 full shard, or FSDP2 keeping parameters gathered between
    forward and backward (ZeRO-2 as run here: gradients and optimizer states sharded) — the engines
    torch.distributed provides; nothing home-made. Under FSDP2, mixed precision casts at the all-gather
    (``MixedPrecisionPolicy``: 16-bit compute, fp32 gradient reduction), not by autocast; ``cpu_offload``
    keeps each rank's parameter shard, gradients and optimizer states in host memory (``CPUOffloadPolicy``)."""
    import torch
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard
    from torch.nn.parallel import DistributedDataParallel

    if sharding["engine"] != "fully_shard":
        return DistributedDataParallel(model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    reshard = bool(sharding.get("reshard_after_forward", True))
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


def _trainloop():
    """The loop's helpers (schedule, clipping, eval, checkpoints, progress): ``trainloop.py`` beside this
    file, in the exported project as in ``tuners/``."""
    return _sibling("trainloop")


def _arguments(argv, loop):
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
    plan_path = ap.parse_known_args(argv)[0].plan
    try:
        plan = json.loads(Path(plan_path).read_text())
    except (OSError, ValueError) as exc:
        ap.error(f"cannot read the plan {plan_path} ({exc}): give --plan FILE")
    loop.add_arguments(ap, plan.get("training"))  # schedule, clipping, eval, checkpoints: the plan's defaults
    args = ap.parse_args(argv)
    if loop.check_args(args):
        ap.error(loop.check_args(args))
    return ap, args, plan


def _inputs(ap, args, plan: dict, loop) -> tuple[str, Path]:
    """The model folder (or hub id) and the data file, checked before anything heavy loads."""
    model_path = args.model or plan.get("model_source") or plan["model"]
    data_path = args.data or (plan.get("data") or {}).get("path")
    if not data_path:
        ap.error("no data: give --data FILE (the plan has no data path)")
    if not args.data and not Path(data_path).is_absolute():  # bundled with the project: relative to plan.json
        data_path = Path(args.plan).resolve().parent / data_path
    if not Path(data_path).is_file():
        ap.error(f"data file {data_path} not found: give --data FILE")
    if Path(model_path).exists() and not (Path(model_path) / "config.json").is_file():
        ap.error(f"--model must be a Hugging Face model folder with config.json, or a hub id (got {model_path})")
    if not args.tokenizer and loop.tokenizer_problem(model_path):
        ap.error(loop.tokenizer_problem(model_path))
    return model_path, Path(data_path)


def _steps(ap, rows: list, s: dict, max_steps) -> int:
    batch_size, accum = s["batch_size"], s.get("grad_accum", 1)
    if not rows:
        ap.error("no usable examples for this rank")
    if len(rows) < batch_size * accum:
        ap.error(f"{len(rows)} examples per rank are fewer than one optimizer step needs ({batch_size} × {accum}): "
                 "give more data, or lower batch_size or grad_accum in the plan")
    total = math.ceil(max(1, len(rows) // (batch_size * accum)) * s.get("epochs", 1))
    return min(total, max_steps) if max_steps else total


@dataclass
class _Run:
    """What the loop of ``main`` carries: the built plan, its rows, schedule and what it logged."""

    built: Built
    args: object
    plan: dict
    loop: object
    rows: list
    eval_rows: list
    total: int
    device: str
    world: int
    pad_id: int
    say: object
    scheduler: object = None
    start: int = 0
    losses: list = field(default_factory=list)
    evals: list = field(default_factory=list)

    def batch(self, chunk: list) -> dict:
        length = self.plan["settings"]["seq_len"] if self.world > 1 else max(len(e["input_ids"]) for e in chunk)
        return {k: v.to(self.device) for k, v in collate(chunk, self.pad_id, length).items()}

    def evaluate(self, step: int) -> None:
        if self.eval_rows:
            value = self.loop.evaluate(self.built.model, self.eval_rows, self.batch, self.built.loss,
                                       self.plan["settings"]["batch_size"], self.built.autocast)
            self.evals.append({"step": step, "loss": value})
            self.say(f"eval loss {value:.4f} at step {step} ({len(self.eval_rows)} held-out examples)", flush=True)

    def save(self, step: int) -> None:
        if distributed()[0] == 0:
            found = self.loop.save_checkpoint(self.args.output, self.built.model, self.built.optimizer, self.scheduler,
                                              step, {"losses": self.losses, "evals": self.evals},
                                              self.args.keep_checkpoints)
            self.say(f"checkpoint written: {found}")
        if self.world > 1:
            import torch

            torch.distributed.barrier()

    def resume(self) -> None:
        found = self.loop.latest_checkpoint(self.args.output)
        if not found:
            self.say(f"no checkpoint under {Path(self.args.output) / self.loop.CHECKPOINTS}: starting from step 0")
            return
        state = self.loop.load_checkpoint(found, self.built.model, self.built.optimizer, self.scheduler)
        self.start, self.losses, self.evals = state["step"], state.get("losses", []), state.get("evals", [])
        self.say(f"resumed from {found} (step {self.start} of {self.total})")


def _train(run: _Run) -> bool:
    """The optimizer steps (skipping, in the same data order, those a resumed checkpoint holds); False when
    the loss stops being finite."""
    s, args, loop = run.plan["settings"], run.args, run.loop
    params = run.built.trainable_params()
    progress = loop.Progress(run.total, run.start)

    def update(optimizer):
        update.norm = loop.update(optimizer, run.scheduler, params, args.max_grad_norm)

    groups = loader(run.rows, s, run.pad_id, steps=run.total, seed=args.seed,
                    pad_to=s["seq_len"] if run.world > 1 else None)
    for step, group in enumerate(groups, 1):
        if step <= run.start:
            continue
        lr = run.scheduler.get_last_lr()[0]
        group = [{k: v.to(run.device) for k, v in b.items()} for b in group]
        run.losses.append(float(run.built.step(group, update=update)))
        if not math.isfinite(run.losses[-1]):
            run.say(f"error: loss is {run.losses[-1]} at step {step}: lower the learning rate or check the data")
            return False
        tokens = sum(int(b["attention_mask"].sum()) for b in group) * run.world
        run.say(progress.line(step, run.losses[-1], tokens, lr, update.norm), flush=True)
        if step < run.total and args.eval_every and step % args.eval_every == 0:
            run.evaluate(step)
        if step < run.total and args.save_every and step % args.save_every == 0:
            run.save(step)
    return True


def _finish(run: _Run, model_path, tok, probe: list, t0: float) -> None:
    """The artifact (checked with --verify), then the final eval loss and checkpoint, then the log. The eval
    runs after the save: an eval-mode forward repacks a 4-bit base on CPU in bitsandbytes."""
    built, args, plan = run.built, run.args, run.plan
    state = full_state_dict(built.model) if run.world > 1 else None  # every rank takes part in gathering it
    model = getattr(built.model, "module", built.model)
    log = {"losses": run.losses, "steps": len(run.losses), "world_size": run.world, "seconds": time.time() - t0,
           "resumed_from_step": run.start or None, **built.report()}
    out = None
    if distributed()[0] == 0:
        out = save_artifact(model, args.output, plan["recipe"], tok, state_dict=state)
        if args.verify:
            log["verify_max_abs_diff"] = verify(model, out, model_path, plan["recipe"], plan["settings"], run.device, probe)
            run.say(f"reload check: the saved artifact reproduces the trained outputs (max |Δ logit| "
                    f"{log['verify_max_abs_diff']:.2e})")
    if run.start < run.total:
        run.evaluate(run.total)
        if args.save_every or args.resume:
            run.save(run.total)
    if out is not None:
        (out / "train_log.json").write_text(json.dumps({**log, "eval": run.evals}, indent=2))
        run.say(f"saved to {out}")


def main(argv=None) -> int:
    loop = _trainloop()
    ap, args, plan = _arguments(argv, loop)
    model_path, data_path = _inputs(ap, args, plan, loop)
    import torch
    import transformers

    s = plan["settings"]
    rank, local_rank, world = distributed()
    if (args.save_every or args.resume) and world > 1 and plan["recipe"]["sharding"]["engine"] == "fully_shard":
        ap.error("--save-every and --resume run on one process or DDP; with FSDP sharding use torch.distributed.checkpoint")
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
    built = build(plan, model_path, device, teacher=args.teacher, tokenizer_path=args.tokenizer or model_path,
                  world=world)
    # Speed settings (issue 21): compile and the fused loss run here (runtime.build); the other two are not
    # implemented by this script, which says so instead of pretending.
    for name in ("optimizer_in_backward", "activation_offloading"):
        if s.get(name):
            say(f"note: {name} is not implemented by this script: it runs without it (expect the memory and speed of "
                "the plan with it off)")
    params = built.trainable_params()
    say(f"trainable parameters: {sum(p.numel() for p in params):,} of "
        f"{sum(p.numel() for p in built.model.parameters()):,}")
    encoded = encode(load_examples(data_path), tok, s["seq_len"])
    probe = encoded[0]["input_ids"][:16] if encoded else []  # --verify's input: the data's first example
    encoded, eval_rows = loop.split_eval(encoded, args.eval_share, s["batch_size"] * s.get("grad_accum", 1) * world,
                                         seed=args.seed)
    rows = arrange(encoded, s, rank, world)
    total = _steps(ap, rows, s, args.max_steps)
    say(f"{len(rows)} examples per rank, {world} rank(s), {total} optimizer steps"
        + (f", {len(eval_rows)} held out for the eval loss" if eval_rows else ""))
    run = _Run(built, args, plan, loop, rows, eval_rows, total, device, world, tok.pad_token_id, say)
    run.scheduler = loop.make_scheduler(built.optimizer, args, total)
    if args.resume:
        run.resume()
    t0 = time.time()
    if not _train(run):
        return 1
    _finish(run, model_path, tok, probe, t0)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
