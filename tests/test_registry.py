"""The method registry is the one place a method is defined: every surface finds every method there.
Adding a method without its estimator entry, tuner module, rules, caveats, UI label or export recipe
fails here."""
import inspect

import pytest

from advisor import rules
from advisor.recommend import METHODS as RECOMMENDED
from estimators.catalog import model_by_id
from estimators.methods import METHOD_IDS, REGISTRY, label
from estimators.plan import Plan, method_settings
from estimators.setup import METHODS as SETUP_METHODS
from estimators.setup import TrainSetup


def test_design_method_ids_and_labels():
    assert set(METHOD_IDS) == {"prompt_tuning", "lora", "qlora", "full", "adapters", "distillation", "dora"}
    assert {m: label(m) for m in METHOD_IDS} == {
        "prompt_tuning": "Prompt tuning", "lora": "LoRA", "qlora": "QLoRA", "full": "Full fine-tuning",
        "adapters": "Adapter layers", "distillation": "Distillation", "dora": "DoRA"}
    assert SETUP_METHODS == METHOD_IDS and set(RECOMMENDED) == set(METHOD_IDS)


@pytest.mark.parametrize("method", METHOD_IDS)
def test_every_surface_has_the_method(method):
    spec = REGISTRY[method]
    assert spec.id == method and spec.label and spec.summary and spec.default_lr > 0
    # Settings: every method setting either feeds the estimators (a TrainSetup field) or the run only.
    for s in spec.settings:
        assert s.check(s.default) is None or s.default is None, s
    # Estimate: a plan with the defaults (a teacher where one is needed) estimates.
    extra = {"teacher": "llama-3.1-8b"} if spec.needs_teacher else {}
    model = "llama-3.2-1b" if spec.needs_teacher else "llama-3.1-8b"
    plan = Plan.create(model, method, extra, {"gpu": "a100-80gb"}, {"num_examples": 100, "tokens_per_example": 200})
    e = plan.estimated().estimate
    assert e["params"]["trainable"] > 0 and e["memory"]["total"] > 0 and e["time"]["seconds"] > 0
    assert set(plan.settings) == {s.name for s in method_settings(method)}
    # Rules: at least one rule speaks about it, and it has caveats.
    assert any(method in r.effects for r in rules.RULES) and rules.CAVEATS.get(method)
    # Tuner module and recipe (what the trial and the exported train.py run).
    pytest.importorskip("torch")
    from tuners import methods

    module = methods.METHODS[method]
    assert module.ID == method and "recipe" in dict(inspect.getmembers(module))
    recipe = methods.recipe(plan, model_by_id(model))
    assert recipe["save"] in ("peft", "adapters", "model") and recipe["trains"] in ("all", "adapter")
    assert (recipe["save"] == "model") == (spec.artifact == "model") == spec.trains_base


def test_no_method_names_branch_outside_the_registry():
    """Method behaviour lives in the registry entries; the estimators, the advisor's search and the
    runner read attributes, not names (rules and caveats are data keyed by method, as designed)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"method\s*(==|!=|in|not in)\s*[\(\"']")
    offenders = []
    for folder in ("estimators", "advisor", "tuners", "ui"):
        for path in (root / folder).rglob("*.py"):
            if "methods" in path.parts:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    for path in (root / "advisor_app.py",):
        offenders += [f"{path.name}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
                      if pattern.search(line)]
    assert not offenders, "\n".join(offenders)


def test_train_setup_rejects_unknown_methods_with_the_list():
    with pytest.raises(ValueError, match="dora"):
        TrainSetup(method="ia3")
