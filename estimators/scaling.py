"""How many GPUs does a plan need? The smallest count of its GPU under each sharding, and the
cheapest GPU type × count from the catalog that fits (and meets a time or money budget when given).
Pure: every figure is the plan's own estimate with the hardware changed."""
from __future__ import annotations

from estimators.catalog import gpus
from estimators.errors import InputError
from estimators.plan import Plan

COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Each way to spread the plan, as (label, hardware changes). DDP replicates; ZeRO-2 shards gradients and
# optimizer states; FSDP (ZeRO-3) parameters too; with offload the shards live in host memory.
STRATEGIES = (("none", {"sharding": "none", "cpu_offload": False}),
              ("zero2", {"sharding": "zero2", "cpu_offload": False}),
              ("fsdp", {"sharding": "fsdp", "cpu_offload": False}),
              ("fsdp+offload", {"sharding": "fsdp", "cpu_offload": True}))


def _fits(plan: Plan, gpu_id: str | None, n: int, changes: dict):
    hardware = {**changes, "num_gpus": n}
    if n == 1:
        hardware.update(sharding="none")
        if changes["sharding"] != "none":
            return None  # sharding needs two GPUs or more
    if gpu_id is not None:
        hardware["gpu"] = gpu_id
    try:
        e = plan.edit(hardware=hardware).run_estimate()
    except InputError:
        return None
    return e if e.fits else None


def min_gpus(plan: Plan, max_hours: float | None = None, max_cost: float | None = None) -> dict:
    """``by_sharding``: for each strategy the smallest count of the plan's GPU that fits (None when
    none up to 1024 does); ``cheapest``: up to three GPU type × count options that fit and meet the
    budget, cheapest whole run first (by price per hour when the plan has no data size)."""
    if plan.gpu() is None:
        raise InputError("the plan names no GPU: set hardware.gpu (or give --gpu) to count GPUs")
    by_sharding = {}
    for label, changes in STRATEGIES:
        found = None
        for n in COUNTS:
            e = _fits(plan, None, n, changes)
            if e is not None:
                found = {"num_gpus": n, "memory_per_gpu": e.memory.total, "cpu_ram": e.memory.detail.get("cpu_ram"),
                         "seconds": e.time.seconds, "cost_usd": e.time.cost_usd}
                break
        by_sharding[label] = found
    options = []
    for gpu_id, gpu in gpus().items():
        for label, changes in STRATEGIES[:3]:  # offload trades speed for memory: not a default suggestion
            e = next(((n, e) for n in COUNTS[:8] if (e := _fits(plan, gpu_id, n, changes)) is not None), None)
            if e is None:
                continue
            n, est = e
            hours = None if est.time.seconds is None else est.time.seconds / 3600
            if (max_hours is not None and hours is not None and hours > max_hours) or \
                    (max_cost is not None and est.time.cost_usd is not None and est.time.cost_usd > max_cost):
                continue
            per_hour = (gpu.price_per_hour_usd or 0) * n
            options.append({"gpu": gpu_id, "name": gpu.name, "num_gpus": n, "sharding": label,
                            "memory_per_gpu": est.memory.total, "seconds": est.time.seconds,
                            "cost_usd": est.time.cost_usd, "usd_per_hour": per_hour})
            break  # the least sharding that fits this GPU type
    key = (lambda o: (o["cost_usd"] if o["cost_usd"] is not None else float("inf"), o["usd_per_hour"]))
    return {"gpu": plan.gpu().id, "by_sharding": by_sharding, "cheapest": sorted(options, key=key)[:3],
            "budget": {"max_hours": max_hours, "max_cost_usd": max_cost}}
