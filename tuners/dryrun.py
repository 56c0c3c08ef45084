"""The "exact check": peak tensor memory of one real training step computed on fake tensors.

Under torch's ``FakeTensorMode`` every op runs for its shapes and dtypes only, so a step of a
multi-billion-parameter model costs seconds of CPU and no memory. ``LiveTensorTracker`` counts the
bytes each fake tensor would hold, exactly as it does for a real step (tests check fake against
real on a tiny model). Methods: full, LoRA, prompt tuning, adapters (QLoRA's 4-bit kernels and
distillation's second model are not covered).

Two things must be switched off inside the fake step, and are restored after it:
* transformers treats fake tensors as "tracing" and would then build explicit attention masks a
  real run does not build — its ``is_tracing`` is made to answer no;
* ``Module.to`` (PEFT moves new adapter layers to their base layer's device) cannot swap fake
  parameters — everything is on the same fake CPU device, so it is made a no-op;
* the packed-sequence detector reads tensor values (impossible on fake tensors); our batches are
  never packed, so it answers "not packed".

For a GPU (``device="cuda"``) the step also runs the kernels a GPU runs, so its figure is the GPU's:
* attention (SDPA) goes through CUDA's fused kernels — FlashAttention-2 for 16-bit inputs without a
  mask, the memory-efficient kernel otherwise — whose fake (meta) implementations keep exactly what
  the CUDA kernels keep (q, k, v, output, log-sum-exp; dropout drawn inside the kernel from a seed).
  On a CPU, SDPA with attention dropout falls back to the math path and keeps the s×s scores and
  masks, which no GPU run does (GPT-2's ``attn_pdrop`` is 0.1). Grouped-query attention keeps
  PyTorch's own path, with dropout off (what the fused kernels keep is the same);
* dropout uses the fused ``native_dropout`` (a 1-byte bool mask per element, as CUDA keeps) instead
  of the CPU's multiply by a noise tensor in the activation dtype.
"""
from __future__ import annotations

import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import replace

from estimators.errors import InputError
from estimators.methods import REGISTRY
from estimators.plan import Plan
from estimators.spec import clean_config

SUPPORTED = tuple(m for m, spec in REGISTRY.items() if spec.exact_check)


def _gpu_kernels():
    """(sdpa, dropout) replacements that keep what CUDA's fused kernels keep (see module doc)."""
    import torch

    aten, sdpa = torch.ops.aten, torch.nn.functional.scaled_dot_product_attention

    def gpu_sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if k.shape[-3] != q.shape[-3]:  # grouped-query attention: PyTorch's own path, dropout inside
            return sdpa(q, k, v, attn_mask=attn_mask, dropout_p=0.0, is_causal=is_causal, scale=scale,
                        enable_gqa=enable_gqa)
        if attn_mask is None and q.dtype in (torch.bfloat16, torch.float16):
            return aten._scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal, False, scale=scale)[0]
        return aten._scaled_dot_product_efficient_attention(q, k, v, attn_mask, True, dropout_p, is_causal,
                                                            scale=scale)[0]

    def gpu_dropout(x, p=0.5, training=True, inplace=False):
        return torch.native_dropout(x, p, True)[0] if training and 0 < p < 1 else x

    return gpu_sdpa, gpu_dropout


@contextmanager
def _fake_friendly(gpu: bool = False):
    import torch
    import transformers.masking_utils as mu
    import transformers.utils.import_utils as iu

    functional = torch.nn.functional
    kept = (functional.scaled_dot_product_attention, functional.dropout)
    if gpu:
        functional.scaled_dot_product_attention, functional.dropout = _gpu_kernels()

    original = iu.is_tracing
    find_packed = mu.find_packed_sequence_indices
    mu.find_packed_sequence_indices = lambda *a, **k: None
    patched = [m for m in list(sys.modules.values())
               if getattr(m, "__name__", "").startswith("transformers") and getattr(m, "is_tracing", None) is original]
    to = torch.nn.Module.to
    for m in patched:
        m.is_tracing = lambda *a, **k: False
    torch.nn.Module.to = lambda self, *a, **k: self
    try:
        yield
    finally:
        for m in patched:
            m.is_tracing = original
        torch.nn.Module.to = to
        mu.find_packed_sequence_indices = find_packed
        functional.scaled_dot_product_attention, functional.dropout = kept


@contextmanager
def _fake_8bit_maps():
    """bitsandbytes builds its 8-bit quantization maps with ``.tolist()``, which fake tensors cannot
    answer: make them once outside the fake mode and hand them to every 8-bit optimizer built inside."""
    try:
        import bitsandbytes.functional as bnb_f
        from bitsandbytes.optim.optimizer import Optimizer8bit
    except ImportError:  # no bitsandbytes: no 8-bit optimizer to build
        yield
        return
    maps = {"dynamic": bnb_f.create_dynamic_map(signed=True), "udynamic": bnb_f.create_dynamic_map(signed=False)}
    original = Optimizer8bit.fill_qmap
    Optimizer8bit.fill_qmap = lambda self: self.name2qmap.update(maps)
    try:
        yield
    finally:
        Optimizer8bit.fill_qmap = original


def _check(plan: Plan, setup) -> None:
    if setup.method not in SUPPORTED:
        raise InputError(f"the exact check supports {', '.join(SUPPORTED)}; {setup.method} needs a real trial run")
    if setup.num_gpus > 1:
        raise InputError("the exact check models one GPU: use --num-gpus 1 (sharding is estimated analytically)")


def dry_run(config: dict, plan: Plan, device: str = "cuda", seed: int = 0) -> dict:
    """Peak live tensor bytes of a steady-state step (after a warm-up step) for ``plan`` on the
    architecture in ``config``, without allocating it, as a GPU (``device="cuda"``: foreach optimizer
    temporaries) or this CPU would run it. The model, optimizer and step come from the runtime's one
    builder (``runtime.build``), as in a trial and the exported train.py. Returns peak, phase, timing
    and the builder's report (trainable names, optimizer state bytes, micro-batches per step)."""
    import torch
    import transformers
    from torch._subclasses.fake_tensor import FakeTensorMode

    from estimators.spec import spec_from_config
    from tuners import metaspec, methods, runtime
    from tuners.memtrack import LiveTensorTracker

    metaspec.install()  # any architecture transformers builds
    setup = plan.setup(device)
    _check(plan, setup)
    cfg = clean_config(config)
    settings = {**plan.settings, "prompt_init": "random"} if "prompt_init" in plan.settings else plan.settings
    run_plan = replace(plan, settings=settings)
    doc = {**run_plan.to_json(), "recipe": methods.recipe(run_plan, spec_from_config(config))}
    t0 = time.perf_counter()
    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings(), _fake_friendly(gpu=setup.device == "cuda"), _fake_8bit_maps(), \
            FakeTensorMode(allow_non_fake_inputs=True):
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        try:  # on a GPU torch's optimizers run "foreach" (list-wide temporaries): reproduce that choice
            built = runtime.build(doc, cfg, "cpu", foreach=True if setup.device == "cuda" else None)
        except ValueError as exc:  # e.g. Gemma 2 has no SDPA path in transformers 5 (soft-capping)
            if "attention implementation" in str(exc):
                raise InputError(f"{cfg.get('model_type')} does not support attention '{setup.attention}' in "
                                 "transformers: use --attention eager") from None
            raise
        ids = torch.randint(0, int(cfg["vocab_size"]), (setup.batch_size, setup.seq_len))
        group = [{"input_ids": ids, "labels": ids} for _ in range(setup.grad_accum)]  # one optimizer step
        built.step(group)  # warm-up: the optimizer states come into being
        tracker = LiveTensorTracker()
        tracker.track(built.model, built.optimizer, group)
        with tracker:
            built.step(group, tracker.set_phase)
    return {"peak_allocated": tracker.peak, "peak_phase": tracker.peak_phase, "phases": dict(tracker.by_phase),
            "seconds": time.perf_counter() - t0, "device": "fake (no memory allocated)", "build": built.report(),
            "kernels": "CUDA's fused attention and dropout kernels (meta implementations)" if setup.device == "cuda"
            else "this CPU's kernels"}
