"""Find settings under which a method fits the user's GPU(s) and budget, or say what would fit."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from estimators.catalog import GPU, gpus, model_by_id, model_configs
from estimators.errors import InputError
from estimators.estimate import Estimate, estimate
from estimators.setup import TrainSetup
from estimators.spec import ModelSpec

# GPUs to suggest when nothing fits, smallest first.
_UPGRADES = ("l40s", "a100-80gb", "h100-sxm", "h200", "mi300x", "b200")


@dataclass(frozen=True)
class Feasibility:
    estimate: Estimate
    """The estimate for the chosen settings (the last tried when nothing fits)."""
    settings: dict
    fits: bool
    within_budget: bool
    notes: list
    """What was changed to make it fit, what the budget says, and what would fit otherwise."""


def _seq_len(tokens: int, spec: ModelSpec) -> int:
    """Pad the typical example length up to a multiple of 128, within the model's context."""
    seq = max(128, -(-tokens // 128) * 128)
    return min(seq, spec.max_positions or seq)


def _ladder(base: TrainSetup, method: str, num_gpus: int):
    """Settings to try, in order of preference: natural defaults first, then memory savers."""
    yield base, []
    ckpt = dataclasses.replace(base, gradient_checkpointing=True)
    yield ckpt, ["gradient checkpointing (C6.5: ~20–30% slower, most activation memory saved)"]
    small = dataclasses.replace(ckpt, batch_size=1, grad_accum=base.batch_size * base.grad_accum)
    yield small, ["gradient checkpointing", f"micro-batch 1 with {small.grad_accum} accumulation steps"]
    steps = ["gradient checkpointing", f"micro-batch 1 with {small.grad_accum} accumulation steps"]
    if method in ("full", "distillation"):
        small = dataclasses.replace(small, optimizer="adamw_8bit")
        steps = steps + ["8-bit AdamW"]
        yield small, steps
    if method == "distillation":
        small = dataclasses.replace(small, teacher_quant_bits=4)
        steps = steps + ["teacher stored in 4 bits"]
        yield small, steps
    if num_gpus > 1:
        for sharding in ("zero2", "fsdp"):
            yield dataclasses.replace(small, sharding=sharding), steps + [f"{sharding.upper()} over {num_gpus} GPUs (C6.8)"]
        yield dataclasses.replace(small, sharding="fsdp", cpu_offload=True), steps + [
            f"FSDP over {num_gpus} GPUs with optimizer offload to CPU"]


_METHOD_KEYS = {"lora": ("lora_rank", "lora_targets"), "qlora": ("lora_rank", "lora_targets", "quant_bits"),
                "prompt_tuning": ("num_virtual_tokens",), "adapters": ("adapter_size",),
                "distillation": ("teacher_quant_bits",), "full": ()}


def _settings(s: TrainSetup) -> dict:
    keys = ("batch_size", "grad_accum", "seq_len", "precision", "optimizer", "gradient_checkpointing", "num_gpus",
            "sharding", "cpu_offload", "epochs") + _METHOD_KEYS[s.method]
    return {k: getattr(s, k) for k in keys}


def pick_student(teacher: ModelSpec) -> ModelSpec | None:
    """The largest catalog model that shares the teacher's vocabulary and is at most a quarter its size."""
    best = None
    for model_id in model_configs():
        cand = model_by_id(model_id)
        if cand.vocab == teacher.vocab and cand.kind == teacher.kind and cand.total_params * 4 <= teacher.total_params:
            if best is None or cand.total_params > best.total_params:
                best = cand
    return best


def find_feasible(spec: ModelSpec, method: str, gpu: GPU, num_gpus: int, examples: int, tokens: int, epochs: float,
                  max_hours: float | None, max_cost: float | None, teacher: ModelSpec | None = None,
                  tasks: int = 1) -> Feasibility:
    base = TrainSetup(method=method, batch_size=4, seq_len=_seq_len(tokens, spec), num_gpus=num_gpus,
                      examples=examples, tokens_per_example=tokens, epochs=epochs)
    last = None
    for setup, steps in _ladder(base, method, num_gpus):
        e = estimate(spec, setup, gpu, teacher, tasks=tasks)
        last = (e, setup, steps)
        if e.fits:
            break
    e, setup, steps = last
    notes = [f"to fit: {', '.join(steps)}"] if steps and e.fits else []
    within = True
    if e.fits:
        if max_hours is not None and e.time.seconds is not None and e.time.seconds / 3600 > max_hours:
            within = False
            notes.append(f"needs ~{e.time.seconds / 3600:.1f} h, over the {max_hours:g} h budget")
        if max_cost is not None and e.time.cost_usd is not None and e.time.cost_usd > max_cost:
            within = False
            notes.append(f"costs ~${e.time.cost_usd:,.0f}, over the ${max_cost:,.0f} budget")
    else:
        notes.append(f"does not fit: needs {e.memory.total / 1024**3:.1f} GiB per GPU with every memory saver, "
                     f"{gpu.name} has {gpu.memory_bytes / 1024**3:.0f} GiB")
        hint = what_would_fit(spec, setup, gpu, teacher)
        if hint:
            notes.append(hint)
    return Feasibility(estimate=e, settings=_settings(setup), fits=bool(e.fits), within_budget=within, notes=notes)


def what_would_fit(spec: ModelSpec, setup: TrainSetup, gpu: GPU, teacher: ModelSpec | None) -> str | None:
    """The smallest change of hardware that fits: more of the same GPU with FSDP, else a bigger GPU."""
    for n in (2, 4, 8, 16, 32, 64):
        if n <= setup.num_gpus:
            continue
        trial = dataclasses.replace(setup, num_gpus=n, sharding="fsdp")
        if estimate(spec, trial, gpu, teacher).fits:
            return f"fits on {n}× {gpu.name} with FSDP"
    for gid in _UPGRADES:
        other = gpus()[gid]
        if other.memory_bytes <= gpu.memory_bytes:
            continue
        try:
            if estimate(spec, dataclasses.replace(setup, num_gpus=1, sharding="none", cpu_offload=False),
                        other, teacher).fits:
                return f"fits on 1× {other.name}"
        except InputError:
            continue
    return None
