"""The questionnaire's answers (DESIGN.md `recommend --answers` contract), validated in one pass."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from estimators.errors import InputError, read_json

TASKS = ("classification", "extraction", "summarization", "generation", "question_answering", "chat", "code",
         "translation")
GOALS = ("style", "specialization", "domain_knowledge", "proprietary_data", "edge_cases", "multi_task",
         "reduce_inference_cost", "output_format", "factual_recall", "small_footprint")
GOAL_HELP = {
    "style": "outputs in a given style or tone (e.g. a brand voice)",
    "specialization": "make a general model good at one specific task",
    "domain_knowledge": "add vocabulary or knowledge missing from pretraining (legal, medical...)",
    "proprietary_data": "learn from your own private data",
    "edge_cases": "handle cases the base model gets wrong",
    "multi_task": "serve several different tasks from one base model",
    "reduce_inference_cost": "make serving cheaper at scale",
    "output_format": "reliably produce a fixed output format",
    "factual_recall": "answer with up-to-date or exact facts",
    "small_footprint": "run on small devices (phone, edge) or at low latency",
}
DISTANCES = ("close", "moderate", "far")
PRIORITIES = ("accuracy", "balanced", "cost")
REQUIRED = ("task", "goals", "num_examples", "domain_distance", "model", "gpu")
SPEED_SETTINGS = ("packing", "compile", "fused_cross_entropy", "optimizer_in_backward", "activation_offloading")
"""What the answers' ``speed`` may set (the plan's settings of those names, estimators/plan.py)."""


@dataclass(frozen=True)
class Answers:
    task: str
    """What the model must do: one of TASKS."""
    goals: tuple[str, ...]
    """Why tune: one or more of GOALS."""
    num_examples: int
    """Training examples available."""
    domain_distance: str
    """How far the data is from the model's pretraining: close, moderate or far."""
    model: str
    """Base model: catalog id, config.json path or model folder."""
    gpu: str
    """GPU catalog id."""
    avg_tokens_per_example: int = 300
    num_gpus: int = 1
    max_hours: float | None = None
    """Wall-clock budget for the whole run (None: no limit)."""
    max_cost_usd: float | None = None
    num_tasks: int = 1
    """Tuned variants to serve."""
    priority: str = "balanced"
    epochs: float | None = None
    """Passes over the data used for time and cost; None: from the data's size and the task
    (advisor/epochs.py, C6.18)."""
    teacher: str | None = None
    """Distillation: the teacher when it is not the base model (default: the base model teaches a
    smaller student of its own family)."""
    student: str | None = None
    """Distillation: the student (default: chosen by the target — advisor/students.py)."""
    device_memory_gib: float | None = None
    """Memory the served model may take on the target device (a phone, an edge box), in GiB: picks the
    distillation student whose 4-bit export fits it. None: the on-device class (~2B) for a small-footprint
    goal."""
    host_memory_gib: float | None = None
    """Host RAM of one machine in GiB; offload must fit in it (None: a typical host for the GPU class,
    estimators/data/hosts.json)."""
    speed: dict | None = None
    """Speed settings the user's trainer runs with (issue 21), a JSON object of booleans over SPEED_SETTINGS
    (packing, compile, fused_cross_entropy, optimizer_in_backward, activation_offloading): every plan of
    the recommendation carries them, and its time and memory are estimated with them. None: all off."""
    # Hosting (issue 24): all optional; with no requests_per_day the ranking is the tuning-only one and
    # the advice says hosting was not priced.
    requests_per_day: float | None = None
    """Requests the tuned model(s) serve per day, all tasks together."""
    tokens_in: int | None = None
    """Prompt tokens per request (default 500 when requests_per_day is given)."""
    tokens_out: int | None = None
    """Generated tokens per request (default 200)."""
    peak_concurrency: int | None = None
    """Requests in flight at the busiest moment (default: from the daily rate, a 2x busy hour and
    Little's law)."""
    p50_tpot_ms: float | None = None
    """Target median time per output token in milliseconds (None: no latency target)."""
    serving_gpu: str | None = None
    """GPU catalog id the model is served on (default: the tuning GPU)."""
    horizon_months: float | None = None
    """Months of hosting in the total cost (default 12)."""
    retunes: int | None = None
    """Tuning runs per task over the horizon, the first included (default 1)."""

    @property
    def prices_hosting(self) -> bool:
        return self.requests_per_day is not None

    def __post_init__(self):
        problems = _problems(self)
        if problems:
            raise InputError("invalid answers: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data) -> "Answers":
        if not isinstance(data, dict):
            raise InputError("invalid answers: expected a JSON object with task, goals, num_examples, "
                             "domain_distance, model and gpu")
        known = {f.name for f in fields(cls)}
        problems = [f"missing '{k}'" for k in REQUIRED if data.get(k) is None]
        problems += [f"unknown field '{k}'" for k in data if k not in known]
        if problems:
            raise InputError("invalid answers: " + "; ".join(problems))
        values = dict(data)
        if isinstance(values.get("goals"), list):
            values["goals"] = tuple(values["goals"])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str) -> "Answers":
        return cls.from_dict(read_json(path, "answers"))


# Upper bounds of the counts: generous, but they keep every product finite and every figure readable.
LIMITS = {"num_examples": 10**12, "avg_tokens_per_example": 10_000_000, "num_gpus": 65_536, "num_tasks": 1_000_000}


def _shown(v) -> str:
    """A value as an error shows it: numbers as they are, text only when short (it is the user's own)."""
    return repr(v) if isinstance(v, (int, float)) or (isinstance(v, str) and len(v) <= 40) else type(v).__name__


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _problems(a: Answers) -> list[str]:
    p = []
    if a.task not in TASKS:
        p.append(f"task must be one of {', '.join(TASKS)} (got {a.task!r})")
    if not isinstance(a.goals, tuple) or not a.goals:
        p.append("goals must be a non-empty list")
    else:
        bad = [g for g in a.goals if g not in GOALS]
        if bad:
            p.append(f"unknown goal(s) {', '.join(map(repr, bad))} (choose from {', '.join(GOALS)})")
    for name, high in LIMITS.items():
        v = getattr(a, name)
        if not _is_int(v) or not 1 <= v <= high:
            p.append(f"{name} must be a whole number from 1 to {high:,} (got {_shown(v)})")
    if a.domain_distance not in DISTANCES:
        p.append(f"domain_distance must be one of {', '.join(DISTANCES)} (got {a.domain_distance!r})")
    if a.priority not in PRIORITIES:
        p.append(f"priority must be one of {', '.join(PRIORITIES)} (got {a.priority!r})")
    for name, high in (("max_hours", 1e6), ("max_cost_usd", 1e12), ("epochs", 10_000),
                       ("device_memory_gib", 1e6), ("host_memory_gib", 1e6)):
        v = getattr(a, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= high):
            p.append(f"{name} must be a number above 0 and at most {high:,g} (got {_shown(v)})")
    for name in ("model", "gpu"):
        if not isinstance(getattr(a, name), str) or not getattr(a, name):
            p.append(f"{name} must be a non-empty string")
    return p + _speed_problems(a) + _hosting_problems(a)


def _speed_problems(a: Answers) -> list[str]:
    if a.speed is None:
        return []
    if not isinstance(a.speed, dict):
        return [f"speed must be an object of {', '.join(SPEED_SETTINGS)} set to true or false"]
    bad = [k for k in a.speed if k not in SPEED_SETTINGS]
    p = [f"unknown speed setting(s) {', '.join(map(_shown, bad))} (choose from {', '.join(SPEED_SETTINGS)})"] if bad else []
    p += [f"speed.{k} must be true or false (got {_shown(v)})" for k, v in a.speed.items()
          if k in SPEED_SETTINGS and not isinstance(v, bool)]
    return p


_TRAFFIC_ONLY = ("tokens_in", "tokens_out", "peak_concurrency", "p50_tpot_ms", "serving_gpu", "horizon_months",
                 "retunes")


def _hosting_problems(a: Answers) -> list[str]:
    """The traffic answers: bounded, finite, and only with requests_per_day (what prices hosting)."""
    from estimators.serving import traffic_problems

    given = [n for n in _TRAFFIC_ONLY if getattr(a, n) is not None]
    if a.requests_per_day is None:
        return [f"{', '.join(given)} need(s) requests_per_day to price hosting (give the requests per day, "
                "e.g. 10000)"] if given else []
    p = [t.replace("tpot_ms", "p50_tpot_ms") for t in
         traffic_problems(a.requests_per_day, 500 if a.tokens_in is None else a.tokens_in,
                          200 if a.tokens_out is None else a.tokens_out, a.peak_concurrency, a.p50_tpot_ms)]
    v = a.horizon_months
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                          or not 0 < v <= 600):
        p.append(f"horizon_months must be a number above 0 and at most 600 (got {_shown(v)})")
    if a.retunes is not None and (not _is_int(a.retunes) or not 1 <= a.retunes <= 10_000):
        p.append(f"retunes must be a whole number from 1 to 10,000: tuning runs per task over the horizon, the first "
                 f"included (got {_shown(a.retunes)})")
    if a.serving_gpu is not None:
        from estimators.catalog import gpus

        if not isinstance(a.serving_gpu, str) or a.serving_gpu.lower() not in gpus():
            p.append(f"serving_gpu must be a GPU catalog id (see `tuning-advisor gpus`; got {_shown(a.serving_gpu)})")
    return p
