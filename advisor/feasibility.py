"""Find settings under which a method fits the user's GPU(s) and budget, or say what would fit."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, replace
from typing import Callable

from estimators.catalog import GPU, gpus, model_by_id, model_configs
from estimators.errors import InputError
from estimators.estimate import Estimate, estimate
from estimators.methods import get
from estimators.plan import Plan
from estimators.setup import TrainSetup
from estimators.spec import ModelSpec
from estimators.tokenizers import tokenizers_compatible

# GPUs to suggest when nothing fits, smallest first.
_UPGRADES = ("l40s", "a100-80gb", "h100-sxm", "h200", "mi300x", "b200")


HEADROOM = 0.05
"""C6.12: a plan "fits" only with at least 5 % of the GPU's memory free (fragmentation, a longer batch,
a library's workspace); between 95 % and 100 % it is "tight"."""


@dataclass(frozen=True)
class Feasibility:
    plan: Plan
    """The plan with the chosen settings and its estimate (the last tried when nothing fits)."""
    estimate: Estimate
    fits: bool
    within_budget: bool
    notes: list
    """What was changed to make it fit, what the budget says, and what would fit otherwise."""
    over_by: float | None = None
    """Estimate over budget, as a multiple of the tighter limit (time or money); None without a budget."""

    @property
    def settings(self) -> dict:
        """The plan's settings plus its GPU count and sharding (what the recommendation shows)."""
        h = self.plan.hardware
        return {**self.plan.settings, "num_gpus": h["num_gpus"], "sharding": h["sharding"],
                "cpu_offload": h["cpu_offload"]}

    @property
    def headroom(self) -> float:
        """Share of the GPU's memory left free (negative: over)."""
        return 1 - self.estimate.memory.total / self.estimate.gpu.memory_bytes

    @property
    def memory_fit(self) -> str:
        """``fits`` (at least HEADROOM free), ``tight`` or ``does not fit``."""
        if not self.fits:
            return "does not fit"
        return "fits" if self.headroom >= HEADROOM else "tight"


def over_budget(e: Estimate, max_hours: float | None, max_cost: float | None) -> float | None:
    """How many times over the tighter budget the run is (< 1: under); None when no budget applies."""
    ratios = []
    if max_hours is not None and e.time.seconds is not None:
        ratios.append(e.time.seconds / 3600 / max_hours)
    if max_cost is not None and e.time.cost_usd is not None:
        ratios.append(e.time.cost_usd / max_cost)
    return max(ratios) if ratios else None


def seq_len_for(tokens: int, spec: ModelSpec) -> int:
    """Pad the typical example length up to a multiple of 128, within the model's context."""
    seq = max(128, -(-tokens // 128) * 128)
    return min(seq, spec.max_positions or seq)


def _ladder(base: Plan):
    """Plans to try, in order of preference: natural defaults first, then memory savers (the
    method's own from its registry entry), then sharding over the GPUs the user has."""
    yield base, []
    plan = base.edit(settings={"gradient_checkpointing": True})
    steps = ["gradient checkpointing (C6.5: ~20–30% slower, most activation memory saved)"]
    yield plan, steps
    s = base.settings
    if s["batch_size"] > 1:
        plan = plan.edit(settings={"batch_size": 1, "grad_accum": s["batch_size"] * s["grad_accum"]})
        steps = ["gradient checkpointing", f"micro-batch 1 with {plan.settings['grad_accum']} accumulation steps"]
        yield plan, steps
    for changes, note in get(base.method).savers:
        plan = plan.edit(settings=changes)
        steps = steps + [note]
        yield plan, steps
    n = base.hardware["num_gpus"]
    if n > 1:
        for sharding in ("zero2", "fsdp"):
            yield plan.edit(hardware={"sharding": sharding}), steps + [f"{sharding.upper()} over {n} GPUs (C6.8)"]
        yield plan.edit(hardware={"sharding": "fsdp", "cpu_offload": True}), steps + [
            f"FSDP over {n} GPUs with optimizer offload to CPU"]


def _smaller(teacher: ModelSpec, same_tokenizer: bool) -> list[ModelSpec]:
    """Catalog models of the teacher's kind at most a quarter of its size, largest first; with
    ``same_tokenizer`` only those that share its tokenizer (the family, not the vocabulary size: C6.7)."""
    found = []
    for model_id in model_configs():
        cand = model_by_id(model_id)
        if cand.kind != teacher.kind or cand.total_params * 4 > teacher.total_params:
            continue
        if same_tokenizer and not tokenizers_compatible(teacher, cand):
            continue
        found.append(cand)
    # Equal sizes (Llama-3.1-8B and a distill built on it): the teacher's own model line first, by the
    # longest common start of the catalog ids ("llama-3.1-" for llama-3.1-70b), then the id.
    return sorted(found, key=lambda m: (-m.total_params, -len(os.path.commonprefix([teacher.id, m.id])), m.id))


def pick_student(teacher: ModelSpec) -> ModelSpec | None:
    """The largest catalog model that shares the teacher's tokenizer and is at most a quarter its size."""
    found = _smaller(teacher, same_tokenizer=True)
    return found[0] if found else None


def smaller_bases(spec: ModelSpec, limit: int = 3) -> list[str]:
    """Catalog models to start from instead when no student can learn from ``spec``: the largest of
    its kind at most a quarter of its size (any tokenizer: they are tuned directly, not distilled)."""
    def key(m: ModelSpec):  # the same tokenizer first, then bases with a modern context (>= 4k tokens)
        return (not tokenizers_compatible(spec, m), (m.max_positions or 0) < 4096)

    return [m.id for m in sorted(_smaller(spec, same_tokenizer=False), key=key)[:limit]]


def find_feasible(base: Plan, gpu: GPU, max_hours: float | None, max_cost: float | None,
                  spec: ModelSpec | None = None, calibration: Callable | None = None) -> Feasibility:
    """The first plan of the ladder that fits ``gpu``, with its estimate and what the budget says.
    ``calibration(gpu_id, method, precision)`` returns a calibration record or None (caller's I/O)."""
    spec = spec or base.spec()
    teacher = base.teacher_spec()
    last = tight = None
    for plan, steps in _ladder(base):
        cal = calibration(gpu.id, plan.method, plan.settings["precision"]) if calibration else None
        e = plan.run_estimate(cal, spec)
        last = (plan, e, steps)
        if e.fits and e.memory.total <= (1 - HEADROOM) * gpu.memory_bytes:
            break
        tight = tight or ((plan, e, steps) if e.fits else None)  # the first rung that fits without headroom
    else:
        last = tight or last
    plan, e, steps = last
    plan = replace(plan, estimate=e.to_json())
    notes = [f"to fit: {', '.join(steps)}"] if steps and e.fits else []
    over = over_budget(e, max_hours, max_cost)
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
        hint = what_would_fit(spec, e.setup, gpu, teacher)
        if hint:
            notes.append(hint)
    return Feasibility(plan=plan, estimate=e, fits=bool(e.fits), within_budget=within, notes=notes, over_by=over)


def what_would_fit(spec: ModelSpec, setup: TrainSetup, gpu: GPU, teacher: ModelSpec | None) -> str | None:
    """The smallest change of hardware that fits: more of the same GPU with FSDP, else a bigger GPU."""
    for n in (2, 4, 8, 16, 32, 64, 128, 256, 512):
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
