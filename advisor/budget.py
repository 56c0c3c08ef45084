"""What would make a method meet the time and money budget (C6.10): the share of the data or the number
of epochs that fits, or the cheapest catalog GPU type × count that meets both limits.

Whole-run time and cost are linear in the tokens trained (estimators/throughput.py), so the share of
the data that fits is the budget over the estimate. More GPUs of one type divide the time and keep the
GPU-hours (and so the cost) the same, which bounds the search: a type whose one-GPU cost is over the
money budget is skipped, and the count starts where the time budget is met.
"""
from __future__ import annotations

import dataclasses
import math

from advisor.feasibility import HEADROOM, Feasibility
from estimators.catalog import GPU, gpus
from estimators.errors import InputError
from estimators.estimate import Estimate, estimate
from estimators.scaling import COUNTS

MAX_GPUS = 128
"""Largest GPU count suggested (a few nodes); beyond, a budget is a project, not a setting."""
_SHARDINGS = ("none", "zero2", "fsdp")  # least sharding first; CPU offload is never a budget suggestion


def _roomy(e: Estimate) -> bool:
    return e.memory.total <= (1 - HEADROOM) * e.gpu.memory_bytes


def _meets(e: Estimate, max_hours: float | None, max_cost: float | None) -> bool:
    if max_hours is not None and (e.time.seconds is None or e.time.seconds > max_hours * 3600):
        return False
    return max_cost is None or (e.time.cost_usd is not None and e.time.cost_usd <= max_cost)


def _on(e: Estimate, gpu: GPU, n: int, sharding: str) -> Estimate | None:
    setup = dataclasses.replace(e.setup, num_gpus=n, sharding=sharding, cpu_offload=False)
    try:
        return estimate(e.spec, setup, gpu, e.teacher)
    except InputError:
        return None


def _smallest_count(e: Estimate, gpu: GPU, max_hours: float | None, max_cost: float | None) -> Estimate | None:
    """The fewest GPUs of this type (least sharding first) that fit with headroom and meet the budget."""
    one = _on(e, gpu, 1, "none")
    if one is None or one.time.seconds is None:
        return None
    if max_cost is not None and (one.time.cost_usd is None or one.time.cost_usd > max_cost):
        return None  # more GPUs of this type cost the same GPU-hours
    need = 1 if max_hours is None else math.ceil(one.time.seconds / (max_hours * 3600))
    for n in (c for c in COUNTS if need <= c <= MAX_GPUS):
        for sharding in _SHARDINGS if n > 1 else ("none",):
            cand = one if n == 1 else _on(e, gpu, n, sharding)
            if cand is not None and _roomy(cand) and _meets(cand, max_hours, max_cost):
                return cand
    return None


def cheapest_hardware(e: Estimate, max_hours: float | None, max_cost: float | None) -> dict | None:
    """The catalog GPU type × count (with its sharding) that meets the budget for the least money
    (then the least time); None when none up to MAX_GPUS does."""
    found = [c for gpu in gpus().values() if (c := _smallest_count(e, gpu, max_hours, max_cost)) is not None]
    if not found:
        return None
    best = min(found, key=lambda c: (c.time.cost_usd if c.time.cost_usd is not None else math.inf, c.time.seconds))
    return {"gpu": best.gpu.id, "name": best.gpu.name, "num_gpus": best.setup.num_gpus,
            "sharding": best.setup.sharding, "seconds": best.time.seconds,
            "cost_usd": None if best.time.cost_usd is None else round(best.time.cost_usd, 2)}


def _limit(e: Estimate, max_hours: float | None, max_cost: float | None) -> str:
    hours = e.time.seconds / 3600 / max_hours if max_hours is not None and e.time.seconds else 0
    cost = e.time.cost_usd / max_cost if max_cost is not None and e.time.cost_usd else 0
    if hours >= cost:
        return f"{max_hours:g} h time budget"
    return f"${max_cost:,.2f} budget" if max_cost < 100 else f"${max_cost:,.0f} budget"  # $0.01, not "$0"


def budget_fit(f: Feasibility, label: str, max_hours: float | None, max_cost: float | None) -> dict | None:
    """``budget_fit`` of one recommendation (None without a budget); see the module docstring."""
    if max_hours is None and max_cost is None:
        return None
    e, r = f.estimate, f.over_by
    if r is None:
        return {"within": None, "over_by": None, "limit": None, "data_share": None, "epochs": None,
                "hardware": None, "text": f"{label}: no time or cost estimate to compare with the budget."}
    limit = _limit(e, max_hours, max_cost)
    within = f.fits and r <= 1
    share = 1 / r if f.fits and r > 0 else None
    out = {"within": within, "over_by": round(r, 4), "limit": limit, "data_share": share,
           "epochs": None if share is None else e.setup.epochs * share, "hardware": None}
    if within:
        out["text"] = f"{label}: uses {r:.0%} of the {limit}."
        return out
    out["hardware"] = cheapest_hardware(e, max_hours, max_cost)
    out["text"] = _over_text(label, out, f.fits)
    return out


def _over_text(label: str, fit: dict, fits: bool) -> str:
    if fits:
        head = (f"{label}: {fit['over_by']:.1f}× over the {fit['limit']}; {fit['data_share']:.1%} of the data "
                f"({fit['epochs']:.2g} epochs) fits")
    else:
        head = f"{label}: does not fit this GPU"
    hw = fit["hardware"]
    if hw is None:
        return head + f"; no catalog GPU type × count up to {MAX_GPUS} meets the budget."
    cost = "" if hw["cost_usd"] is None else f", ${hw['cost_usd']:,.2f}"
    spread = "" if hw["num_gpus"] == 1 else f" ({'DDP' if hw['sharding'] == 'none' else hw['sharding'].upper()})"
    secs = hw["seconds"]
    took = f"{secs / 60:.0f} min" if secs < 7200 else f"{secs / 3600:.1f} h"
    return head + f"; {hw['num_gpus']}× {hw['name']}{spread} meets it: ~{took}{cost}."
