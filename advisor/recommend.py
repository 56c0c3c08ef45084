"""``recommend(answers) -> Recommendation``: every method scored by the rules, checked against the
GPU(s) and budget by the estimators, and ranked (deterministic; the order is advisor/ranking.py's: the
task's criteria first, then memory and budget, and a final check that the first method is not one its own
reasons rule out).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from advisor.answers import Answers
from advisor.budget import budget_fit
from advisor.caveats import caveats_for
from advisor.epochs import epochs_for, steps_per_epoch
from advisor.facts import GIB, human
from advisor.feasibility import HEADROOM, find_feasible, seq_len_for, smaller_bases
from advisor.hosting import price_hosting
from advisor.precision import hardware_caveat, precision_for, pure_precision_caveat
from advisor.ranking import OVER_BUDGET_TIE, ranked  # noqa: F401  (OVER_BUDGET_TIE: re-exported for tests)
from advisor.rules import MANY_TENANTS, TUNING_GOALS, Context, apply_rules, squash, unsquash
from advisor.students import export_bytes, student_for
from advisor.summary import hybrid_for, summary_for
from estimators.catalog import GPU, gpu_by_id, load_model
from estimators.errors import InputError
from estimators.memory import estimate_memory
from estimators.methods import REGISTRY
from estimators.plan import Plan

METHODS = tuple(REGISTRY)
POOR_FIT = round(squash(0.3), 3)
"""Scores at or below this (rules summing to -0.2 or less) make a method a poor fit for the situation."""
GOOD_FIT = round(squash(0.7), 3)
ROUTE_EFFECT = {"on-GPU": 0.0, "sharded": -0.03, "offloaded": -0.08}
"""C6.21: how a plan fits weighs in its score. Sharding adds communication every step (small on NVLink);
offloading makes every step wait on host transfers (ZeRO-Offload: several times slower steps when the
optimizer runs on the CPU, Ren et al. 2021)."""


@dataclass(frozen=True)
class MethodAdvice:
    method: str
    score: float
    fits: bool
    within_budget: bool
    reasons: list
    caveats: list
    settings: dict
    estimate: dict | None
    model: str
    """The model this method tunes (for distillation: the student)."""
    plan: Plan | None = None
    """The plan behind ``settings`` and ``estimate``: what the what-if, the trial and the export take."""
    verdict: str = "possible"
    """``good fit``, ``possible``, ``poor fit`` (by score) or ``not applicable`` (nothing to estimate)."""
    verdict_reason: str | None = None
    memory_fit: str | None = None
    """``fits`` (>= 5 % free), ``tight`` or ``does not fit`` (C6.12); None when not estimated."""
    headroom: float | None = None
    budget_fit: dict | None = None
    """What would meet the time and money budget (advisor/budget.py); None without a budget."""
    route: str | None = None
    """How the plan fits (C6.21): ``on-GPU`` (each GPU holds it whole, DDP included), ``sharded`` (ZeRO/FSDP)
    or ``offloaded`` (CPU memory); None when not estimated."""
    training: dict | None = None
    """Epochs (and where they come from, C6.18), steps per epoch and in all."""
    all_tasks: dict | None = None
    """With several tasks: what tuning all of them takes (K runs or one multi-task run, C6.22)."""
    served: dict | None = None
    """The model served after tuning: its id, parameters, 16-bit size and 4-bit export size (C6.17)."""
    total_cost: dict | None = None
    """Tuning plus hosting over the horizon (advisor/hosting.py); None when hosting was not priced."""
    hosting_error: str | None = None

    @property
    def label(self) -> str:
        return REGISTRY[self.method].label

    @property
    def over_by(self) -> float:
        return (self.budget_fit or {}).get("over_by") or 0.0

    def to_json(self) -> dict:
        return {"method": self.method, "label": self.label, "score": self.score, "fits": self.fits,
                "within_budget": self.within_budget, "memory_fit": self.memory_fit, "headroom": self.headroom,
                "verdict": self.verdict, "verdict_reason": self.verdict_reason, "reasons": self.reasons,
                "caveats": self.caveats, "settings": self.settings, "estimate": self.estimate, "model": self.model,
                "budget_fit": self.budget_fit, "route": self.route, "training": self.training,
                "all_tasks": self.all_tasks, "served": self.served,
                "plan": None if self.plan is None else self.plan.to_json(),
                "total_cost": self.total_cost, "hosting_error": self.hosting_error}


@dataclass(frozen=True)
class Recommendation:
    dont_tune: bool
    alternative: str | None
    recommendations: list
    summary: str
    hybrid: dict | None = None
    """Retrieval for the facts plus the best tuning method for the other goals (C5.1)."""
    smaller_bases: tuple = ()
    """Catalog models to start from when the goal is a small footprint and no student exists."""
    hosting: dict | None = None
    """Whether hosting was priced, for what traffic and horizon, and what it found (advisor/hosting.py)."""

    def to_json(self) -> dict:
        return {"dont_tune": self.dont_tune, "alternative": self.alternative, "hybrid": self.hybrid,
                "smaller_bases": list(self.smaller_bases), "summary": self.summary, "hosting": self.hosting,
                "recommendations": [r.to_json() for r in self.recommendations]}

    @property
    def best(self) -> MethodAdvice:
        return self.recommendations[0]


def hardware_for(answers: Answers, gpu: GPU | None = None) -> dict:
    """The plan's hardware section for the answers (a custom ``gpu`` is described in full)."""
    if gpu is not None and gpu.id == "custom":
        return {"gpu": "custom", "gpu_memory_gib": gpu.memory_bytes / 1024**3, "gpu_tflops": gpu.tflops["bf16"],
                "gpu_name": gpu.name, "price_per_hour": gpu.price_per_hour_usd, "num_gpus": answers.num_gpus,
                "host_memory_gib": answers.host_memory_gib}
    return {"gpu": (gpu.id if gpu is not None else answers.gpu), "num_gpus": answers.num_gpus,
            "host_memory_gib": answers.host_memory_gib}


@dataclass(frozen=True)
class _Situation:
    """What every method's advice shares."""
    ctx: Context
    gpu: GPU
    hardware: dict
    data: dict
    typical: int
    calibration: object
    epochs: float
    epochs_why: str

    @property
    def answers(self) -> Answers:
        return self.ctx.answers


def recommend(answers: Answers, gpu: GPU | None = None, calibration=None, data: dict | None = None) -> Recommendation:
    """Ranks every method for ``answers``; ``gpu`` overrides ``answers.gpu`` (a custom GPU).

    ``calibration(gpu_id, method, precision)`` looks up trial-run calibration (the caller's I/O; None:
    defaults); ``data`` adds data facts to every plan (path, format, token lengths of an uploaded file)."""
    spec = load_model(answers.model)
    gpu = gpu or gpu_by_id(answers.gpu)
    ctx = Context(answers, spec)
    facts = {**(data or {}), "num_examples": answers.num_examples, "tokens_per_example": answers.avg_tokens_per_example}
    # With the data's length distribution, the sequence length covers 95 % of the examples, not the mean.
    typical = (facts.get("token_lengths") or {}).get("p95") or answers.avg_tokens_per_example
    if answers.epochs is not None:
        epochs, why = float(answers.epochs), f"{answers.epochs:g} epochs, as given in the answers"
    else:
        n, why = epochs_for(answers.num_examples, answers.avg_tokens_per_example, answers.task)
        epochs = float(n)
    sit = _Situation(ctx, gpu, hardware_for(answers, gpu), facts, typical, calibration, epochs, why)
    scored = apply_rules(ctx, METHODS)
    advice = ranked([_advise(sit, m, *scored[m]) for m in METHODS])
    advice, hosting = price_hosting(advice, answers, gpu)  # tuning + hosting; priority cost ranks by it
    dont_tune = "factual_recall" in answers.goals and not (set(answers.goals) & TUNING_GOALS)
    wants_small = {"small_footprint", "reduce_inference_cost"} & set(answers.goals)
    distil = next(a for a in advice if REGISTRY[a.method].needs_teacher)
    bases = tuple(smaller_bases(spec)) if wants_small and distil.estimate is None and not answers.student else ()
    hybrid = hybrid_for(advice, answers)
    return Recommendation(dont_tune=dont_tune, alternative="rag" if "factual_recall" in answers.goals else None,
                          recommendations=advice, hybrid=hybrid, smaller_bases=bases,
                          summary=summary_for(advice, dont_tune, hybrid, bases, answers, gpu.name)
                          + " " + hosting["text"], hosting=hosting)


def _verdict(score: float, reasons: list) -> tuple[str, str | None]:
    if score <= POOR_FIT:
        worst = next((r for r in reasons if r["effect"] == "-"), None)
        return "poor fit", worst and worst["text"]
    best = next((r for r in reasons if r["effect"] == "+"), None)
    return ("good fit" if score >= GOOD_FIT else "possible"), (best or (reasons or [{}])[0]).get("text")


def _student(sit: _Situation):
    """(teacher, student, why) for distillation; student None when the catalog has none for this target."""
    a, spec = sit.answers, sit.ctx.spec
    teacher = load_model(a.teacher) if a.teacher else spec
    if a.student:
        return teacher, load_model(a.student), f"Student {a.student}, as given in the answers"
    student, why = student_for(teacher, a.goals, a.device_memory_gib)
    return teacher, student, why


def _no_student(teacher, bases: list[str], rule: str) -> str:
    family = teacher.tokenizer_family or f"vocabulary {teacher.vocab:,}"
    text = (f"Distillation needs a student sharing {teacher.id}'s tokenizer ({family}); no catalog model is "
            f"{rule}. Distil into a copy of {teacher.id} with half the layers, as DistilBERT did for BERT "
            "(Sanh et al. 2019)")
    return text + (f", or start from a smaller base: {', '.join(bases)}." if bases else ".")


def _not_applicable(method: str, model: str, score: float, reasons: list, why: str) -> MethodAdvice:
    """A method with nothing to estimate: its reasons say why; caveats about running it do not apply."""
    reasons = [{"criterion": "C6.7", "rule": "not-applicable", "effect": "-", "text": why}] + reasons
    return MethodAdvice(method, score, False, False, reasons, [], {}, None, model,
                        verdict="not applicable", verdict_reason=why)


def _route(settings: dict) -> str:
    if settings.get("cpu_offload"):
        return "offloaded"
    return "sharded" if settings.get("sharding", "none") != "none" else "on-GPU"


def _advise(sit: _Situation, method: str, score: float, reasons: list) -> MethodAdvice:
    spec, gpu, a = sit.ctx.spec, sit.gpu, sit.answers
    caveats = caveats_for(sit.ctx, method)
    label = REGISTRY[method].label
    model, settings, extra = spec, {}, []
    if REGISTRY[method].needs_teacher:
        teacher, model, why = _student(sit)
        if model is None:
            return _not_applicable(method, "—", score, reasons, _no_student(teacher, smaller_bases(teacher), why))
        extra.append({"criterion": "C2.7", "rule": "student", "effect": "=", "text": why + "."})
        caveats.insert(0, f"Student {model.id} learns from teacher {teacher.id} (tokenizer "
                          f"{teacher.tokenizer_family or 'matched by vocabulary size'}, C6.7).")
        settings = {"teacher": a.teacher or a.model}
    k = a.num_tasks
    # A budget covers every task (C6.22): each of K runs gets a K-th of it (time and cost are linear in tokens).
    hours = None if a.max_hours is None else a.max_hours / k
    money = None if a.max_cost_usd is None else a.max_cost_usd / k
    try:
        base = Plan.create(model.id if model is not spec else a.model, method, settings={
            **settings, **precision_for(gpu, model, method), "batch_size": 4, "seq_len": seq_len_for(sit.typical, model),
            "epochs": sit.epochs, **(a.speed or {})}, hardware=sit.hardware, data=sit.data, tasks=k)
        f = find_feasible(base, gpu, hours, money, model, sit.calibration)
    except InputError as exc:  # e.g. a teacher with another tokenizer
        return _not_applicable(method, model.id, score, reasons, str(exc))
    route = _route(f.settings)
    if f.fits and ROUTE_EFFECT[route]:
        score = round(squash(unsquash(score) + ROUTE_EFFECT[route]), 3)
        reasons = reasons + [_route_reason(route, f, label)]
    verdict, why = _verdict(score, reasons)
    fit = budget_fit(f, label, hours, money)
    if fit is not None and k > 1:
        fit = {**fit, "text": f"Per task, with the budget split over {k:,} tasks: " + fit["text"]}
    training = _training(sit, f, label)
    reasons = _fit_reasons(f, fit, label) + reasons + extra + [training.pop("reason")]
    all_tasks = _all_tasks(f, k, method, label)
    if all_tasks:
        reasons.append({"criterion": "C6.22", "rule": "all-tasks", "effect": "=", "text": all_tasks["text"]})
    if REGISTRY[method].needs_teacher:
        reasons.append(_teacher_reason(f, teacher))
    caveats += [c for c in (hardware_caveat(gpu, model, method), pure_precision_caveat(f.plan, model, None)) if c]
    if f.fits and f.within_budget and f.notes:
        caveats.append(f.notes[0][0].upper() + f.notes[0][1:] + ".")
    if f.memory_fit == "tight":
        caveats.append(f"Tight: only {f.headroom:.1%} of {gpu.name}'s memory stays free (under the {HEADROOM:.0%} "
                       "headroom, C6.12): fragmentation or a longer batch can run out of memory.")
    served = {"model": model.id, "params": model.total_params, "bytes_16bit": model.total_params * 2,
              "bytes_4bit_export": export_bytes(model)}
    return MethodAdvice(method, score, f.fits, f.within_budget, reasons, caveats, f.settings, f.plan.estimate,
                        model.id, f.plan, verdict=verdict, verdict_reason=why, memory_fit=f.memory_fit,
                        headroom=round(f.headroom, 4), budget_fit=fit, route=route if f.fits else None,
                        training=training, all_tasks=all_tasks, served=served)


def _route_reason(route: str, f, label: str) -> dict:
    s = f.settings
    how = (f"{s['sharding'].upper()} over {s['num_gpus']} GPUs" if route == "sharded"
           else f"{s['sharding'].upper()} over {s['num_gpus']} GPUs with offload to CPU memory")
    cost = ("adds communication every step" if route == "sharded"
            else "makes every step wait on host transfers (Ren et al. 2021)")
    return {"criterion": "C6.21", "rule": f"route-{route}", "effect": "-",
            "text": f"{label} fits only {route} ({how}): that {cost}."}


def _training(sit: _Situation, f, label: str) -> dict:
    """Epochs (C6.18) and steps: the global batch is micro-batch x accumulation x data-parallel GPUs."""
    s = f.settings
    per = steps_per_epoch(sit.answers.num_examples, s["batch_size"], s["grad_accum"], s["num_gpus"])
    epochs = s["epochs"]
    text = (f"{label}: {sit.epochs_why}; {per:,} optimizer steps per epoch ({sit.answers.num_examples:,} examples / "
            f"{s['batch_size']} x {s['grad_accum']} x {s['num_gpus']} GPU(s)), {per * epochs:,.0f} in all "
            "(set epochs to change it).")
    return {"epochs": epochs, "epochs_source": "answers" if sit.answers.epochs is not None else "rule",
            "steps_per_epoch": per, "steps": int(round(per * epochs)),
            "reason": {"criterion": "C6.18", "rule": "epochs", "effect": "=", "text": text}}


def _all_tasks(f, k: int, method: str, label: str) -> dict | None:
    """K tasks' tuning (C6.22): one run per task for per-task artifacts (and whole models below
    MANY_TENANTS); one multi-task run over all tasks' data where one whole model serves them all."""
    if k <= 1:
        return None
    t = f.estimate.time
    whole = REGISTRY[method].artifact == "model"
    runs = 1 if whole and k >= MANY_TENANTS else k
    seconds = None if t.seconds is None else t.seconds * k
    cost = None if t.cost_usd is None else t.cost_usd * k
    form = (f"one multi-task run over all {k:,} tasks' data (one model serves them all)" if runs == 1
            else f"{k:,} runs, one {'model' if whole else REGISTRY[method].artifact} per task")
    took = "" if seconds is None else f" ~{seconds / 3600:,.1f} h"
    money = "" if cost is None else f", ${cost:,.0f}"
    return {"tasks": k, "runs": runs, "form": form, "seconds": seconds, "cost_usd": cost,
            "text": (f"{label}, all {k:,} tasks: {form},{took}{money} in all (time and cost shown per method are "
                     "one task's).")}


def _teacher_reason(f, teacher) -> dict:
    """The teacher's precision and what it takes on the GPU, beside the other choices (C2.7)."""
    setup = f.estimate.setup

    def gib(**kw) -> str:
        memory = estimate_memory(f.estimate.spec, dataclasses.replace(setup, **kw), teacher)
        return f"{memory.detail.get('teacher_weights', 0) / GIB:,.1f} GiB"

    if setup.teacher_logits == "precomputed":
        now = "logits precomputed in one pass before training (no teacher on the GPU)"
    elif setup.teacher_quant_bits:
        now = f"stored in {setup.teacher_quant_bits} bits: {gib()}"
    else:
        now = f"in {setup.precision}: {gib()}"
    return {"criterion": "C2.7", "rule": "teacher", "effect": "=",
            "text": (f"Teacher {teacher.id} ({human(teacher.total_params)}) {now}; {setup.precision} "
                     f"{gib(teacher_quant_bits=None, teacher_logits='online')}, 4-bit "
                     f"{gib(teacher_quant_bits=4, teacher_logits='online')}, precomputed logits "
                     f"{gib(teacher_logits='precomputed')} "
                     "(setting teacher_quant_bits / teacher_logits).")}


def _fit_reasons(f, fit: dict | None, label: str) -> list[dict]:
    """Memory and budget reasons that lead the list when they decide the rank."""
    if not f.fits:
        return [{"criterion": "C2.2", "rule": "does-not-fit", "effect": "-", "text": f"{label}: " + "; ".join(f.notes)}]
    if f.within_budget:
        return []
    out = [{"criterion": "C2.3", "rule": "over-budget", "effect": "-", "text": f"{label}: " + "; ".join(f.notes)}]
    if fit is not None:
        out.append({"criterion": "C6.10", "rule": "budget-fit", "effect": "-", "text": fit["text"]})
    return out
