"""The order of the methods and the final consistency check (issue 25).

Best first, by the task's criteria before the limits:

1. methods with nothing to estimate (``not applicable``) last;
2. a method one of whose own reasons rules it out for a stated goal (``rules_out``: e.g. "does not shrink the
   model" under a small-footprint goal, "no reason to distil" without a serving goal) after every method
   that is not ruled out;
3. poor fits (by score) after the methods the task allows;
4. only then memory and budget: within budget (or at most NEAR_LIMIT over it) with headroom; the same but
   tight (C6.12); further over budget, least over first (C6.10), runs within OVER_BUDGET_TIE of the
   least-over one ordered by score; does not fit, least memory first;
5. inside a group, higher score first; equal scores in the registry's order (cheapest method first).

So a time or money limit decides only between methods the task allows: the best of them over a limit
stays first, with what would make it fit (fewer epochs, a share of the data, more or other GPUs).
A priority that ranks by whole cost (#24's hosting plus tuning, with traffic given) belongs in step 4's
budget key: ``_limits_key`` is the one place.
"""
from __future__ import annotations

from estimators.methods import REGISTRY

METHODS = tuple(REGISTRY)
OVER_BUDGET_TIE = 1.25
"""Over-budget runs within 25 % of the least-over one are ranked by score (estimates are not that exact)."""
NEAR_LIMIT = 1.25
"""A run at most 1.25x over its limit meets it with 80 % of the planned tokens (1.6 of 2 epochs): it ranks
with the runs within the limit, by score, and says what fits — the best method with a small change beats a
weaker one that happens to be under the limit."""


def ruled_out(a) -> bool:
    """One of the method's own reasons says it is the wrong tool for a stated goal."""
    return any(r.get("rules_out") for r in a.reasons)


def _class(a) -> tuple:
    """Steps 1-3: applicability, ruled out, poor fit."""
    return (a.estimate is None, ruled_out(a), a.verdict == "poor fit")


def _limits_key(a, least: dict) -> tuple:
    """Step 4: memory and budget, for methods of one class."""
    if not a.fits:
        return (4, a.estimate["memory"]["total"])
    if not a.within_budget:
        if a.over_by <= NEAR_LIMIT:  # meets the limit with a little less data: competes on score
            return (0 if a.memory_fit == "fits" else 1, 0)
        near = a.over_by <= least[_class(a)] * OVER_BUDGET_TIE
        return (2, 0 if near else a.over_by)
    return (0 if a.memory_fit == "fits" else 1, 0)


def ranked(advice: list) -> list:
    over = [a for a in advice if a.estimate is not None and a.fits and not a.within_budget]
    least: dict = {}
    for a in over:
        least[_class(a)] = min(least.get(_class(a), a.over_by), a.over_by)

    def key(a):
        order = METHODS.index(a.method)
        if a.estimate is None:
            return (_class(a), (5, 0), 0, order)
        return (_class(a), _limits_key(a, least), -a.score, order)

    return first_consistent(sorted(advice, key=key))


def first_consistent(advice: list) -> list:
    """The final check: if the first method is ruled out by its own reasons while an estimated method
    is not, the best such method moves up (the sort above already guarantees it; this keeps it true for
    any later change of the keys)."""
    if advice and ruled_out(advice[0]):
        ok = next((a for a in advice if a.estimate is not None and not ruled_out(a)), None)
        if ok is not None:
            return [ok] + [a for a in advice if a is not ok]
    return advice


def consistency_problems(advice: list) -> list[str]:
    """What a practitioner would refuse to sign in a ranking (empty when none), for tests and checks:
    the first method ruled out by its own reasons while another is not; a first method over a limit
    that names nothing that would fit."""
    if not advice:
        return ["no recommendations"]
    top, problems = advice[0], []
    if ruled_out(top) and any(a.estimate is not None and not ruled_out(a) for a in advice):
        why = next(r["text"] for r in top.reasons if r.get("rules_out"))
        problems.append(f"{top.method} ranks first although its own reason rules it out: {why}")
    if top.estimate is not None and top.fits and not top.within_budget:
        fit = top.budget_fit or {}
        if fit.get("data_share") is None and fit.get("hardware") is None:
            problems.append(f"{top.method} is over the budget and names nothing that would fit")
    return problems
