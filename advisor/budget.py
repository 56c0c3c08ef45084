"""What would make a method meet the time and money budget (C6.10): the share of the data or the number
of epochs that fits, or — from the one "what would fit" search (``estimators.scaling.search``) — the
cheapest GPU type × count, sharding, offload and settings that meet both limits.

Whole-run time and cost are linear in the tokens trained (estimators/throughput.py), so the share of
the data that fits is the budget over the estimate.
"""
from __future__ import annotations

from advisor.feasibility import Feasibility
from estimators.estimate import Estimate
from estimators.scaling import MAX_GPUS, search


def cheapest_hardware(f: Feasibility, max_hours: float | None, max_cost: float | None) -> dict | None:
    """The search's first answer for this plan within the budget; None when nothing up to MAX_GPUS is."""
    found = search(f.plan, max_hours, max_cost, limit=1)  # the plan shown: the same call as the hint
    if not found:
        return None
    o = found[0]
    e = o.estimate
    return {"gpu": e.gpu.id, "name": e.gpu.name, "num_gpus": o.num_gpus, "sharding": o.plan.hardware["sharding"],
            "cpu_offload": o.plan.hardware["cpu_offload"], "strategy": o.strategy, "changes": list(o.changes),
            "model": o.plan.model, "method": o.plan.method, "seconds": e.time.seconds,
            "cost_usd": None if e.time.cost_usd is None else round(e.time.cost_usd, 2), "text": o.text}


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
    out["hardware"] = cheapest_hardware(f, max_hours, max_cost)
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
    return head + f"; {hw['text']} meets it."
