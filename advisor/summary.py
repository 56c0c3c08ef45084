"""The recommendation's one-paragraph summary and the retrieval hybrid (C5.1)."""
from __future__ import annotations

from advisor.answers import Answers
from advisor.rules import TUNING_GOALS

_NO_FORMAT_GOALS = {"factual_recall"}


def hybrid_for(advice: list, answers: Answers) -> dict | None:
    """Retrieval for the facts plus the best tuning method for the other goals, when factual recall
    comes with goals that tuning serves (C5.1: tuning barely adds facts, but shapes style and format)."""
    others = [g for g in answers.goals if g not in _NO_FORMAT_GOALS]
    if "factual_recall" not in answers.goals or not others:
        return None
    if not set(others) & TUNING_GOALS:
        return None  # format only: retrieval, with tuning as an option (dont_tune)
    best = advice[0]
    goals = ", ".join(g.replace("_", " ") for g in others)
    return {"retrieval": "factual_recall", "tune": best.method, "label": best.label, "for": others,
            "criterion": "C5.1",
            "text": (f"Retrieve the facts at inference time (RAG) — tuning barely improves factual recall (C5.1) — "
                     f"and tune {best.label} for {goals}.")}


def summary_for(advice: list, dont_tune: bool, hybrid: dict | None, bases: tuple, answers: Answers,
                gpu_name: str) -> str:
    text = _headline(advice, dont_tune, hybrid, answers, gpu_name)
    if bases:
        text += (f" No catalog student shares {answers.model}'s tokenizer for a smaller footprint: start from a "
                 f"smaller base such as {', '.join(bases)} and tune it directly.")
    return text


def _headline(advice: list, dont_tune: bool, hybrid: dict | None, answers: Answers, gpu_name: str) -> str:
    best = advice[0]
    if dont_tune:
        return ("Don't tune for factual recall (C5.1): retrieve the facts at inference time (RAG). "
                f"If you also need a fixed answer format, {best.label} is the best fit.")
    if not best.fits:
        return (f"Nothing fits {answers.num_gpus}× {gpu_name}; {best.label} comes closest. "
                + best.reasons[0]["text"])
    if not best.within_budget:
        detail = (best.budget_fit or {}).get("text") or best.reasons[0]["text"]
        return f"No method meets the budget; {best.label} ranks first among the least over it (C6.10). " + detail
    lead = "Hybrid: " + hybrid["text"][0].lower() + hybrid["text"][1:] + " " if hybrid else ""
    return lead + f"Recommended: {best.label} (score {best.score:.2f}). " + (best.reasons[0]["text"] if best.reasons else "")
