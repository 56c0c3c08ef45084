"""Numbers behind the app's charts: how time and cost scale with data, and per-method what-ifs.
Everything starts from a method's ``Plan`` and changes it by explicit edits."""
from __future__ import annotations

from estimators.plan import Plan
from estimators.spec import ModelSpec

GIB = 1024**3


def time_cost_curve(plan: Plan, examples: list[int], epochs: float, spec: ModelSpec | None = None,
                    calibration=None) -> list[dict]:
    """Hours and dollars of the whole run for each data size, at the plan's settings."""
    rows = []
    for n in examples:
        e = plan.edit(settings={"epochs": float(epochs)}, data={"num_examples": int(n)}).run_estimate(calibration, spec)
        rows.append({"method": plan.method, "examples": int(n), "hours": (e.time.seconds or 0) / 3600,
                     "cost_usd": e.time.cost_usd})
    return rows


def what_if(plan: Plan, settings: dict | None = None, hardware: dict | None = None, spec: ModelSpec | None = None,
            calibration=None) -> Plan:
    """The plan with some settings or hardware changed, re-estimated (memory, time and cost)."""
    return plan.edit(settings=settings, hardware=hardware).estimated(calibration, spec)


def memory_rows(label: str, est: dict) -> list[dict]:
    """What the peak is made of plus the overhead (GiB), for a stacked bar that adds up to the total."""
    mem = est["memory"]
    parts = {**mem["at_peak"], "overhead": mem["overhead"]}
    return [{"method": label, "component": k, "GiB": v / GIB} for k, v in parts.items()]
