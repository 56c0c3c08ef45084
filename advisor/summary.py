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


def _fix(best) -> str:
    """What would make the first method meet its limit (C6.10): the share of the data or epochs, and the
    hardware that meets it as it is."""
    fit = best.budget_fit or {}
    parts = []
    if fit.get("data_share") is not None:
        parts.append(f"{fit['epochs']:.2g} epochs ({fit['data_share']:.0%} of the planned tokens) fit the "
                     f"{fit['limit']}")
    hw = fit.get("hardware")
    if hw is not None:
        parts.append(f"{hw['num_gpus']}× {hw['name']} meets it with all the data")
    return " or ".join(parts) if parts else (fit.get("text") or best.reasons[0]["text"])


def _student_note(best) -> str:
    served = best.served
    if best.plan is None or not served or "teacher" not in best.plan.settings:
        return ""
    return (f" Student {served['model']}: ~{served['bytes_4bit_export'] / 1024**3:.2f} GiB as a 4-bit export, "
            f"{served['bytes_16bit'] / 1024**3:.1f} GiB in 16 bits.")


def _headline(advice: list, dont_tune: bool, hybrid: dict | None, answers: Answers, gpu_name: str) -> str:
    best = advice[0]
    if dont_tune:
        return ("Don't tune for factual recall (C5.1): retrieve the facts at inference time (RAG). "
                f"If you also need a fixed answer format, {best.label} is the best fit." + _limit_note(best))
    if not best.fits:
        if any(a.fits for a in advice):
            return (f"{best.label} is the right tool here but does not fit {answers.num_gpus}× {gpu_name}. "
                    + best.reasons[0]["text"] + _student_note(best))
        return (f"Nothing fits {answers.num_gpus}× {gpu_name}; {best.label} comes closest. "
                + best.reasons[0]["text"])
    if not best.within_budget:
        head = ("No method meets the budget; " if not any(a.fits and a.within_budget for a in advice)
                else "Over budget: ")
        return (head + f"{best.label} is the best of the methods the task allows (C6.10): {_fix(best)}. "
                + (best.budget_fit or {}).get("text", ""))
    lead = "Hybrid: " + hybrid["text"][0].lower() + hybrid["text"][1:] + " " if hybrid else ""
    tasks = f" {best.all_tasks['text']}" if best.all_tasks else ""
    return (lead + f"Recommended: {best.label} (score {best.score:.2f}). "
            + (best.reasons[0]["text"] if best.reasons else "") + _student_note(best) + tasks)


def _limit_note(best) -> str:
    """What the format-only run needs to meet its memory or budget limit (empty when it meets both)."""
    if best.estimate is None:
        return ""
    if not best.fits:
        return " " + best.reasons[0]["text"]
    if not best.within_budget:
        return f" Over budget: {_fix(best)}."
    return ""
