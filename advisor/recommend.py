"""``recommend(answers) -> Recommendation``: every method scored by the rules, checked against the
GPU(s) and budget by the estimators, and ranked (deterministic)."""
from __future__ import annotations

from dataclasses import dataclass

from advisor.answers import Answers
from advisor.feasibility import find_feasible, pick_student
from advisor.rules import CAVEATS, TUNING_GOALS, Context, apply_rules
from estimators.catalog import GPU, gpu_by_id, load_model
from estimators.errors import InputError
from estimators.setup import METHODS


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

    def to_json(self) -> dict:
        return {"method": self.method, "score": self.score, "fits": self.fits, "within_budget": self.within_budget,
                "reasons": self.reasons, "caveats": self.caveats, "settings": self.settings,
                "estimate": self.estimate, "model": self.model}


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


def recommend(answers: Answers, gpu: GPU | None = None) -> Recommendation:
    """Ranks every method for ``answers``; ``gpu`` overrides ``answers.gpu`` (a custom GPU)."""
    spec = load_model(answers.model)
    gpu = gpu or gpu_by_id(answers.gpu)
    if spec.kind == "encoder":
        methods = tuple(m for m in METHODS if m not in ("prompt_tuning", "distillation"))
    else:
        methods = METHODS
    scored = apply_rules(Context(answers, spec), methods)
    advice = []
    for method in methods:
        score, reasons = scored[method]
        caveats = list(CAVEATS.get(method, []))
        model, teacher = spec, None
        if method == "distillation":
            teacher = load_model(answers.teacher) if answers.teacher else spec
            model = load_model(answers.student) if answers.student else pick_student(teacher)
            if model is None:
                advice.append(MethodAdvice(method, 0.0, False, False, reasons + [{
                    "criterion": "C6.7", "rule": "no-student", "effect": "-",
                    "text": f"No smaller catalog model shares {teacher.id}'s tokenizer to act as the student."}],
                    caveats, {}, None, "—"))
                continue
            caveats.insert(0, f"Student {model.id} learns from teacher {teacher.id}.")
        try:
            f = find_feasible(model, method, gpu, answers.num_gpus, answers.num_examples,
                              answers.avg_tokens_per_example, answers.epochs, answers.max_hours,
                              answers.max_cost_usd, teacher, answers.num_tasks)
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
                                   f.estimate.to_json(), model.id))
    order = {m: i for i, m in enumerate(METHODS)}
    # What fits and is within budget first, by score; what does not fit last, closest to fitting first.
    def rank(a: MethodAdvice):
        need = a.estimate["memory"]["total"] if a.estimate and not a.fits else 0
        return (not a.fits, need if not a.fits else 0, not a.within_budget, -a.score, order[a.method])

    advice.sort(key=lambda a: (a.estimate is None, *rank(a)))
    dont_tune = "factual_recall" in answers.goals and not (set(answers.goals) & TUNING_GOALS)
    return Recommendation(dont_tune=dont_tune, alternative="rag" if dont_tune else None, recommendations=advice,
                          summary=_summary(advice, dont_tune, answers))


def _summary(advice: list, dont_tune: bool, answers: Answers) -> str:
    if dont_tune:
        return ("Don't tune for factual recall (C5.1): retrieve the facts at inference time (RAG). "
                f"If you also need a fixed answer format, {advice[0].method} is the best fit.")
    best = advice[0]
    if not best.fits:
        return (f"Nothing fits {answers.num_gpus}× {answers.gpu}; {best.method} comes closest. "
                + best.reasons[0]["text"])
    if not best.within_budget:
        return f"No method fits the budget; {best.method} is the best of what fits the GPU. " + best.reasons[0]["text"]
    return f"Recommended: {best.method} (score {best.score:.2f}). " + (best.reasons[0]["text"] if best.reasons else "")
