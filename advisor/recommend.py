"""``recommend(answers) -> Recommendation``: every method scored by the rules, checked against the
GPU(s) and budget by the estimators, and ranked (deterministic)."""
from __future__ import annotations

from dataclasses import dataclass

from advisor.answers import Answers
from advisor.feasibility import find_feasible, pick_student, seq_len_for
from advisor.rules import CAVEATS, TUNING_GOALS, Context, apply_rules
from estimators.catalog import GPU, gpu_by_id, load_model
from estimators.errors import InputError
from estimators.methods import REGISTRY
from estimators.plan import Plan

METHODS = tuple(REGISTRY)


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

    @property
    def label(self) -> str:
        return REGISTRY[self.method].label

    def to_json(self) -> dict:
        return {"method": self.method, "label": REGISTRY[self.method].label, "score": self.score, "fits": self.fits,
                "within_budget": self.within_budget, "reasons": self.reasons, "caveats": self.caveats,
                "settings": self.settings, "estimate": self.estimate, "model": self.model,
                "plan": None if self.plan is None else self.plan.to_json()}


@dataclass(frozen=True)
class Recommendation:
    dont_tune: bool
    alternative: str | None
    recommendations: list
    summary: str

    def to_json(self) -> dict:
        return {"dont_tune": self.dont_tune, "alternative": self.alternative, "summary": self.summary,
                "recommendations": [r.to_json() for r in self.recommendations]}

    @property
    def best(self) -> MethodAdvice:
        return self.recommendations[0]


def hardware_for(answers: Answers, gpu: GPU | None = None) -> dict:
    """The plan's hardware section for the answers (a custom ``gpu`` is described in full)."""
    if gpu is not None and gpu.id == "custom":
        return {"gpu": "custom", "gpu_memory_gib": gpu.memory_bytes / 1024**3, "gpu_tflops": gpu.tflops["bf16"],
                "gpu_name": gpu.name, "price_per_hour": gpu.price_per_hour_usd, "num_gpus": answers.num_gpus}
    return {"gpu": (gpu.id if gpu is not None else answers.gpu), "num_gpus": answers.num_gpus}


def recommend(answers: Answers, gpu: GPU | None = None, calibration=None, data: dict | None = None) -> Recommendation:
    """Ranks every method for ``answers``; ``gpu`` overrides ``answers.gpu`` (a custom GPU).

    ``calibration(gpu_id, method, precision)`` looks up trial-run calibration (the caller's I/O; None:
    defaults); ``data`` adds data facts to every plan (path, format, token lengths of an uploaded file)."""
    spec = load_model(answers.model)
    gpu = gpu or gpu_by_id(answers.gpu)
    methods = tuple(m for m in METHODS if REGISTRY[m].encoders or spec.kind != "encoder")
    scored = apply_rules(Context(answers, spec), methods)
    hardware = hardware_for(answers, gpu)
    facts = {**(data or {}), "num_examples": answers.num_examples, "tokens_per_example": answers.avg_tokens_per_example}
    # With the data's length distribution, the sequence length covers 95 % of the examples, not the mean.
    typical = (facts.get("token_lengths") or {}).get("p95") or answers.avg_tokens_per_example
    advice = []
    for method in methods:
        score, reasons = scored[method]
        caveats = list(CAVEATS.get(method, []))
        model, settings = spec, {}
        if REGISTRY[method].needs_teacher:
            teacher = load_model(answers.teacher) if answers.teacher else spec
            model = load_model(answers.student) if answers.student else pick_student(teacher)
            if model is None:
                advice.append(MethodAdvice(method, 0.0, False, False, reasons + [{
                    "criterion": "C6.7", "rule": "no-student", "effect": "-",
                    "text": f"No smaller catalog model shares {teacher.id}'s tokenizer to act as the student."}],
                    caveats, {}, None, "—"))
                continue
            caveats.insert(0, f"Student {model.id} learns from teacher {teacher.id}.")
            settings["teacher"] = answers.teacher or answers.model
        model_ref = model.id if model is not spec else answers.model
        try:
            base = Plan.create(model_ref, method, settings={
                **settings, "batch_size": 4, "seq_len": seq_len_for(typical, model),
                "epochs": float(answers.epochs)}, hardware=hardware, data=facts, tasks=answers.num_tasks)
            f = find_feasible(base, gpu, answers.max_hours, answers.max_cost_usd, model, calibration)
        except InputError as exc:  # e.g. a teacher with another tokenizer
            advice.append(MethodAdvice(method, 0.0, False, False, reasons + [{
                "criterion": "C6.7", "rule": "not-applicable", "effect": "-", "text": str(exc)}], caveats, {}, None,
                model.id))
            continue
        if not f.fits:
            reasons = [{"criterion": "C2.2", "rule": "does-not-fit", "effect": "-",
                        "text": "; ".join(f.notes)}] + reasons
        elif not f.within_budget:
            reasons = [{"criterion": "C2.3", "rule": "over-budget", "effect": "-", "text": "; ".join(f.notes)}] + reasons
        elif f.notes:
            caveats.append(f.notes[0][0].upper() + f.notes[0][1:] + ".")
        advice.append(MethodAdvice(method, score, f.fits, f.within_budget, reasons, caveats, f.settings,
                                   f.plan.estimate, model.id, f.plan))
    order = {m: i for i, m in enumerate(METHODS)}
    # What fits and is within budget first, by score; what does not fit last, closest to fitting first.
    def rank(a: MethodAdvice):
        need = a.estimate["memory"]["total"] if a.estimate and not a.fits else 0
        return (not a.fits, need if not a.fits else 0, not a.within_budget, -a.score, order[a.method])

    advice.sort(key=lambda a: (a.estimate is None, *rank(a)))
    dont_tune = "factual_recall" in answers.goals and not (set(answers.goals) & TUNING_GOALS)
    return Recommendation(dont_tune=dont_tune, alternative="rag" if dont_tune else None, recommendations=advice,
                          summary=_summary(advice, dont_tune, answers, gpu.name))


def _summary(advice: list, dont_tune: bool, answers: Answers, gpu_name: str) -> str:
    if dont_tune:
        return ("Don't tune for factual recall (C5.1): retrieve the facts at inference time (RAG). "
                f"If you also need a fixed answer format, {advice[0].label} is the best fit.")
    best = advice[0]
    if not best.fits:
        return (f"Nothing fits {answers.num_gpus}× {gpu_name}; {best.label} comes closest. "
                + best.reasons[0]["text"])
    if not best.within_budget:
        return f"No method fits the budget; {best.label} is the best of what fits the GPU. " + best.reasons[0]["text"]
    return f"Recommended: {best.label} (score {best.score:.2f}). " + (best.reasons[0]["text"] if best.reasons else "")
