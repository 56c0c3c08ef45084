"""Recommendation scenarios written from CRITERIA.md: the top method (or a small allowed set) and the
criteria the reasons must cite."""
import json
import subprocess
import sys

import pytest

from advisor.answers import Answers
from advisor.recommend import recommend
from advisor.rules import RULES
from estimators.errors import InputError
from estimators.methods import REGISTRY
from tests.conftest import ROOT, recommend_once


BASE = {"task": "generation", "goals": ["specialization"], "num_examples": 2000, "domain_distance": "moderate",
        "model": "llama-3.1-8b", "gpu": "a100-80gb"}


def answers(**kw):
    return Answers.from_dict({**BASE, **kw})


def cited(rec, method):
    return {r["criterion"] for a in rec.recommendations if a.method == method for r in a.reasons}


# (name, answers, allowed top methods, criteria that must be cited for the top method)
SCENARIOS = [
    ("brand voice chatbot, 8B, 2k examples, one 24 GB GPU",
     dict(task="chat", goals=["style"], gpu="rtx-4090"), {"lora", "qlora"}, {"C3.1"}),
    ("brand voice on an L4", dict(task="chat", goals=["style"], gpu="l4"), {"lora", "qlora"}, {"C3.1"}),
    ("many tasks on one base", dict(goals=["multi_task", "specialization"], num_tasks=8),
     {"lora", "qlora", "adapters"}, {"C3.6"}),
    ("many tasks via num_tasks only", dict(goals=["proprietary_data"], num_tasks=5), {"lora", "qlora", "adapters"}, {"C3.6"}),
    ("far domain, millions of examples, 8×H100, accuracy first",
     dict(goals=["domain_knowledge", "specialization"], domain_distance="far", num_examples=2_000_000,
          gpu="h100-sxm", num_gpus=8, priority="accuracy", avg_tokens_per_example=512), {"full"}, {"C3.7", "C3.8"}),
    ("legal drafting, far domain, 500k examples, 8×A100", dict(task="generation", goals=["domain_knowledge"],
     domain_distance="far", num_examples=500_000, gpu="a100-80gb", num_gpus=8, priority="accuracy"), {"full"}, {"C3.7"}),
    ("phone deployment with a large teacher", dict(goals=["small_footprint", "specialization"],
     model="llama-3.1-70b", gpu="h100-sxm", num_gpus=8, num_examples=50_000), {"distillation"}, {"C2.7"}),
    ("edge deployment, 8B teacher on one H100", dict(goals=["small_footprint"], gpu="h100-sxm"), {"distillation"}, {"C2.7"}),
    ("close task, tight compute, large model", dict(goals=["output_format"], domain_distance="close",
     model="qwen2.5-32b", gpu="a100-80gb", priority="cost", num_examples=500), {"prompt_tuning"}, {"C2.1", "C4.3"}),
    ("close task, cheap inference, 14B", dict(goals=["reduce_inference_cost", "output_format"], domain_distance="close",
     model="qwen2.5-14b", gpu="h100-sxm", priority="cost", num_examples=300), {"prompt_tuning"}, {"C4.1"}),
    ("70B on one 24 GB GPU", dict(model="llama-3.1-70b", gpu="rtx-4090"), {"qlora"}, {"C2.2"}),
    ("70B on one L4", dict(model="llama-3.1-70b", gpu="l4", goals=["style"]), {"qlora"}, set()),
    ("small data, 8B, A100", dict(num_examples=200, goals=["specialization"]), {"lora", "adapters", "qlora"}, {"C6.1"}),
    ("medical domain knowledge, 30k examples, one A100", dict(goals=["domain_knowledge"], num_examples=30_000,
     domain_distance="far"), {"lora", "qlora", "full"}, {"C3.3"}),
    ("cost priority on a T4", dict(model="llama-3.2-3b", gpu="t4", priority="cost", goals=["style"]),
     {"qlora", "lora"}, {"C2.4"}),
    ("proprietary data, 1B model, A10G", dict(model="llama-3.2-1b", gpu="a10g", goals=["proprietary_data"]),
     {"lora", "qlora", "adapters"}, {"C3.4"}),
    ("small model: prompt tuning penalised", dict(model="smollm2-135m", gpu="t4", goals=["style"], domain_distance="close"),
     {"lora", "adapters", "qlora"}, {"C3.1"}),
    ("edge cases, 50k examples, moderate domain, 2×H100", dict(goals=["edge_cases"], num_examples=50_000,
     gpu="h100-sxm", num_gpus=2), {"lora", "full", "adapters"}, {"C3.5"}),
    ("classification with BERT", dict(task="classification", model="bert-base-uncased", gpu="t4",
     goals=["specialization"]), {"lora", "adapters", "qlora", "full"}, {"C3.2"}),
    ("code model, far domain, 1M examples, 8×H200", dict(task="code", goals=["specialization", "domain_knowledge"],
     domain_distance="far", num_examples=1_000_000, gpu="h200", num_gpus=8, priority="accuracy"), {"full"}, {"C3.7"}),
    ("accuracy first but small data", dict(priority="accuracy", num_examples=300), {"lora", "adapters"}, {"C6.1"}),
    # Since issue 22 the one search runs 8B full tuning on 8x H100 under FSDP without checkpointing, at about
    # LoRA's cost; on one H100 full tuning needs checkpointing and 8-bit AdamW (~$63 at 200k x 1,024 tokens,
    # 2 epochs) against LoRA's ~$42 (issue 21: the H100's efficiency from its measured GEMM rate, the
    # optimizer's passes counted): a budget between the two, more than NEAR_LIMIT (1.25x) under full's.
    ("budget too small for full on one H100", dict(goals=["domain_knowledge"], domain_distance="far",
     num_examples=200_000, gpu="h100-sxm", num_gpus=1, avg_tokens_per_example=1024, max_cost_usd=46,
     epochs=2),  # issue 25: epochs now follow the data; this case was priced at 2
     {"lora", "adapters", "dora"}, {"C3.3"}),  # issue 25: DoRA, a hair over, competes on score (NEAR_LIMIT)
]


@pytest.mark.parametrize("name,kw,allowed,criteria", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenario(name, kw, allowed, criteria):
    rec = recommend_once({**BASE, **kw})  # computed once per session (the property test re-checks it)
    top = rec.best
    assert top.method in allowed, f"{name}: got {[(a.method, a.score, a.fits) for a in rec.recommendations]}"
    assert criteria <= cited(rec, top.method), cited(rec, top.method)
    assert len(rec.recommendations) == len({a.method for a in rec.recommendations})


def test_factual_recall_means_dont_tune_with_rag():
    rec = recommend(answers(task="question_answering", goals=["factual_recall"]))
    assert rec.dont_tune and rec.alternative == "rag"
    assert "C5.1" in cited(rec, "full") and len(rec.recommendations) == len(REGISTRY)  # methods still listed


def test_factual_recall_with_style_still_tunes():
    # Issue 11: retrieval stays the advice for the facts (alternative "rag"), with tuning for the style.
    rec = recommend(answers(task="chat", goals=["factual_recall", "style"]))
    assert not rec.dont_tune and rec.alternative == "rag" and rec.hybrid["tune"] == rec.best.method


def test_70b_on_24gb_nothing_fits_qlora_closest():
    rec = recommend(answers(model="llama-3.1-70b", gpu="rtx-4090"))
    assert not any(a.fits for a in rec.recommendations)
    assert rec.best.method == "qlora" and rec.summary.startswith("Nothing fits")
    assert "fits on" in rec.best.reasons[0]["text"]


def test_does_not_fit_is_ranked_last_with_a_hint():
    rec = recommend(answers(model="llama-3.1-70b", gpu="rtx-4090"))
    full = next(a for a in rec.recommendations if a.method == "full")
    assert not full.fits and full.reasons[0]["criterion"] == "C2.2"
    assert "fits on" in full.reasons[0]["text"]  # says what would fit
    fitting = [a.fits for a in rec.recommendations]
    assert fitting == sorted(fitting, reverse=True)


def test_over_budget_ranked_below_with_reason():
    rec = recommend(answers(goals=["domain_knowledge"], domain_distance="far", num_examples=200_000,
                            gpu="h100-sxm", num_gpus=1, avg_tokens_per_example=1024, max_cost_usd=46,
                            epochs=2))  # one H100 (issue 22: on 8 the searched full plan costs about LoRA's)
    full = next(a for a in rec.recommendations if a.method == "full")
    assert full.fits and not full.within_budget and full.reasons[0]["criterion"] == "C2.3"
    assert "over the $46 budget" in full.reasons[0]["text"]
    assert rec.recommendations.index(full) > rec.recommendations.index(rec.best)


def test_feasibility_turns_on_memory_savers():
    rec = recommend(answers(gpu="rtx-4090", goals=["style"]))
    lora = next(a for a in rec.recommendations if a.method == "lora")
    assert lora.fits and lora.settings["gradient_checkpointing"] is True
    assert lora.estimate["fits"] is True and lora.estimate["memory"]["total"] <= 24 * 1024**3


def test_deterministic():
    a = answers(goals=["style", "multi_task"], num_tasks=3)
    assert recommend(a).to_json() == recommend(a).to_json()


def test_every_criterion_has_a_rule():
    criteria = {r.criterion for r in RULES}
    for c in ("C2.1", "C2.4", "C2.5", "C2.6", "C2.7", "C3.1", "C3.2", "C3.3", "C3.4", "C3.5", "C3.6", "C3.7",
              "C3.8", "C4.1", "C4.2", "C4.3", "C4.5", "C5.1", "C6.1", "C6.2", "C6.4"):
        assert c in criteria, c


@pytest.mark.parametrize("data,needles", [
    ({}, ["missing 'task'", "missing 'goals'", "missing 'model'", "missing 'gpu'"]),
    ({"task": "chat", "goals": ["telepathy"], "num_examples": -5, "domain_distance": "near", "model": "x",
      "gpu": "y"}, ["unknown goal(s) 'telepathy'", "num_examples must be a whole number", "domain_distance"]),
    ({"task": "dance", "goals": [], "num_examples": 10, "domain_distance": "far", "model": "x", "gpu": "y",
      "colour": 1}, ["unknown field 'colour'"]),
])
def test_bad_answers_list_every_problem(data, needles):
    with pytest.raises(InputError) as e:
        Answers.from_dict(data)
    assert all(n in str(e.value) for n in needles), str(e.value)


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "advisor", *args], capture_output=True, text=True, cwd=ROOT,
                          input=stdin)


def test_recommend_cli_json_and_text(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps({"task": "chat", "goals": ["style"], "num_examples": 2000, "domain_distance": "moderate",
                             "model": "llama-3.1-8b", "gpu": "rtx-4090"}))
    r = run_cli("recommend", "--answers", str(f), "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["dont_tune"] is False and j["alternative"] is None
    assert len(j["recommendations"]) == len(REGISTRY)
    for r in j["recommendations"]:  # each method's plan carries exactly the settings and estimate shown
        if r["estimate"] is not None:
            assert r["plan"]["method"] == r["method"] and r["plan"]["estimate"] == r["estimate"]
            assert {k: v for k, v in r["settings"].items() if k in r["plan"]["settings"]} == r["plan"]["settings"]
    first = j["recommendations"][0]
    assert {"method", "score", "fits", "reasons", "caveats", "settings", "estimate"} <= set(first)
    assert first["reasons"][0]["criterion"].startswith("C") and first["estimate"]["memory"]["total"] > 0
    text = run_cli("recommend", "--answers", "-", stdin=f.read_text())
    assert text.returncode == 0 and "rank" in text.stdout and "[C3.1]" in text.stdout


@pytest.mark.parametrize("content,needle", [
    ("{not json", "not valid JSON"),
    ('{"task": "chat"}', "missing 'goals'"),
    ('{"task": "chat", "goals": ["x"], "num_examples": -1, "domain_distance": "far", "model": "m", "gpu": "g"}',
     "unknown goal(s) 'x'"),
    ('[1, 2]', "expected a JSON object"),
])
def test_recommend_cli_bad_answers(tmp_path, content, needle):
    f = tmp_path / "a.json"
    f.write_text(content)
    r = run_cli("recommend", "--answers", str(f))
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_recommend_cli_unknown_model_and_missing_file(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps({"task": "chat", "goals": ["style"], "num_examples": 10, "domain_distance": "far",
                             "model": "nope", "gpu": "l4"}))
    r = run_cli("recommend", "--answers", str(f))
    assert r.returncode == 2 and "unknown model 'nope'" in r.stderr
    r = run_cli("recommend", "--answers", str(tmp_path / "missing.json"))
    assert r.returncode == 2 and "cannot read answers file" in r.stderr
