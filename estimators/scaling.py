"""What would fit: the ONE search every surface asks (the recommendation's settings and hints, the budget
advice, the app's what-if, ``estimate --min-gpus``).

``search(plan)`` varies, around the plan,

* the **settings**: as they are, then gradient checkpointing (C6.5), then micro-batch 1 with the batch
  kept by accumulation, then the method's own savers (its registry entry: 8-bit AdamW, a 4-bit teacher);
* the **hardware**: the plan's GPU type first, then every catalog type; 1 to ``MAX_GPUS`` of them; DDP
  replicas, ZeRO-2, FSDP full shard, FSDP with CPU offload — offload only within the host's RAM (a plan
  over ``host_memory_gib`` does not fit: ``Estimate.fits``);
* the **method**: QLoRA instead of LoRA (the same adapters over a 4-bit base);
* the **model**: the largest smaller catalog base of the same family (shared tokenizer), on the user's
  own GPU type, ranked last.

For each (model, method, GPU type, strategy) it keeps the fewest GPUs that fit with ``HEADROOM`` free
and meet the time and money budget, under the first settings rung that fits; memory falls as GPUs are
added, so the count is found by bisection over ``COUNTS``. Options are ranked: the plan's own model
before a smaller base, then by whole-run cost (``score``: the user's own GPU type and fewer GPUs weigh
a little), then GPUs, then time. Each option is the edited plan with
its estimate and what changed. Pure: every figure is a plan's own estimate.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable

from estimators.catalog import gpus, model_by_id, model_configs
from estimators.errors import InputError
from estimators.estimate import Estimate
from estimators.methods import get
from estimators.plan import Plan
from estimators.tokenizers import tokenizers_compatible

COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MAX_GPUS = 128
"""Largest GPU count suggested (a few nodes); beyond, a budget is a project, not a setting."""
HEADROOM = 0.05
"""C6.12: a plan "fits" only with at least 5 % of the GPU's memory free (fragmentation, a longer batch,
a library's workspace); between 95 % and 100 % it is "tight"."""
# Each way to spread the plan, as (label, hardware changes). DDP replicates; ZeRO-2 shards gradients and
# optimizer states; FSDP (ZeRO-3) parameters too; with offload the shards live in host memory.
STRATEGIES = (("none", {"sharding": "none", "cpu_offload": False}),
              ("zero2", {"sharding": "zero2", "cpu_offload": False}),
              ("fsdp", {"sharding": "fsdp", "cpu_offload": False}),
              ("fsdp+offload", {"sharding": "fsdp", "cpu_offload": True}))
LABELS = {"none": "DDP", "zero2": "ZeRO-2", "fsdp": "FSDP", "fsdp+offload": "FSDP + CPU offload"}


@dataclass(frozen=True)
class Option:
    """One way to make the plan fit: the edited plan, its estimate and what changed."""

    plan: Plan
    estimate: Estimate
    strategy: str
    changes: tuple[str, ...]
    smaller_base: bool = False

    @property
    def num_gpus(self) -> int:
        return self.plan.hardware["num_gpus"]

    @property
    def text(self) -> str:
        """``2× RTX 4090 with FSDP + CPU offload (QLoRA, gradient checkpointing): ~3.1 h, $4.30``."""
        e = self.estimate
        spread = "" if self.num_gpus == 1 else f" with {LABELS[self.strategy]}"
        how = f" ({', '.join(self.changes)})" if self.changes else ""
        secs = e.time.seconds
        took = "" if secs is None else (f": ~{secs / 60:.0f} min" if secs < 7200 else f": ~{secs / 3600:.1f} h")
        cost = "" if e.time.cost_usd is None else f", ${e.time.cost_usd:,.2f}"
        return f"{self.num_gpus}× {e.gpu.name}{spread}{how}{took}{cost}"

    def to_json(self) -> dict:
        e, h = self.estimate, self.plan.hardware
        return {"gpu": e.gpu.id, "name": e.gpu.name, "num_gpus": h["num_gpus"], "sharding": self.strategy,
                "cpu_offload": h["cpu_offload"], "model": self.plan.model, "method": self.plan.method,
                "changes": list(self.changes), "memory_per_gpu": e.memory.total, "cpu_ram": e.host_ram,
                "host_memory": e.host_memory_bytes, "seconds": e.time.seconds, "cost_usd": e.time.cost_usd,
                "usd_per_hour": (e.gpu.price_per_hour_usd or 0) * h["num_gpus"], "text": self.text,
                "plan": self.plan.to_json()}


def roomy(e: Estimate) -> bool:
    """Fits (GPU and host) with HEADROOM of the GPU's memory free."""
    return bool(e.fits) and e.memory.total <= (1 - HEADROOM) * e.gpu.memory_bytes


def meets(e: Estimate, max_hours: float | None, max_cost: float | None) -> bool:
    if max_hours is not None and (e.time.seconds is None or e.time.seconds > max_hours * 3600):
        return False
    return max_cost is None or (e.time.cost_usd is not None and e.time.cost_usd <= max_cost)


def rungs(plan: Plan) -> list[tuple[dict, tuple[str, ...]]]:
    """Settings to try, least change first: (settings changes, what they say)."""
    s = plan.settings
    out, changes, notes = [({}, ())], {}, ()
    if not s["gradient_checkpointing"]:
        changes, notes = {"gradient_checkpointing": True}, ("gradient checkpointing",)
        out.append((dict(changes), notes))
    if s["batch_size"] > 1:
        accum = s["batch_size"] * s["grad_accum"]
        changes = {**changes, "batch_size": 1, "grad_accum": accum}
        notes = notes + (f"micro-batch 1 × {accum} accumulation",)
        out.append((dict(changes), notes))
    for saver, note in get(plan.method).savers:
        if any(s.get(k) != v for k, v in saver.items()):
            changes, notes = {**changes, **saver}, notes + (note,)
            out.append((dict(changes), notes))
    return out


def smaller_same_family(plan: Plan, limit: int = 1) -> list[str]:
    """Catalog bases of the plan's family (shared tokenizer, same kind) at most 60 % of its size, largest first."""
    spec = plan.spec()
    found = []
    for model_id in model_configs():
        cand = model_by_id(model_id)
        if cand.kind == spec.kind and cand.total_params <= 0.6 * spec.total_params \
                and tokenizers_compatible(spec, cand) and cand.id != spec.id:
            found.append(cand)
    return [m.id for m in sorted(found, key=lambda m: -m.total_params)[:limit]]


def _variants(plan: Plan) -> list[tuple[Plan, tuple[str, ...], bool]]:
    """(plan, what changed, smaller base?) for the plan itself, QLoRA instead of LoRA, a smaller base."""
    out = [(plan, (), False)]
    variant = get(plan.method).quantized_variant
    if variant:
        try:
            quantized = plan.with_method(variant)
        except InputError:  # e.g. an fp32 plan (T5 on an fp16-only GPU): a 4-bit base computes in 16 bits
            quantized = None
        if quantized is not None:
            out.append((quantized, (f"{get(variant).label} instead of {get(plan.method).label}",), False))
    if not get(plan.method).needs_teacher:
        for model in smaller_same_family(plan):
            out.append((plan.edit(model=model), (f"smaller base {model}",), True))
    return out


def search(plan: Plan, max_hours: float | None = None, max_cost: float | None = None, limit: int = 3,
           gpu_ids: tuple[str, ...] | None = None, counts: tuple[int, ...] | None = None,
           variants: bool = True, calibration: Callable | None = None, per_type: bool = True) -> list[Option]:
    """The cheapest few options that fit (see the module docstring), best first; [] when none does.
    ``gpu_ids`` / ``counts`` restrict the hardware (the user's own: ``(plan's gpu,)``, ``(its count,)``);
    ``variants`` False keeps the plan's model and method. ``calibration(gpu_id, method, precision)``
    returns a calibration record or None (the caller's I/O)."""
    if plan.gpu() is None:
        raise InputError("the plan names no GPU: set hardware.gpu (or give --gpu) to search what fits")
    if calibration is None:  # the same question from several surfaces: answered once
        key = json.dumps({**plan.to_json(), "estimate": None}, sort_keys=True, default=str)
        return list(_memo(key, max_hours, max_cost, limit, gpu_ids, counts, variants, per_type))
    return _search(plan, max_hours, max_cost, limit, gpu_ids, counts, variants, calibration, per_type)


@lru_cache(maxsize=256)
def _memo(key, max_hours, max_cost, limit, gpu_ids, counts, variants, per_type) -> tuple:
    return tuple(_search(Plan.from_json(json.loads(key)), max_hours, max_cost, limit, gpu_ids, counts, variants,
                         None, per_type))


def _search(plan, max_hours, max_cost, limit, gpu_ids, counts, variants, calibration, per_type) -> list[Option]:
    own = plan.hardware["gpu"]
    types = gpu_ids if gpu_ids is not None else (own,) + tuple(g for g in gpus() if g != own)
    allowed = tuple(n for n in (counts or COUNTS) if n <= MAX_GPUS or counts)
    options = []
    for base, why, smaller in (_variants(plan) if variants else [(plan, (), False)]):
        try:
            spec = base.spec()
            ladder = rungs(base)
        except InputError:
            continue
        for gpu_id in (types if not smaller else types[:1]):  # a smaller base: on the user's own GPU type only
            hw = {} if gpu_id == own else {"gpu": gpu_id, "price_per_hour": None, "host_memory_gib": None,
                                            "gpu_memory_gib": None, "gpu_tflops": None, "gpu_name": None}
            for label, changes in STRATEGIES:
                found = _fewest(base.edit(hardware=hw) if hw else base, changes, spec, ladder, allowed, label,
                                max_hours, max_cost, calibration)
                if found is not None:
                    p, e, notes = found
                    options.append(Option(p, e, label, why + notes, smaller))
    options.sort(key=lambda o: _rank(o, own))
    return _distinct(options, per_type)[:limit]


OWN_NODE = 8
OWN_TYPE_PREFERENCE = 1.25
"""More of the user's own GPU type (up to one node of 8) wins over another type costing up to 25 % less:
the same drivers, kernels and machine, nothing new to rent. A design choice, not a measurement."""
GPU_DOUBLING_PENALTY = 0.05
"""Each doubling of the GPU count weighs 5 % of the cost: at about equal cost, fewer GPUs (fewer ranks to
fail, less interconnect to depend on) are the practitioner's choice. A design choice, not a measurement."""


def score(cost_usd: float | None, gpu_id: str, num_gpus: int, own: str) -> float:
    """What the options are ranked by: the whole run's cost, weighed by the preferences above."""
    if cost_usd is None:
        return math.inf
    mine = gpu_id == own and num_gpus <= OWN_NODE
    return cost_usd / (OWN_TYPE_PREFERENCE if mine else 1) * (1 + GPU_DOUBLING_PENALTY * math.log2(num_gpus))


def _rank(o: Option, own: str):
    """The plan's model first; then the score; at equal scores fewer GPUs, the simpler strategy, less time."""
    secs = o.estimate.time.seconds
    simpler = [label for label, _ in STRATEGIES].index(o.strategy)
    return (o.smaller_base, _sig(score(o.estimate.time.cost_usd, o.estimate.gpu.id, o.num_gpus, own)), o.num_gpus,
            simpler, math.inf if secs is None else secs, o.estimate.memory.total)


def _sig(x: float, digits: int = 3) -> float:
    if not math.isfinite(x) or x <= 0:
        return x
    return round(x, digits - 1 - math.floor(math.log10(x)))


def _distinct(options: list[Option], per_type: bool) -> list[Option]:
    """One option per (model, method, GPU type) when ``per_type`` (the best, by rank), else per strategy."""
    seen, out = set(), []
    for o in options:
        key = (o.plan.model, o.plan.method, o.estimate.gpu.id) + (() if per_type else (o.strategy,))
        if key not in seen:
            seen.add(key)
            out.append(o)
    return out


def _run(plan: Plan, spec, calibration) -> Estimate | None:
    try:
        cal = calibration(plan.hardware["gpu"], plan.method, plan.settings["precision"]) if calibration else None
        return plan.run_estimate(cal, spec)
    except InputError:
        return None


def _fewest(plan: Plan, strategy: dict, spec, ladder, counts, label, max_hours, max_cost, calibration):
    """The fewest GPUs of ``plan``'s type under strategy ``label`` that fit and meet the budget, with the
    first rung that does; None when no count does."""
    sharded = label != "none"
    ns = [n for n in counts if (n > 1) == sharded or (not sharded and n >= 1)]
    if not ns:
        return None

    def at(n, rung):
        changes, notes = ladder[rung]
        p = plan.edit(settings=changes, hardware={**strategy, "num_gpus": n})  # one GPU: sharding none
        return p, _run(p, spec, calibration), notes

    most = len(ladder) - 1

    def fits(n) -> bool:
        _, e, _ = at(n, most)
        return e is not None and roomy(e)

    # memory falls (or stays) as GPUs are added: the fewest that fit with every saver, by bisection
    if not sharded:
        lo = 0 if fits(ns[0]) else None  # replicas: the count changes time, not memory
    elif not fits(ns[-1]):
        lo = None
    else:
        a, b = 0, len(ns) - 1
        while a < b:
            mid = (a + b) // 2
            a, b = (a, mid) if fits(ns[mid]) else (mid + 1, b)
        lo = a
    if lo is None:
        return None
    for n in ns[lo:]:
        for rung in range(len(ladder)):
            p, e, notes = at(n, rung)
            if e is not None and roomy(e) and meets(e, max_hours, max_cost):
                return replace(p, estimate=e.to_json()), e, notes
        _, e, _ = at(n, most)
        if e is not None and max_cost is not None and e.time.cost_usd is not None and e.time.cost_usd > max_cost \
                and (max_hours is None or (e.time.seconds or 0) <= max_hours * 3600):
            return None  # fits but over the money budget: more GPUs of this type cost as much or more
    return None


def min_gpus(plan: Plan, max_hours: float | None = None, max_cost: float | None = None) -> dict:
    """``estimate --min-gpus`` and the what-if's "How many GPUs?": the search's options (``options``, the
    first is the answer every surface gives), ``by_sharding`` (for each strategy the fewest of the plan's
    GPU that fit the plan's own model and method, or None) and ``cheapest`` (the options, for older readers)."""
    options = search(plan, max_hours, max_cost, limit=3)
    own = search(plan, max_hours, max_cost, limit=len(STRATEGIES), gpu_ids=(plan.hardware["gpu"],),
                 variants=False, per_type=False)
    by_sharding = {}
    for label, _ in STRATEGIES:
        o = next((o for o in own if o.strategy == label), None)
        by_sharding[label] = None if o is None else {
            "num_gpus": o.num_gpus, "memory_per_gpu": o.estimate.memory.total, "cpu_ram": o.estimate.host_ram,
            "seconds": o.estimate.time.seconds, "cost_usd": o.estimate.time.cost_usd, "changes": list(o.changes)}
    found = [o.to_json() for o in options]
    return {"gpu": plan.gpu().id, "by_sharding": by_sharding, "options": found, "cheapest": found,
            "answer": found[0]["text"] if found else None,
            "budget": {"max_hours": max_hours, "max_cost_usd": max_cost}}
