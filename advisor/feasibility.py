"""Find settings under which a method fits the user's GPU(s) and budget, or say what would fit."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable

from estimators.catalog import GPU, model_by_id, model_configs
from estimators.estimate import Estimate
from estimators.plan import Plan
from estimators.scaling import HEADROOM, LABELS, STRATEGIES, rungs, search
from estimators.spec import ModelSpec
from estimators.tokenizers import tokenizers_compatible

__all__ = ["HEADROOM", "Feasibility", "find_feasible", "over_budget", "pick_student", "seq_len_for", "smaller_bases",
           "what_would_fit"]


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
    """The plan on the user's GPUs that fits with the least cost — the one search (``estimators.scaling``)
    over settings and sharding on the user's GPU type and count — with its estimate and what the budget
    says. When nothing fits there, the plan with every saver, and the search's first answer over all
    hardware as the hint. ``calibration(gpu_id, method, precision)`` returns a calibration record or None."""
    spec = spec or base.spec()
    n = base.hardware["num_gpus"]
    mine = search(base, gpu_ids=(base.hardware["gpu"],), counts=(n,), variants=False, calibration=calibration)
    if mine:
        o = mine[0]
        plan, e = o.plan, o.estimate
        steps = list(o.changes) + ([f"{LABELS[o.strategy]} over {n} GPUs (C6.8)"] if o.strategy != "none" else [])
    else:
        plan, e, steps = _best_effort(base, spec, calibration)
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
        if e.fits_gpu:
            notes.append(f"does not fit the host: needs {e.host_ram / 1024**3:,.0f} GiB of host RAM for offload, the "
                         f"host has {e.host_memory_bytes / 1024**3:,.0f} GiB")
        else:
            notes.append(f"does not fit: needs {e.memory.total / 1024**3:.1f} GiB per GPU with every memory saver, "
                         f"{gpu.name} has {gpu.memory_bytes / 1024**3:.0f} GiB")
        hint = what_would_fit(plan, max_hours, max_cost)  # around the plan shown, as the what-if searches
        if hint:
            notes.append(hint)
    return Feasibility(plan=plan, estimate=e, fits=bool(e.fits), within_budget=within, notes=notes, over_by=over)


def _best_effort(base: Plan, spec: ModelSpec, calibration) -> tuple:
    """Nothing fits with headroom on the user's GPUs: the plan with every saver under each strategy its GPU
    count allows; one that fits without headroom ("tight") if any, else the smallest within the host's RAM."""
    changes, notes = rungs(base)[-1]
    n = base.hardware["num_gpus"]
    tried = []
    for label, strategy in STRATEGIES if n > 1 else STRATEGIES[:1]:
        plan = base.edit(settings=changes, hardware=strategy)
        cal = calibration(plan.hardware["gpu"], plan.method, plan.settings["precision"]) if calibration else None
        e = plan.run_estimate(cal, spec)
        steps = list(notes) + ([f"{LABELS[label]} over {n} GPUs (C6.8)"] if label != "none" else [])
        tried.append((plan, e, steps))
    tight = [t for t in tried if t[1].fits]
    return tight[0] if tight else min(tried, key=lambda t: (t[1].fits_host is False, t[1].memory.total))


def what_would_fit(plan: Plan, max_hours: float | None = None, max_cost: float | None = None) -> str | None:
    """The search's first answer over all hardware, as one phrase (None when nothing fits). Uncalibrated,
    like every other surface of the search, so they all give the same first answer."""
    found = search(plan, max_hours, max_cost, limit=1)
    return f"fits on {found[0].text}" if found else None
