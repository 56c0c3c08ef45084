"""The rules as a table (issue 25): a criterion that speaks about a class of methods applies to every
method of the class, in the direction the criterion says; every sentence carries the case's numbers; a
rule that rules a method out only ever counts against it."""
import re

import pytest

from advisor.criteria import CRITERIA, NAMED
from advisor.rules import RULES
from estimators.methods import REGISTRY

CELLS = [(c, m, sign) for c, methods in NAMED.items() for m, sign in methods.items()]


def test_named_criteria_are_explained_and_name_registry_methods():
    assert set(NAMED) <= set(CRITERIA)
    assert {m for _, m, _ in CELLS} <= set(REGISTRY)


@pytest.mark.parametrize("criterion,method,sign", CELLS, ids=[f"{c}-{m}" for c, m, _ in CELLS])
def test_each_criterion_applies_to_each_method_it_names(criterion, method, sign):
    rules = [r for r in RULES if r.criterion == criterion]
    assert rules, f"no rule cites {criterion}"
    for rule in rules:
        assert method in rule.effects, f"rule {rule.id} ({criterion}) leaves out {method}"
        assert rule.effects[method] * sign > 0, f"rule {rule.id} moves {method} against {criterion}'s direction"
        assert rule.text_for(method)


def test_far_domain_low_capacity_penalty_hits_bottleneck_adapters_too():
    rule = next(r for r in RULES if r.id == "far-domain-lora")
    low_capacity = {"lora", "qlora", "dora", "adapters"}
    assert low_capacity <= {m for m, d in rule.effects.items() if d < 0}


def test_every_sentence_carries_numbers_or_facts_of_the_case():
    """No stock line: each rule's sentence for each method it moves has at least one field filled from the
    case (model size, examples, tokens, parameters, goals...)."""
    for rule in RULES:
        for method in rule.effects:
            text = rule.text_for(method)
            assert re.search(r"\{\w+\}", text), f"rule {rule.id} gives {method} a stock line: {text}"


def test_rules_out_only_counts_against_a_method():
    for rule in RULES:
        for method in rule.rules_out:
            assert rule.effects.get(method, 0) < 0, (rule.id, method)


def test_no_rule_fires_for_every_case():
    from advisor.answers import Answers
    from advisor.rules import Context
    from estimators.catalog import model_by_id

    a = Answers.from_dict({"task": "translation", "goals": ["edge_cases"], "num_examples": 5000,
                           "domain_distance": "moderate", "model": "llama-3.1-8b", "gpu": "a100-80gb"})
    ctx = Context(a, model_by_id("llama-3.1-8b"))
    fired = {r.id for r in RULES if r.when(ctx)}
    assert "lora-default" not in {r.id for r in RULES}
    assert fired == {"edge-cases", "small-data-peft", "adapters-small-data", "prompt-mid-model", "full-thin-data",
                     "no-reason-to-distil"}, fired
