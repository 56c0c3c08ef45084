"""``recommend(answers) -> Recommendation``: every method scored by the rules, checked against the
GPU(s) and budget by the estimators, and ranked (deterministic).

Ranking, best first: within budget with memory headroom; within budget but tight (C6.12); over budget,
least over first (C6.10) — poor fits after the others, and methods within OVER_BUDGET_TIE of the
least-over one count as equally over, so that 3.2× against 3.3× does not outrank a better-suited method;
does not fit, least memory first; not applicable. Inside a group: higher score first; equal (rounded) scores follow the registry's order,
cheapest method first.
"""
from __future__ import annotations

from dataclasses import dataclass

from advisor.answers import Answers
from advisor.budget import budget_fit
from advisor.caveats import caveats_for
from advisor.feasibility import HEADROOM, find_feasible, pick_student, seq_len_for, smaller_bases
from advisor.precision import hardware_caveat, precision_for, pure_precision_caveat
from advisor.rules import TUNING_GOALS, Context, apply_rules, squash
from advisor.summary import hybrid_for, summary_for
from estimators.catalog import GPU, gpu_by_id, load_model
from estimators.errors import InputError
from estimators.methods import REGISTRY
from estimators.plan import Plan

METHODS = tuple(REGISTRY)
POOR_FIT = round(squash(0.3), 3)
"""Scores at or below this (rules summing to -0.2 or less) make a method a poor fit for the situation."""
GOOD_FIT = round(squash(0.7), 3)
OVER_BUDGET_TIE = 1.25
"""Over-budget runs within 25 % of the least-over one are ranked by score (estimates are not that exact)."""


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
                "budget_fit": self.budget_fit, "plan": None if self.plan is None else self.plan.to_json()}


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

    def to_json(self) -> dict:
        return {"dont_tune": self.dont_tune, "alternative": self.alternative, "hybrid": self.hybrid,
                "smaller_bases": list(self.smaller_bases), "summary": self.summary,
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
    sit = _Situation(ctx, gpu, hardware_for(answers, gpu), facts, typical, calibration)
    scored = apply_rules(ctx, METHODS)
    advice = _ranked([_advise(sit, m, *scored[m]) for m in METHODS])
    dont_tune = "factual_recall" in answers.goals and not (set(answers.goals) & TUNING_GOALS)
    wants_small = {"small_footprint", "reduce_inference_cost"} & set(answers.goals)
    distil = next(a for a in advice if REGISTRY[a.method].needs_teacher)
    bases = tuple(smaller_bases(spec)) if wants_small and distil.estimate is None and not answers.student else ()
    hybrid = hybrid_for(advice, answers)
    return Recommendation(dont_tune=dont_tune, alternative="rag" if "factual_recall" in answers.goals else None,
                          recommendations=advice, hybrid=hybrid, smaller_bases=bases,
                          summary=summary_for(advice, dont_tune, hybrid, bases, answers, gpu.name))


def _ranked(advice: list[MethodAdvice]) -> list[MethodAdvice]:
    over = [a for a in advice if a.estimate is not None and a.fits and not a.within_budget]
    least = {poor: min((a.over_by for a in over if (a.verdict == "poor fit") == poor), default=0.0)
             for poor in (False, True)}

    def key(a: MethodAdvice):
        order = METHODS.index(a.method)
        if a.estimate is None:
            return (5, 0, 0, 0, order)
        if not a.fits:
            return (4, 0, a.estimate["memory"]["total"], -a.score, order)
        if not a.within_budget:
            poor = a.verdict == "poor fit"
            near = a.over_by <= least[poor] * OVER_BUDGET_TIE
            return (2, poor, 0 if near else a.over_by, -a.score, order)
        return (0 if a.memory_fit == "fits" else 1, 0, 0, -a.score, order)

    return sorted(advice, key=key)


def _verdict(score: float, reasons: list) -> tuple[str, str | None]:
    if score <= POOR_FIT:
        worst = next((r for r in reasons if r["effect"] == "-"), None)
        return "poor fit", worst and worst["text"]
    best = next((r for r in reasons if r["effect"] == "+"), None)
    return ("good fit" if score >= GOOD_FIT else "possible"), (best or (reasons or [{}])[0]).get("text")


def _student(sit: _Situation):
    """(teacher, student) for distillation; student None when the catalog has none for this teacher."""
    a, spec = sit.answers, sit.ctx.spec
    teacher = load_model(a.teacher) if a.teacher else spec
    return teacher, (load_model(a.student) if a.student else pick_student(teacher))


def _no_student(teacher, bases: list[str]) -> str:
    family = teacher.tokenizer_family or f"vocabulary {teacher.vocab:,}"
    text = (f"Distillation needs a student sharing {teacher.id}'s tokenizer ({family}); no catalog model of at most "
            f"a quarter its size does. Distil into a copy of {teacher.id} with half the layers, as DistilBERT did "
            "for BERT (Sanh et al. 2019)")
    return text + (f", or start from a smaller base: {', '.join(bases)}." if bases else ".")


def _not_applicable(method: str, model: str, score: float, reasons: list, why: str) -> MethodAdvice:
    """A method with nothing to estimate: its reasons say why; caveats about running it do not apply."""
    reasons = [{"criterion": "C6.7", "rule": "not-applicable", "effect": "-", "text": why}] + reasons
    return MethodAdvice(method, score, False, False, reasons, [], {}, None, model,
                        verdict="not applicable", verdict_reason=why)


def _advise(sit: _Situation, method: str, score: float, reasons: list) -> MethodAdvice:
    spec, gpu, a = sit.ctx.spec, sit.gpu, sit.answers
    caveats = caveats_for(sit.ctx, method)
    label = REGISTRY[method].label
    model, settings = spec, {}
    if REGISTRY[method].needs_teacher:
        teacher, model = _student(sit)
        if model is None:
            return _not_applicable(method, "—", score, reasons, _no_student(teacher, smaller_bases(teacher)))
        caveats.insert(0, f"Student {model.id} learns from teacher {teacher.id} (tokenizer "
                          f"{teacher.tokenizer_family or 'matched by vocabulary size'}, C6.7).")
        settings = {"teacher": a.teacher or a.model}
    try:
        base = Plan.create(model.id if model is not spec else a.model, method, settings={
            **settings, **precision_for(gpu, model, method), "batch_size": 4, "seq_len": seq_len_for(sit.typical, model), "epochs": float(a.epochs)},
            hardware=sit.hardware, data=sit.data, tasks=a.num_tasks)
        f = find_feasible(base, gpu, a.max_hours, a.max_cost_usd, model, sit.calibration)
    except InputError as exc:  # e.g. a teacher with another tokenizer
        return _not_applicable(method, model.id, score, reasons, str(exc))
    verdict, why = _verdict(score, reasons)
    fit = budget_fit(f, label, a.max_hours, a.max_cost_usd)
    reasons = _fit_reasons(f, fit, label) + reasons
    caveats += [c for c in (hardware_caveat(gpu, model, method), pure_precision_caveat(f.plan, model, None)) if c]
    if f.fits and f.within_budget and f.notes:
        caveats.append(f.notes[0][0].upper() + f.notes[0][1:] + ".")
    if f.memory_fit == "tight":
        caveats.append(f"Tight: only {f.headroom:.1%} of {gpu.name}'s memory stays free (under the {HEADROOM:.0%} "
                       "headroom, C6.12): fragmentation or a longer batch can run out of memory.")
    return MethodAdvice(method, score, f.fits, f.within_budget, reasons, caveats, f.settings, f.plan.estimate,
                        model.id, f.plan, verdict=verdict, verdict_reason=why, memory_fit=f.memory_fit,
                        headroom=round(f.headroom, 4), budget_fit=fit)


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
