"""Property tests of the advice (issue 25): over every scenario in tests/ and over random questionnaires,
the first recommendation is never a method its own reasons rule out (while another is not), limits decide
only between methods the task allows, and an answer over a limit names what would fit.

Two tiers. ``test_ranking_over_random_questionnaires`` runs the real rules (every catalog model, random
answers) on 1,000 questionnaires with the memory and budget outcomes drawn at random instead of estimated,
which covers far more fit/budget combinations than real hardware would produce, in about a second.
``test_end_to_end_random_questionnaires`` runs the whole ``recommend`` (estimates, feasibility, budget
search) on a seeded sample; the slow variant runs 1,000 of them.
"""
import random

import pytest

from advisor.answers import DISTANCES, GOALS, PRIORITIES, TASKS, Answers
from advisor.ranking import NEAR_LIMIT, consistency_problems, ranked, ruled_out
from advisor.recommend import METHODS, MethodAdvice, _verdict, recommend
from advisor.rules import Context, apply_rules
from estimators.catalog import gpus, model_by_id, model_configs
from tests import test_recommend, test_scenarios
from tests.conftest import recommend_once

MODELS = sorted(model_configs())
GPUS = sorted(gpus())


def random_answers(rng: random.Random, budgets: bool = True) -> dict:
    goals = rng.sample(GOALS, rng.randint(1, 3))
    out = {"task": rng.choice(TASKS), "goals": goals, "num_examples": int(10 ** rng.uniform(1.5, 6.5)),
           "avg_tokens_per_example": int(10 ** rng.uniform(1.5, 3.3)), "domain_distance": rng.choice(DISTANCES),
           "model": rng.choice(MODELS), "gpu": rng.choice(GPUS), "num_gpus": rng.choice((1, 1, 2, 4, 8)),
           "priority": rng.choice(PRIORITIES), "num_tasks": rng.choice((1, 1, 1, 3, 20, 2000))}
    if budgets and rng.random() < 0.5:
        out["max_hours"] = round(10 ** rng.uniform(-1, 2), 2)
    if budgets and rng.random() < 0.3:
        out["max_cost_usd"] = round(10 ** rng.uniform(0, 3.5), 2)
    return out


def _synthetic(method: str, score: float, reasons: list, rng: random.Random) -> MethodAdvice:
    """A method's advice with the memory and budget outcome drawn at random (shape as recommend's)."""
    if rng.random() < 0.1:
        return MethodAdvice(method, score, False, False, reasons, [], {}, None, "—", verdict="not applicable")
    fits = rng.random() < 0.8
    within = fits and rng.random() < 0.5
    over = None if within or not fits else 1 + rng.random() * 5
    fit = None if over is None else {"over_by": over, "data_share": 1 / over, "epochs": 2 / over, "hardware": None,
                                     "limit": "1 h time budget", "within": False, "text": "over"}
    verdict, _ = _verdict(score, reasons)
    est = {"memory": {"total": rng.randint(1, 10**12)}}
    return MethodAdvice(method, score, fits, within, reasons, [], {}, est, "m", verdict=verdict,
                        memory_fit=(rng.choice(("fits", "tight")) if fits else "does not fit"), budget_fit=fit)


def _check_order(advice: list, where: str):
    """The ranking's promises, checked pair by pair from the outside."""
    assert not consistency_problems(advice), (where, consistency_problems(advice))
    est = [a for a in advice if a.estimate is not None]
    assert advice[:len(est)] == est, f"{where}: methods without an estimate come last"
    classes = [(ruled_out(a), a.verdict == "poor fit") for a in est]
    assert classes == sorted(classes), f"{where}: ruled out, then poor fits, after the methods the task allows"
    for cls in set(classes):
        group = [a for a, c in zip(est, classes) if c == cls]
        fitting = [a.fits for a in group]
        assert fitting == sorted(fitting, reverse=True), f"{where}: memory decides only inside a class"
        # A run at most NEAR_LIMIT over competes with the runs within the limit (it meets it with a bit less data).
        within = [a.within_budget or a.over_by <= NEAR_LIMIT for a in group if a.fits]
        assert within == sorted(within, reverse=True), f"{where}: the budget decides only inside a class"


def test_ranking_over_random_questionnaires():
    rng = random.Random(25)
    specs = {m: model_by_id(m) for m in MODELS}
    seen_ruled_first = 0
    for i in range(1000):
        a = Answers.from_dict(random_answers(rng))
        scored = apply_rules(Context(a, specs[a.model]), METHODS)
        advice = ranked([_synthetic(m, *scored[m], rng) for m in METHODS])
        _check_order(advice, f"questionnaire {i}: {a}")
        seen_ruled_first += ruled_out(advice[0])
    # Every method ruled out (a small-footprint goal with no estimated student) happens; it is not the rule.
    assert seen_ruled_first < 200


def _all_scenarios():
    for name, kw, _ in test_scenarios.S:
        yield name, {**test_scenarios.BASE, **kw}
    base = {"task": "generation", "goals": ["specialization"], "num_examples": 2000, "domain_distance": "moderate",
            "model": "llama-3.1-8b", "gpu": "a100-80gb"}
    for name, kw, _, _ in test_recommend.SCENARIOS:
        yield name, {**base, **kw}
    from tests import test_advice_scenarios
    for name, kw, _ in test_advice_scenarios.CASES:
        yield name, {**test_advice_scenarios.BASE, **kw}


def _check_recommendation(rec, where: str):
    advice = rec.recommendations
    _check_order(advice, where)
    top = advice[0]
    if top.estimate is not None and top.fits and not top.within_budget:  # over a limit: name what fits
        fit = top.budget_fit
        assert fit["data_share"] is not None and 0 < fit["data_share"] < 1, (where, fit)
        assert f"{fit['epochs']:.2g} epochs" in rec.summary, (where, rec.summary)
    for a in advice:
        if a.estimate is not None:
            assert a.training["steps_per_epoch"] >= 1 and any(r["criterion"] == "C6.18" for r in a.reasons)
            assert a.route in (None, "on-GPU", "sharded", "offloaded")


def test_every_scenario_in_the_tests_is_consistent():
    for name, kw in _all_scenarios():
        _check_recommendation(recommend_once(kw), name)  # the tables' own tests share the result


@pytest.mark.parametrize("count", [10, pytest.param(1000, marks=pytest.mark.slow)])  # fast tier: 10
def test_end_to_end_random_questionnaires(count):
    rng = random.Random(2025)
    for i in range(count):
        kw = random_answers(rng)
        try:
            a = Answers.from_dict(kw)
        except Exception:  # noqa: BLE001 - a random draw the validation refuses is not a case
            continue
        _check_recommendation(recommend(a), f"questionnaire {i}: {kw}")
