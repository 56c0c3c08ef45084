"""Tuning plus hosting: each method's serving GPUs for the user's traffic and its total cost over the
horizon (issue 24), the reasons that cite the hosting criteria, and — with priority "cost" — the
ranking by that total.

Total cost = tuning cost × tasks × tuning runs + hosting $/month × months (C2.4: full tuning pays for
tuning *and* for hosting a whole new model; C3.6: many adapters share one base; C4.1 and C2.7: a
smaller prompt-tuned or distilled model costs less to host). Pure: the estimators do the arithmetic.
"""
from __future__ import annotations

import dataclasses
import math

from advisor.answers import Answers
from estimators.catalog import GPU, gpu_by_id
from estimators.errors import InputError
from estimators.methods import REGISTRY
from estimators.serving import Traffic, host

DEFAULT_TOKENS_IN, DEFAULT_TOKENS_OUT, DEFAULT_MONTHS, DEFAULT_RETUNES = 500, 200, 12, 1
# Which criterion a method's hosting reason cites, by how its result is served (the registry's served_as).
_CRITERION = {"model": "C2.4", "lora": "C3.6", "qlora": "C3.6", "prompt": "C4.1", "inserted": "C2.6"}
NOT_PRICED = ("Hosting was not priced: give requests_per_day (and tokens_in, tokens_out, serving_gpu, "
              "horizon_months, retunes) to rank by tuning plus hosting cost.")


def traffic_of(a: Answers) -> Traffic | None:
    if not a.prices_hosting:
        return None
    return Traffic(a.requests_per_day, a.tokens_in or DEFAULT_TOKENS_IN, a.tokens_out or DEFAULT_TOKENS_OUT,
                   a.peak_concurrency, a.p50_tpot_ms)


def price_hosting(advice: list, answers: Answers, gpu: GPU) -> tuple[list, dict]:
    """``advice`` with each method's serving block and total cost, re-ranked by the total under
    priority "cost"; and the recommendation's hosting summary."""
    traffic = traffic_of(answers)
    if traffic is None:
        return advice, {"priced": False, "text": NOT_PRICED}
    serving_gpu = gpu_by_id(answers.serving_gpu) if answers.serving_gpu else gpu
    months = float(answers.horizon_months or DEFAULT_MONTHS)
    runs = answers.retunes or DEFAULT_RETUNES
    priced = [_priced(a, answers, traffic, serving_gpu, months, runs) for a in advice]
    _add_payoff(priced, months)
    ranked = answers.priority == "cost"
    if ranked:
        priced = rank_by_total(priced)
    priced = [_with_reason(a) for a in priced]
    summary = {"priced": True, "ranked_by_total": ranked, "months": months, "retunes": runs,
               "tasks": answers.num_tasks, "serving_gpu": serving_gpu.id,
               "traffic": {"requests_per_day": traffic.requests_per_day, "tokens_in": traffic.tokens_in,
                           "tokens_out": traffic.tokens_out, "peak_concurrency": traffic.peak_concurrency,
                           "p50_tpot_ms": traffic.tpot_ms}}
    smaller = _prompt_tuned_student(priced, answers, traffic, serving_gpu, months, runs)
    if smaller:
        summary["smaller_base"] = smaller
    separate = _separate_models(priced, answers, traffic, serving_gpu, months, runs)
    if separate:
        summary["separate_models"] = separate
    summary["text"] = _headline(priced, summary)
    return priced, summary


def _separate_models(advice: list, answers: Answers, traffic: Traffic, serving_gpu: GPU, months: float,
                     runs: int) -> dict | None:
    """Where a whole-model method is planned as one multi-task model for K tasks, what K separately
    tuned models would cost to host instead (C3.6: the per-tenant form full tuning would need)."""
    a = next((a for a in advice if a.total_cost and a.all_tasks and a.all_tasks.get("runs") == 1
              and REGISTRY[a.method].served_as == "model" and not REGISTRY[a.method].needs_teacher), None)
    if a is None:
        return None
    try:
        h = host(a.plan.spec(), a.plan.setup(), traffic, serving_gpu, tasks=answers.num_tasks)
    except InputError:
        return None
    if h.usd_per_month is None:
        return None
    tuning = a.total_cost["tuning_usd"]
    return {"method": a.method, "tasks": answers.num_tasks, "serving": h.to_dict(),
            "total_cost": {"usd": round(tuning + h.usd_per_month * months, 2), "tuning_usd": tuning,
                           "hosting_usd": round(h.usd_per_month * months, 2), "months": months,
                           "usd_per_month": round(h.usd_per_month, 2)}}


def _prompt_tuned_student(advice: list, answers: Answers, traffic: Traffic, serving_gpu: GPU, months: float,
                          runs: int) -> dict | None:
    """C4.1: when serving cost is a goal, the smaller model distillation would train, prompt-tuned
    instead — priced the same way, beside the ranking (it changes the model, not only the method)."""
    if not {"reduce_inference_cost", "small_footprint"} & set(answers.goals):
        return None
    distil = next((a for a in advice if REGISTRY[a.method].needs_teacher and a.plan is not None), None)
    prompt = next((m for m, spec in REGISTRY.items() if spec.served_as == "prompt"), None)
    if distil is None or prompt is None:
        return None
    try:
        plan = distil.plan.with_method(prompt).estimated()
        est = plan.estimate
        h = host(plan.spec(), plan.setup(), traffic, serving_gpu, tasks=answers.num_tasks)
    except InputError:
        return None
    if est.get("cost_usd") is None or h.usd_per_month is None:
        return None
    once = est["cost_usd"] * answers.num_tasks
    return {"method": prompt, "model": plan.model, "criterion": "C4.1", "fits": est["fits"],
            "serving": h.to_dict(),
            "total_cost": {"usd": round(once * runs + h.usd_per_month * months, 2), "tuning_usd": round(once * runs, 2),
                           "hosting_usd": round(h.usd_per_month * months, 2), "months": months,
                           "usd_per_month": round(h.usd_per_month, 2),
                           "cumulative_usd": _cumulative(once, runs, h.usd_per_month, months)}}


def _priced(a, answers: Answers, traffic: Traffic, serving_gpu: GPU, months: float, runs: int):
    if a.plan is None or a.estimate is None:
        return a
    # A whole-model method tuned once on every task's data serves them all from one model (C6.22,
    # the recommendation's all_tasks); otherwise each task has its own model or adapter.
    one_model = bool(a.all_tasks and a.all_tasks.get("runs") == 1)
    try:
        h = host(a.plan.spec(), a.plan.setup(), traffic, serving_gpu, tasks=answers.num_tasks, one_model=one_model)
    except InputError as exc:
        return dataclasses.replace(a, hosting_error=str(exc))
    serving = {**a.estimate.get("serving", {}), **h.to_dict()}
    estimate = {**a.estimate, "serving": serving}
    once = a.estimate.get("cost_usd")
    total = None
    if once is not None and h.usd_per_month is not None:
        tuning = once * answers.num_tasks * runs
        hosting = h.usd_per_month * months
        total = {"usd": round(tuning + hosting, 2), "tuning_usd": round(tuning, 2), "hosting_usd": round(hosting, 2),
                 "months": months, "usd_per_month": round(h.usd_per_month, 2), "tuning_runs": runs,
                 "tasks": answers.num_tasks, "cumulative_usd": _cumulative(once * answers.num_tasks, runs,
                                                                           h.usd_per_month, months)}
    return dataclasses.replace(a, estimate=estimate, plan=dataclasses.replace(a.plan, estimate=estimate),
                               total_cost=total)


def _cumulative(tuning_once: float, runs: int, per_month: float, months: float) -> list[float]:
    """Spend at the end of month 0..months: tuning runs spread evenly over the horizon (the first at
    month 0), hosting paid monthly."""
    out = []
    for m in range(int(math.ceil(months)) + 1):
        started = min(runs, 1 + int(m * runs / months)) if m < months else runs
        out.append(round(tuning_once * started + per_month * min(m, months), 2))
    return out


def _add_payoff(advice: list, months: float) -> None:
    """Against every method that costs more per month to host: the month from which this method's total
    is lower than all of them (0: it costs less to tune as well), its ``payoff``."""
    priced = [a for a in advice if a.total_cost]
    for a in priced:
        t = a.total_cost
        refs = [b for b in priced if b.total_cost["usd_per_month"] > t["usd_per_month"]]
        if not refs:
            continue
        month = max(max(math.ceil((t["tuning_usd"] - b.total_cost["tuning_usd"])
                                  / (b.total_cost["usd_per_month"] - t["usd_per_month"])), 0) for b in refs)
        t["payoff"] = {"versus": [b.method for b in refs], "month": month, "within_horizon": month <= months}


TIE = 0.05
"""Totals within 5 % of each other count as equal: the fit order decides between them."""


def rank_by_total(advice: list) -> list:
    """Priority "cost" with traffic: methods that fit, meet the budget and are not a poor fit go first,
    cheapest total first; the others keep their order after them."""
    def eligible(a):
        return a.total_cost is not None and a.fits and a.within_budget and a.verdict != "poor fit"

    pool, first = [a for a in advice if eligible(a)], []
    while pool:  # the cheapest left, with every method within TIE of it in the fit order
        low = min(a.total_cost["usd"] for a in pool)
        group = [a for a in pool if a.total_cost["usd"] <= low * (1 + TIE)]
        first += group
        pool = [a for a in pool if a not in group]
    return first + [a for a in advice if not eligible(a)]


def _with_reason(a):
    s = (a.estimate or {}).get("serving") or {}
    if a.total_cost is None or "gpus" not in s or not s["gpus"]:
        return a
    t, g = a.total_cost, s["gpus"]
    kind = REGISTRY[a.method].served_as
    criterion = "C2.7" if REGISTRY[a.method].needs_teacher else _CRITERION.get(kind, "C2.4")
    layout = f"{g['count']:,} × {g['name']}" + (f" ({g['tensor_parallel']}-way tensor parallel)"
                                                if g["tensor_parallel"] > 1 else "")
    text = (f"Hosting {a.model}: {s['served_as']}; {layout} for the traffic at {s['tpot_ms']:.1f} ms per output "
            f"token, ${t['usd_per_month']:,.0f}/month. Total over {t['months']:g} months ${t['usd']:,.0f} = tuning "
            f"${t['tuning_usd']:,.0f} ({t['tasks']:,} task(s) × {t['tuning_runs']} run(s)) + hosting "
            f"${t['hosting_usd']:,.0f}.")
    pay = t.get("payoff")
    if pay:
        names = ", ".join(REGISTRY[m].label for m in pay["versus"])
        when = ("from the start: it also costs less to tune" if pay["month"] == 0 else
                f"from month {pay['month']}, once its lower hosting repays the dearer tuning")
        text += f" Cheaper in total than {names} {when}" + ("." if pay["within_horizon"] else " (beyond the horizon).")
    reason = {"criterion": criterion, "rule": "hosting-cost", "effect": "+" if pay and pay["within_horizon"] else "=",
              "text": text}
    return dataclasses.replace(a, reasons=[*a.reasons, reason])


def _headline(advice: list, summary: dict) -> str:
    priced = [a for a in advice if a.total_cost]
    if not priced:
        error = next((a.hosting_error for a in advice if a.hosting_error), None)
        return "Hosting could not be priced: " + (error or "the serving GPU has no price per hour (give one).")
    cheapest = min(priced, key=lambda a: a.total_cost["usd"])
    if summary["ranked_by_total"] and advice[0].total_cost:  # the first of the cheapest (ties within TIE)
        cheapest = advice[0]
    t = cheapest.total_cost
    text = (f"Over {summary['months']:g} months, {cheapest.label} costs least in total: ${t['usd']:,.0f} "
            f"(tuning ${t['tuning_usd']:,.0f} + hosting ${t['usd_per_month']:,.0f}/month on "
            f"{summary['serving_gpu']}).")
    sep = summary.get("separate_models")
    if sep:
        g, st = sep["serving"]["gpus"], sep["total_cost"]
        text += (f" {sep['tasks']:,} separately tuned {REGISTRY[sep['method']].label} models (one per task, C3.6) would "
                 f"need {g['count']:,} × {g['type']}: ${st['usd_per_month']:,.0f}/month, ${st['usd']:,.0f} in total.")
    small = summary.get("smaller_base")
    if small:
        st = small["total_cost"]
        text += (f" A prompt-tuned {small['model']} instead (C4.1: a smaller model prompt-tuned can stand in for a "
                 f"larger one): ${st['usd']:,.0f} in total, ${st['usd_per_month']:,.0f}/month"
                 + ("" if small["fits"] else " (its tuning does not fit the tuning GPU as planned)") + ".")
    if not summary["ranked_by_total"]:
        text += " Ranked by fit, not total (set priority to cost to rank by tuning plus hosting)."
    elif any(b is not cheapest and b.total_cost and b.total_cost["usd"] <= t["usd"] for b in priced):
        text += f" Totals within {TIE:.0%} count as equal; the better fit ranks first."
    return text
