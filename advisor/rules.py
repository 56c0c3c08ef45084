"""The advisor's rules, as data. Each rule: an id, a condition on the answers (and the model), the
change it makes to each method's score, the criterion of CRITERIA.md it rests on, and a sentence
for the user. Scores start at 0.5 and are clipped to [0, 1] after every rule has spoken.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from advisor.answers import Answers
from estimators.spec import ModelSpec

SMALL_DATA = 1_000      # C6.1: tens to ~1,000 examples are enough for prompt tuning or LoRA
LARGE_DATA = 100_000    # C3.8 / C6.1: full tuning pays off from hundreds of thousands of examples
TUNING_GOALS = {"style", "specialization", "domain_knowledge", "proprietary_data", "edge_cases", "multi_task",
                "small_footprint", "reduce_inference_cost"}


@dataclass(frozen=True)
class Context:
    answers: Answers
    spec: ModelSpec

    def goal(self, name: str) -> bool:
        return name in self.answers.goals


@dataclass(frozen=True)
class Rule:
    id: str
    criterion: str
    when: Callable[[Context], bool]
    effects: dict
    """method id -> score change (positive favours the method)."""
    text: str


PEFT = ("lora", "qlora", "adapters")

RULES: tuple[Rule, ...] = (
    Rule("style", "C3.1", lambda c: c.goal("style"), {"lora": .15, "qlora": .12, "adapters": .1, "full": .05, "dora": .12},
         "Changing style or tone is a classic reason to fine tune; adapters such as LoRA capture it well."),
    Rule("style-cheap", "C4.2", lambda c: c.goal("style") and c.answers.priority != "accuracy",
         {"prompt_tuning": .12}, "Prompt tuning adjusts style at the lowest cost when the base model is capable."),
    Rule("specialize", "C3.2", lambda c: c.goal("specialization"),
         {"lora": .12, "qlora": .1, "full": .1, "adapters": .1, "dora": .12},
         "Specializing a general model for one task is what fine tuning is for."),
    Rule("domain-knowledge", "C3.3", lambda c: c.goal("domain_knowledge"),
         {"full": .15, "lora": .08, "qlora": .05, "adapters": .05, "prompt_tuning": -.1, "dora": .1},
         "New domain vocabulary or knowledge needs weights to change; the more of it, the more full tuning pays."),
    Rule("proprietary", "C3.4", lambda c: c.goal("proprietary_data"),
         {"lora": .08, "qlora": .08, "full": .08, "adapters": .08, "dora": .08},
         "Tuning on your own data builds it into the model (and keeps it off third-party prompts)."),
    Rule("edge-cases", "C3.5", lambda c: c.goal("edge_cases"), {"full": .08, "lora": .08, "qlora": .06, "adapters": .06, "dora": .08},
         "Edge cases the base model never saw are learned from examples by fine tuning."),
    Rule("many-tasks", "C3.6", lambda c: c.goal("multi_task") or c.answers.num_tasks > 1,
         {"lora": .2, "qlora": .18, "adapters": .18, "prompt_tuning": .1, "full": -.25, "distillation": -.15,
          "dora": .18},
         "Many tasks on one base: small per-task adapters share the base model; full tuning per task costs a "
         "whole model each and risks forgetting general skills."),
    Rule("inference-cost", "C4.1", lambda c: c.goal("reduce_inference_cost"),
         {"prompt_tuning": .15, "distillation": .2, "lora": .03},
         "For cheaper inference at scale, a prompt-tuned or distilled smaller model can do the work of a larger one."),
    Rule("output-format", "C4.3", lambda c: c.goal("output_format"), {"prompt_tuning": .12, "lora": .08, "qlora": .06},
         "A reliable output format is learned cheaply; prompt tuning also shortens every prompt."),
    Rule("factual-recall", "C5.1", lambda c: c.goal("factual_recall"),
         {"full": -.15, "lora": -.1, "qlora": -.1, "adapters": -.1, "prompt_tuning": -.1, "distillation": -.1,
          "dora": -.1},
         "Tuning barely improves factual recall: give the model the facts at inference time (retrieval)."),
    Rule("small-data", "C6.1", lambda c: c.answers.num_examples < SMALL_DATA,
         {"prompt_tuning": .1, "lora": .1, "qlora": .1, "adapters": .1, "full": -.2, "dora": .08},
         f"Under {SMALL_DATA:,} examples, parameter-efficient methods start well; full tuning tends to overfit."),
    Rule("small-data-peft", "C3.8", lambda c: c.answers.num_examples < 10 * SMALL_DATA,
         {"lora": .05, "adapters": .05, "full": -.05},
         "Full tuning typically needs large data sets; adapters and LoRA help even with small ones."),
    Rule("large-data", "C3.8", lambda c: c.answers.num_examples >= LARGE_DATA,
         {"full": .2, "lora": .03, "prompt_tuning": -.1},
         f"With {LARGE_DATA:,}+ examples there is enough signal for full tuning to pay off."),
    Rule("far-domain", "C3.7", lambda c: c.answers.domain_distance == "far",
         {"full": .2, "prompt_tuning": -.2, "lora": -.03},
         "A domain far from pretraining is where full tuning is most reliable."),
    Rule("far-domain-lora", "C6.2", lambda c: c.answers.domain_distance == "far",
         {"lora": -.04, "qlora": -.04},
         "LoRA learns less than full tuning and trails it on large domain shifts."),
    Rule("close-domain", "C2.1", lambda c: c.answers.domain_distance == "close",
         {"prompt_tuning": .15, "lora": .05, "full": -.1},
         "A task close to what the model already knows suits prompt tuning and light adapters."),
    Rule("small-model-prompt", "C4.5", lambda c: c.spec.active_params < 3e9,
         {"prompt_tuning": -.2},
         "Prompt tuning only catches up with tuning weights at billions of parameters; this model is smaller."),
    Rule("deep-knowledge-prompt", "C4.5", lambda c: c.goal("domain_knowledge") or c.answers.task in ("code",),
         {"prompt_tuning": -.1}, "Prompt tuning is weak when the task needs deep specialized knowledge."),
    Rule("accuracy-first", "C2.5", lambda c: c.answers.priority == "accuracy",
         {"full": .15, "lora": .05, "qlora": -.03, "prompt_tuning": -.1},
         "When accuracy matters most and its cost is justified, full tuning is the strongest option."),
    Rule("cost-first", "C2.4", lambda c: c.answers.priority == "cost",
         {"prompt_tuning": .12, "qlora": .12, "lora": .06, "full": -.15, "distillation": -.05},
         "When cost matters most: prompt tuning and QLoRA are the cheapest to tune and host."),
    Rule("quantization-risk", "C6.4", lambda c: c.answers.priority == "accuracy",
         {"qlora": -.05}, "QLoRA's 4-bit base can cost some quality and runs ~1.4–1.5× slower than LoRA."),
    Rule("small-device", "C2.7", lambda c: c.goal("small_footprint"),
         {"distillation": .35, "prompt_tuning": .02, "full": -.05},
         "For phones, edge devices or tight latency, distil into a smaller student that keeps most of the quality."),
    Rule("adapters-small-data", "C2.6", lambda c: c.answers.num_examples < 10 * SMALL_DATA,
         {"adapters": .03}, "Adapter layers work with small data sets and resist forgetting and overfitting."),
    Rule("no-reason-to-distil", "C2.7", lambda c: not (c.goal("small_footprint") or c.goal("reduce_inference_cost")),
         {"distillation": -.2}, "Distillation pays off when serving cost or size is the constraint, not otherwise."),
    Rule("dora-quality", "C6.9", lambda c: c.answers.priority == "accuracy" or c.answers.domain_distance == "far",
         {"dora": .08}, "DoRA learns each weight's magnitude apart from its direction and closes part of LoRA's gap "
                        "to full tuning at the same rank."),
    Rule("dora-cost", "C6.9", lambda c: c.answers.priority == "cost", {"dora": -.05},
         "DoRA's steps are slower than LoRA's (weight norms recomputed every micro-batch): more GPU-hours."),
    Rule("lora-default", "C2.5", lambda c: True, {"lora": .05},
         "LoRA is a strong general default: high quality, less overfitting, small artifacts."),
)

CAVEATS = {
    "full": ["Risk of catastrophic forgetting of general skills (C3.6): evaluate on general tasks too.",
             "Overfits small data sets (C3.8): hold out a validation set and stop early.",
             "Produces and serves a whole new model per task (C2.4)."],
    "lora": ["May fall short of full tuning on large domain shifts (C6.2)."],
    "qlora": ["4-bit quantization of the base can lower quality (C2.1); compare with a LoRA run if you can.",
              "Steps are ~1.4–1.5× slower than LoRA because weights are dequantized (C6.4)."],
    "prompt_tuning": ["Weak on models below a few billion parameters and on tasks needing deep knowledge (C4.5).",
                      "Saves little memory at ~3B, where activations dominate (C6.3)."],
    "adapters": ["Extra layers add inference latency and architectural complexity (C2.6)."],
    "dora": ["Steps are slower than LoRA's: every micro-batch recomputes the adapted weights' norms (C6.9).",
             "Slightly more memory than LoRA: magnitude vectors and the extra outputs they keep (C6.9)."],
    "distillation": ["Needs the teacher's forward passes: extra compute per step (C2.7).",
                     "Teacher and student must share a tokenizer (C6.7)."],
}


def apply_rules(ctx: Context, methods: tuple[str, ...]) -> dict[str, tuple[float, list[dict]]]:
    """Score each method and collect the reasons that moved it (most influential first)."""
    scores = {m: 0.5 for m in methods}
    reasons: dict[str, list[tuple[float, dict]]] = {m: [] for m in methods}
    for rule in RULES:
        if not rule.when(ctx):
            continue
        for method, delta in rule.effects.items():
            if method in scores:
                scores[method] += delta
                reasons[method].append((delta, {"criterion": rule.criterion, "rule": rule.id,
                                                "effect": "+" if delta > 0 else "-", "text": rule.text}))
    return {m: (round(min(max(scores[m], 0.0), 1.0), 3),
                [r for _, r in sorted(reasons[m], key=lambda x: -abs(x[0]))]) for m in methods}
