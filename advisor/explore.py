"""Numbers behind the app's charts: how time and cost scale with data, and per-method what-ifs."""
from __future__ import annotations

import dataclasses

from estimators.catalog import GPU
from estimators.estimate import estimate
from estimators.setup import TrainSetup
from estimators.spec import ModelSpec

GIB = 1024**3


def setup_from_settings(method: str, settings: dict, **changes) -> TrainSetup:
    keys = set(TrainSetup.__dataclass_fields__)
    return TrainSetup(method=method, **{**{k: v for k, v in settings.items() if k in keys}, **changes})


def time_cost_curve(spec: ModelSpec, method: str, settings: dict, gpu: GPU, examples: list[int], epochs: float,
                    tokens: int, teacher: ModelSpec | None = None) -> list[dict]:
    """Hours and dollars of the whole run for each data size, at the method's chosen settings."""
    rows = []
    for n in examples:
        setup = setup_from_settings(method, settings, examples=int(n), tokens_per_example=tokens, epochs=epochs)
        t = estimate(spec, setup, gpu, teacher).time
        rows.append({"method": method, "examples": int(n), "hours": (t.seconds or 0) / 3600, "cost_usd": t.cost_usd})
    return rows


def what_if(spec: ModelSpec, method: str, base: dict, gpu: GPU, teacher: ModelSpec | None = None, **changes) -> dict:
    """The estimate JSON for a method's settings with some changed (batch, length, rank, ...)."""
    if changes.get("num_gpus", base.get("num_gpus", 1)) == 1:
        changes["sharding"] = "none"
    return estimate(spec, setup_from_settings(method, base, **changes), gpu, teacher).to_json()


def memory_rows(method: str, est: dict) -> list[dict]:
    """What the peak is made of plus the overhead (GiB), for a stacked bar that adds up to the total."""
    mem = est["memory"]
    parts = {**mem["at_peak"], "overhead": mem["overhead"]}
    return [{"method": method, "component": k, "GiB": v / GIB} for k, v in parts.items()]
