"""The advisor's rules, as data. Each rule: an id, the criterion it rests on (CRITERIA.md, plus the
project's additions in advisor/criteria.py), a condition on the answers and the model, the change it
makes to each method's score, and a sentence per method (or per named group of methods) with the
numbers that triggered it.

Scores start at 0.5. The rules' sum is mapped into (0, 1) by a monotonic squash instead of being
clipped, so methods never tie at 0 or 1 (see ``squash``); remaining ties are broken in the registry's
order, cheapest method first (advisor/recommend.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

from advisor.answers import Answers
from advisor.caveats import CAVEATS  # noqa: F401  (each method's caveats, read beside its rules)
from advisor.facts import (FULL_RICH_TPP, FULL_THIN_TPP, LARGE, PHONE_PARAMS, PROMPT_PARITY, SMALL_DATA,
                           SMALL_MODEL, SMALLER_MODEL_MAX, Facts)
from estimators.spec import ModelSpec

TUNING_GOALS = {"style", "specialization", "domain_knowledge", "proprietary_data", "edge_cases", "multi_task",
                "small_footprint", "reduce_inference_cost"}
PEFT_GROUP = ("lora", "qlora", "dora", "adapters")
MANY_TENANTS = 10
"""From this many tasks on, per-task whole models dominate storage and serving (C3.6)."""


@dataclass(frozen=True)
class Context:
    answers: Answers
    spec: ModelSpec

    def goal(self, name: str) -> bool:
        return name in self.answers.goals

    @cached_property
    def facts(self) -> Facts:
        return Facts(self.answers, self.spec)


@dataclass(frozen=True)
class Rule:
    id: str
    criterion: str
    when: Callable[[Context], bool]
    effects: dict
    """method id -> score change (positive favours the method)."""
    texts: dict
    """method id, or a tuple of method ids whose text names them all -> a sentence; ``{name}`` fields
    are filled from ``Facts.values``."""
    rules_out: tuple = ()
    """Methods this rule says are the wrong tool for a stated goal or fact of the case (not merely weaker):
    their reasons carry ``"rules_out": true`` and the ranking puts them after every method that is not
    ruled out (advisor/recommend.py, issue 25)."""

    def text_for(self, method: str) -> str:
        for key, text in self.texts.items():
            if key == method or (isinstance(key, tuple) and method in key):
                return text
        raise KeyError(f"rule {self.id} has no text for {method}")


P = PEFT_GROUP
LR = ("lora", "qlora", "dora")
SHRINKLESS = ("full", "lora", "qlora", "dora", "adapters", "prompt_tuning")
"""Every method whose served model keeps the base's size (C6.17): all but distillation."""


def _others(c: Context) -> bool:
    """Factual recall comes with goals that tuning serves (the retrieval + tuning hybrid, C5.1)."""
    return c.goal("factual_recall") and bool(set(c.answers.goals) & TUNING_GOALS)


RULES: tuple[Rule, ...] = (
    # --- goals (C3, C4, C5) --------------------------------------------------------------------
    Rule("style", "C3.1", lambda c: c.goal("style"), {"lora": .15, "qlora": .12, "adapters": .1, "full": .05, "dora": .12}, {
        "lora": "A voice or tone is a small, low-rank change of behaviour: LoRA captures it in ~{lora_params} "
                "trainable parameters ({lora_share} of {params}).",
        "qlora": "QLoRA learns a voice or tone with the same ~{lora_params} adapter parameters as LoRA, over a "
                 "{w4} 4-bit base instead of {w16}.",
        "adapters": "Adapter layers learn a voice or tone in ~{adapter_params} parameters of inserted bottlenecks, "
                    "one set per style.",
        "dora": "DoRA learns a tone in ~{lora_params} low-rank parameters plus a magnitude per output.",
        "full": "Full fine-tuning also teaches a tone, but moves all {params} weights for what ~{lora_params} "
                "low-rank parameters already capture."}),
    Rule("style-cheap", "C4.2", lambda c: c.goal("style") and c.answers.priority != "accuracy"
         and c.facts.params >= PROMPT_PARITY, {"prompt_tuning": .12}, {
        "prompt_tuning": "At {params} parameters a soft prompt of {prompt_params} parameters adjusts style for the "
                         "least compute (Lester et al. 2021: parity with model tuning from ~10B)."}),
    Rule("specialize", "C3.2", lambda c: c.goal("specialization"),
         {"lora": .12, "qlora": .1, "full": .1, "adapters": .1, "dora": .12, "distillation": .05}, {
        "lora": "Specializing for one {task} task is LoRA's standard use: a ~{lora_params}-parameter task adapter on "
                "the frozen {params} base.",
        "qlora": "QLoRA specializes the model for {task} on a {w4} 4-bit base where LoRA keeps {w16} in 16 bits.",
        "full": "Full fine-tuning turns all {params} parameters toward {task}: the deepest specialization.",
        "adapters": "Adapter layers specialize the model for {task} with ~{adapter_params} new parameters while its "
                    "{params} original weights stay untouched.",
        "dora": "DoRA specializes the model for {task} with ~{lora_params} LoRA parameters plus per-output magnitudes.",
        "distillation": "Distillation specializes a smaller student for {task} from the {params} teacher's full "
                        "output distributions, richer than the labels alone."}),
    Rule("domain-knowledge", "C3.3", lambda c: c.goal("domain_knowledge"),
         {"full": .15, "lora": .08, "qlora": .05, "adapters": .05, "prompt_tuning": -.1, "dora": .1}, {
        "full": "New domain vocabulary and knowledge touch many weights at once; full fine-tuning can change all "
                "{params} of them.",
        "lora": "LoRA absorbs domain vocabulary within the reach of its rank-16 update ({lora_params} parameters).",
        "qlora": "QLoRA adds domain knowledge like LoRA does ({lora_params} parameters), on a 4-bit base that blurs "
                 "what it builds on.",
        "adapters": "Adapter layers add domain knowledge in ~{adapter_params} parameters of new bottleneck layers "
                    "without rewriting the {params} base.",
        "dora": "DoRA absorbs domain knowledge somewhat closer to full tuning than LoRA does at the same rank "
                "({lora_params} parameters).",
        "prompt_tuning": "A soft prompt of {prompt_params} parameters cannot add knowledge the model lacks: prompt "
                         "tuning only steers what the {params} model already knows."},
         rules_out=("prompt_tuning",)),
    Rule("proprietary", "C3.4", lambda c: c.goal("proprietary_data"),
         {"lora": .08, "qlora": .08, "full": .08, "adapters": .08, "dora": .08}, {
        P: "LoRA, QLoRA, DoRA and adapter layers learn your {examples} private examples into a file of a few "
           "MB you keep, beside an unchanged public {params} base.",
        "full": "Full fine-tuning builds your {examples} private examples into a whole new {params} model, which "
                "must then be kept private."}),
    Rule("edge-cases", "C3.5", lambda c: c.goal("edge_cases"),
         {"full": .08, "lora": .08, "qlora": .06, "adapters": .06, "dora": .08}, {
        P: "LoRA, QLoRA, DoRA and adapter layers learn edge cases from your {examples} examples while the base's "
           "general behaviour stays frozen.",
        "full": "Full fine-tuning learns edge cases from your {examples} examples in every one of {params} weights."}),
    Rule("many-tasks", "C3.6", lambda c: c.goal("multi_task") or c.answers.num_tasks > 1,
         {"lora": .2, "qlora": .18, "adapters": .18, "prompt_tuning": .1, "full": -.25, "distillation": -.15,
          "dora": .18}, {
        P: "{tasks} task(s) on one base: LoRA, QLoRA and DoRA adapters or adapter layers (MBs each) share one "
           "copy of the {params} model.",
        "prompt_tuning": "Prompt tuning serves {tasks} task(s) as soft prompts of {prompt_params} parameters on one "
                         "frozen model, even mixed in one batch (Lester et al. 2021).",
        "full": "Full fine-tuning for {tasks} task(s) means a whole model per task ({serve_full} of weights to "
                "store and serve) and risks forgetting general skills.",
        "distillation": "Distillation trains and serves a whole student per task: {tasks} models."}),
    Rule("many-tenants", "C3.6", lambda c: c.answers.num_tasks >= MANY_TENANTS,
         {"full": -.2, "distillation": -.1, "lora": .05, "qlora": .05, "dora": .05, "adapters": .05,
          "prompt_tuning": .05}, {
        "full": "With {tasks} tenants, full fine-tuning would keep {tasks} copies of all {params} weights "
                "({serve_full}); per-tenant adapters are the only practical form.",
        "distillation": "With {tasks} tenants, one distilled student each multiplies training and serving {tasks} "
                        "times.",
        ("lora", "qlora", "dora"): "With {tasks} tenants, LoRA-style adapters (LoRA, QLoRA, DoRA) are served "
                                   "together on one base (multi-adapter serving as in S-LoRA, Sheng et al. 2023).",
        "adapters": "With {tasks} tenants, adapter layers keep one {params} base and {tasks} sets of "
                    "~{adapter_params} parameters.",
        "prompt_tuning": "With {tasks} tenants, prompt tuning's per-tenant prompts ({prompt_params} parameters "
                         "each) are the smallest artifact of all."},
         rules_out=("full",)),
    Rule("inference-cost", "C4.1", lambda c: c.goal("reduce_inference_cost") and c.facts.params <= SMALLER_MODEL_MAX,
         {"prompt_tuning": .15}, {
        "prompt_tuning": "At {params} this is itself a smaller model: prompt-tuned, it can stand in for a larger "
                         "prompted one at a fraction of the serving cost."}),
    Rule("inference-cost-distil", "C2.7", lambda c: c.goal("reduce_inference_cost"), {"distillation": .3}, {
        "distillation": "Distilling the {params} model into a smaller student cuts the serving cost per token "
                        "roughly by their size ratio."}),
    Rule("inference-merge", "C6.20", lambda c: c.goal("reduce_inference_cost") or c.goal("small_footprint"),
         {"lora": .03, "qlora": .03, "dora": .03, "adapters": -.05}, {
        ("lora", "qlora", "dora"): "LoRA, QLoRA and DoRA updates merge into the {params} base weights for "
                                   "serving: no added latency or cost per call.",
        "adapters": "Adapter layers cannot merge into the {params} base: their bottlenecks stay in every forward "
                    "pass and add latency per call (C2.6)."}),
    Rule("output-format", "C4.3", lambda c: c.goal("output_format"), {"prompt_tuning": .12, "lora": .08, "qlora": .06}, {
        "prompt_tuning": "A fixed output format is a light behaviour: a soft prompt of {prompt_params} parameters "
                         "learns it and replaces long instructions in every call.",
        "lora": "LoRA learns a reliable output format from a few hundred examples (you have {examples}).",
        "qlora": "QLoRA learns the output format like LoRA does from your {examples} examples, on a 4-bit base."}),
    Rule("factual-recall", "C5.1", lambda c: c.goal("factual_recall"),
         {"full": -.15, "lora": -.1, "qlora": -.1, "adapters": -.1, "prompt_tuning": -.1, "distillation": -.1,
          "dora": -.1}, {
        "full": "Full fine-tuning on facts mostly memorises phrasings and can overwrite others in its {params} "
                "weights; retrieval keeps facts exact and current.",
        "lora": "LoRA's {lora_params} parameters store new facts poorly (it learns less than full tuning): leave "
                "the facts to retrieval.",
        "qlora": "QLoRA's {lora_params} parameters are no better than LoRA's at storing facts: leave them to "
                 "retrieval.",
        "adapters": "Adapter layers ({adapter_params} parameters) do not make recall of facts reliable: retrieve "
                    "the facts instead.",
        "prompt_tuning": "A soft prompt of {prompt_params} parameters stores no facts at all: retrieve them instead.",
        "distillation": "A distilled student recalls fewer facts than its {params} teacher: retrieve them instead.",
        "dora": "DoRA, like LoRA ({lora_params} parameters), stores new facts poorly: retrieve them instead."}),
    # RAFT (Zhang et al. 2024) tunes the model to use retrieved documents; Ovadia et al. 2024 find retrieval
    # beats tuning for new facts; Gekhman et al. 2024 find that tuning on new knowledge is learnt slowly and
    # raises hallucination. So beside retrieval, the tuning half is a light update for format and style;
    # full tuning only when the domain itself is far (then rule "far-domain" applies and this one does not).
    Rule("hybrid-light", "C6.19", lambda c: _others(c) and c.answers.domain_distance != "far",
         {"lora": .1, "qlora": .08, "dora": .08, "adapters": .06, "full": -.15, "distillation": -.1}, {
        P: "Facts come from retrieval: the tuning half only shapes format and style ({goals}), a light update "
           "that LoRA, QLoRA, DoRA or adapter layers make in a few million parameters (RAFT, Zhang et al. 2024).",
        "full": "Facts come from retrieval and the domain is {domain}: rewriting all {params} weights for format "
                "and style adds little and, on new facts, raises hallucination (Gekhman et al. 2024).",
        "distillation": "Facts come from retrieval: a distilled student of the {params} model is a second model to "
                        "keep current beside the retriever, for format and style alone."},
         rules_out=("full", "distillation")),
    Rule("no-reason-to-distil", "C2.7", lambda c: not (c.goal("small_footprint") or c.goal("reduce_inference_cost")),
         {"distillation": -.2}, {
        "distillation": "Distillation pays off when serving size or cost is the constraint; no such goal was given "
                        "(goals: {goals})."},
         rules_out=("distillation",)),
    Rule("small-device", "C2.7", lambda c: c.goal("small_footprint") and c.facts.params > PHONE_PARAMS,
         {"distillation": .35}, {
        "distillation": "For a phone, an edge device or tight latency, distil the {params} model into a student of "
                        "the on-device class (up to ~{phone}) that keeps most of its quality."}),
    Rule("small-device-size", "C6.17", lambda c: c.goal("small_footprint") and c.facts.params > PHONE_PARAMS,
         {m: -.05 for m in SHRINKLESS}, {
        "full": "Full fine-tuning keeps all {params} parameters: it does not make the model any smaller for the "
                "device (on-device models stop at ~{phone}).",
        P: "LoRA, QLoRA, DoRA and adapter layers keep the {params} base at serving: they do not shrink it for the "
           "device (on-device models stop at ~{phone}).",
        "prompt_tuning": "Prompt tuning keeps the {params} model whole at serving: it does not shrink it to the "
                         "~{phone} of on-device models."},
         rules_out=SHRINKLESS),
    Rule("device-sized-base", "C2.7", lambda c: c.goal("small_footprint") and c.facts.params <= PHONE_PARAMS,
         {"distillation": -.1}, {
        "distillation": "At {params} the base is already of the on-device class (up to ~{phone}): tune it "
                        "directly; a student would be smaller still, at a loss of quality."}),
    # --- data, measured in examples and tokens (C6.1, C3.8, C6.14) ------------------------------
    Rule("small-data", "C6.1", lambda c: c.answers.num_examples < SMALL_DATA,
         {"prompt_tuning": .1, "lora": .1, "qlora": .1, "adapters": .1, "dora": .08}, {
        "prompt_tuning": "{examples} examples are in the range where prompt tuning starts well (tens to ~1,000).",
        "lora": "{examples} examples ({tokens} tokens, {lora_tpp} tokens per trainable adapter parameter) are "
                "enough for LoRA to start.",
        "qlora": "QLoRA, like LoRA, starts well from {examples} examples.",
        "adapters": "Adapter layers train well on {examples} examples and resist overfitting them.",
        "dora": "DoRA starts well from {examples} examples, as LoRA does."}),
    Rule("small-data-peft", "C3.8", lambda c: c.answers.num_examples < 10 * SMALL_DATA,
         {"lora": .05, "qlora": .04, "dora": .04, "adapters": .05}, {
        P: "Under 10,000 examples ({examples}), LoRA-style adapters (LoRA, QLoRA, DoRA) and adapter layers are "
           "the usual choice: they help even with small data sets."}),
    Rule("adapters-small-data", "C2.6", lambda c: c.answers.num_examples < 10 * SMALL_DATA, {"adapters": .03}, {
        "adapters": "Adapter layers resist forgetting and overfitting, which matters with {examples} examples."}),
    Rule("full-thin-data", "C6.14", lambda c: not c.facts.small_model and c.facts.tpp < FULL_THIN_TPP,
         {"full": -.15}, {
        "full": "Full fine-tuning on {tokens} tokens is {tpp} tokens per parameter of {params}: too little signal to "
                "move every weight without overfitting (it pays off from ~{thin_tokens} tokens here)."}),
    Rule("full-rich-data", "C3.8", lambda c: c.facts.tpp >= FULL_RICH_TPP, {"full": .2, "prompt_tuning": -.1}, {
        "full": "Full fine-tuning has enough data here: {tokens} tokens, {tpp} tokens per parameter of {params}.",
        "prompt_tuning": "With {tokens} tokens of data, a soft prompt of {prompt_params} parameters leaves most of "
                         "the signal unused."}),
    # --- domain distance (C3.7, C6.2, C2.1) -----------------------------------------------------
    Rule("far-domain", "C3.7", lambda c: c.answers.domain_distance == "far", {"full": .2, "prompt_tuning": -.2}, {
        "full": "A domain far from pretraining is where full fine-tuning is most reliable: all {params} weights "
                "can move.",
        "prompt_tuning": "A soft prompt ({prompt_params} parameters) only steers the frozen model; a domain far "
                         "from its pretraining needs weights to change."},
         rules_out=("prompt_tuning",)),
    Rule("far-domain-lora", "C6.2", lambda c: c.answers.domain_distance == "far",
         {"lora": -.07, "qlora": -.07, "dora": -.03, "adapters": -.07}, {
        "lora": "LoRA's rank-16 update ({lora_share} of the weights) learns less than full tuning and trails it on "
                "large domain shifts.",
        "qlora": "QLoRA inherits LoRA's low-rank limit ({lora_share} of the weights) on large domain shifts, on "
                 "top of its 4-bit base.",
        "dora": "DoRA narrows but does not close the low-rank gap ({lora_share} of the weights) on large domain "
                "shifts.",
        "adapters": "Adapter layers' bottlenecks (~{adapter_params} parameters) are a low-capacity update too: "
                    "like LoRA, they trail full tuning on large domain shifts."}),
    Rule("close-domain", "C2.1", lambda c: c.answers.domain_distance == "close",
         {"prompt_tuning": .15, "lora": .05, "full": -.1}, {
        "prompt_tuning": "The task is close to what the {params} model already knows: the case where prompt tuning "
                         "({prompt_params} parameters) does well.",
        "lora": "Close to pretraining, a light LoRA update ({lora_params} parameters) is enough.",
        "full": "Close to pretraining, full fine-tuning of all {params} weights buys little over lighter methods."}),
    # --- model size (C6.13, C4.5, C6.3, C6.15, C6.16) -------------------------------------------
    Rule("prompt-small-model", "C4.5", lambda c: c.facts.params <= SMALL_MODEL or c.spec.kind == "encoder",
         {"prompt_tuning": -.35}, {
        "prompt_tuning": "At {params} parameters prompt tuning trails tuning the weights by a wide margin "
                         "(Lester et al. 2021, Fig. 1: far behind at T5-Small/Base scale)."}),
    Rule("prompt-mid-model", "C6.3", lambda c: SMALL_MODEL < c.facts.params < PROMPT_PARITY and c.spec.kind != "encoder",
         {"prompt_tuning": -.15}, {
        "prompt_tuning": "At {params} parameters prompt tuning still trails LoRA; it catches up with tuning the "
                         "weights only from about 10B (Lester et al. 2021)."}),
    Rule("prompt-large-model", "C4.5", lambda c: c.facts.params >= PROMPT_PARITY, {"prompt_tuning": .1}, {
        "prompt_tuning": "At {params} parameters prompt tuning is within reach of full fine-tuning (Lester et al. "
                         "2021: parity at ~11B), for {prompt_params} parameters per task."}),
    Rule("deep-knowledge-prompt", "C4.5", lambda c: c.goal("domain_knowledge") or c.answers.task == "code",
         {"prompt_tuning": -.1}, {
        "prompt_tuning": "Prompt tuning is weak when the task needs deep specialized knowledge ({deep}), even at "
                         "{params}."}),
    Rule("full-small-model", "C6.15", lambda c: c.facts.small_model, {"full": .25}, {
        "full": "At {params} parameters full fine-tuning is cheap and standard (as for BERT, GPT-2 or T5-Base): "
                "about {full_gib} for weights, gradients and AdamW states."}),
    Rule("qlora-no-gain", "C6.16", lambda c: c.facts.small_model, {"qlora": -.4}, {
        "qlora": "At {params} parameters the 16-bit base weighs only {w16}; QLoRA's 4 bits save ~{saved} for "
                 "slower steps (dequantization on every pass) — nothing worth buying."}),
    Rule("qlora-large-model", "C6.16", lambda c: c.facts.params >= LARGE, {"qlora": .08}, {
        "qlora": "At {params} parameters the 16-bit base needs {w16}; QLoRA's NF4 brings it to ~{w4}, often the "
                 "difference between one GPU and several."}),
    Rule("full-large-model", "C6.13", lambda c: LARGE <= c.facts.params < 10 * LARGE, {"full": -.08}, {
        "full": "Full fine-tuning at {params} parameters needs sharding over several GPUs and stores a {w16} model "
                "per task."}),
    Rule("full-huge-model", "C6.13", lambda c: c.facts.params >= 10 * LARGE, {"full": -.2}, {
        "full": "Full fine-tuning of {params} parameters needs ~{full_gib} of weights, gradients and AdamW states: "
                "a multi-node job."}),
    Rule("moe-experts", "C2.2", lambda c: c.spec.is_moe, {"qlora": .05, "full": -.05}, {
        "qlora": "{params} parameters but {active} active per token: the experts make memory, not compute, the "
                 "bottleneck, and QLoRA stores them in 4 bits ({w4} instead of {w16}).",
        "full": "Full fine-tuning of this mixture of experts trains all {params} parameters (and the router's "
                "balance) for {active} active per token."}),
    # --- priorities (C2.4, C2.5, C6.4, C6.9) ----------------------------------------------------
    Rule("accuracy-first", "C2.5", lambda c: c.answers.priority == "accuracy",
         {"full": .15, "lora": .05, "prompt_tuning": -.1}, {
        "full": "Accuracy first: full fine-tuning of all {params} weights is the strongest option when its cost is "
                "justified.",
        "lora": "Accuracy first: LoRA ({lora_params} parameters) comes close to full tuning on most tasks at a "
                "fraction of the cost.",
        "prompt_tuning": "Accuracy first: prompt tuning ({prompt_params} parameters) is the least expressive of the "
                         "methods."}),
    Rule("cost-first", "C2.4", lambda c: c.answers.priority == "cost",
         {"prompt_tuning": .12, "qlora": .12, "lora": .06, "full": -.15, "distillation": -.05}, {
        "prompt_tuning": "Cost first: a soft prompt ({prompt_params} parameters) is the cheapest artifact to tune "
                         "and to host.",
        "qlora": "Cost first: QLoRA tunes on the smallest GPUs ({w4} base), and many adapters share one 4-bit base.",
        "lora": "Cost first: LoRA adapters ({lora_params} parameters) are cheap to train and share one base.",
        "full": "Cost first: full fine-tuning pays for the most compute ({full_gib} of training state) and a whole "
                "{w16} model per task.",
        "distillation": "Cost first: distillation adds the {params} teacher's forward passes to every training "
                        "step."}),
    Rule("quantization-risk", "C6.4", lambda c: c.answers.priority == "accuracy", {"qlora": -.05}, {
        "qlora": "Accuracy first: QLoRA's 4-bit base ({w4} for {w16}) can cost some quality, and dequantizing it "
                 "slows every step."}),
    Rule("dora-quality", "C6.9", lambda c: c.answers.priority == "accuracy" or c.answers.domain_distance == "far",
         {"dora": .08}, {
        "dora": "DoRA learns each weight's magnitude apart from its direction and closes part of LoRA's gap to full "
                "tuning at the same rank ({priority} priority, {domain} domain)."}),
    Rule("dora-cost", "C6.9", lambda c: c.answers.priority == "cost", {"dora": -.05}, {
        "dora": "Cost first: DoRA's steps are slower than LoRA's (the norm of every adapted weight of the {params} base "
                "recomputed every micro-batch): more GPU-hours."}),
)
"""No rule fires for every case: a reason is there because something in this case makes it true (issue 25's
"no stock line"); LoRA's old "strong general default" bonus is gone."""


def squash(raw: float) -> float:
    """Maps a rule sum (0.5 ± changes) monotonically into (0, 1): 0.5 stays 0.5, ±0.5 becomes 0.5 ± 0.25.
    Unlike clipping, two methods with different sums never share the ends of the scale."""
    x = raw - 0.5
    return 0.5 + 0.5 * x / (1 + abs(x))


def unsquash(score: float) -> float:
    """The inverse of ``squash``: the rule sum behind a score (to add one more effect to it)."""
    y = 2 * (score - 0.5)
    return 0.5 + y / (1 - abs(y))


def reason(rule: Rule, method: str, delta: float, values: dict) -> dict:
    out = {"criterion": rule.criterion, "rule": rule.id, "effect": "+" if delta > 0 else "-",
           "text": rule.text_for(method).format(**values)}
    if method in rule.rules_out:
        out["rules_out"] = True
    return out


def apply_rules(ctx: Context, methods: tuple[str, ...]) -> dict[str, tuple[float, list[dict]]]:
    """Score each method (squashed, see ``squash``) and collect the reasons that moved it, most
    influential first; each reason's text is the rule's sentence for that method, numbers filled in."""
    raw = {m: 0.5 for m in methods}
    reasons: dict[str, list[tuple[float, dict]]] = {m: [] for m in methods}
    values = ctx.facts.values
    for rule in RULES:
        if not rule.when(ctx):
            continue
        for method, delta in rule.effects.items():
            if method in raw:
                raw[method] += delta
                reasons[method].append((delta, reason(rule, method, delta, values)))
    return {m: (round(squash(raw[m]), 3), [r for _, r in sorted(reasons[m], key=lambda x: -abs(x[0]))])
            for m in methods}
