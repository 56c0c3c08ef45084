"""The numbers the rules and caveats reason with: model size band, data in tokens, tokens per
trainable parameter, and their human-readable forms for the reasons' sentences.

Thresholds (criteria C6.13-C6.16 in advisor/criteria.py say where they come from):
"""
from __future__ import annotations

import math
from functools import cached_property

from advisor.answers import Answers
from estimators.methods import REGISTRY, lora_params
from estimators.setup import TrainSetup
from estimators.spec import ModelSpec

SMALL_DATA = 1_000
"""C6.1: tens to ~1,000 examples are enough for prompt tuning or LoRA to start."""
SMALL_MODEL = 1e9
"""C6.13/C6.15: up to ~1B parameters (and every encoder) full tuning is cheap and standard; 4-bit
storage buys nothing worth its slower steps (C6.16)."""
PROMPT_PARITY = 1e10
"""C4.5: prompt tuning matches model tuning from ~10B parameters (Lester et al. 2021, T5-XXL 11B)."""
LARGE = 1e10
"""C6.13: from 10B, full tuning needs several GPUs; 4-bit storage decides single-GPU fits. 100B+: multi-node."""
SMALLER_MODEL_MAX = 3e10
"""C4.1: a prompt-tuned model 'smaller than the one it replaces' — up to ~30B, below the 70B-class
models it would stand in for; above, the inference-cost argument is distillation's, not prompt tuning's."""
FULL_THIN_TPP = 1e-3
"""C6.14: under ~1 token per 1,000 parameters full tuning of a >1B model mostly overfits (Alpaca's 52k
examples, ~10M tokens on LLaMA-7B, sit just above: 0.0014)."""
FULL_RICH_TPP = 5e-3
"""C6.14/C3.8: from ~1 token per 200 parameters (40M tokens for an 8B model) full tuning has the data to
pull ahead of LoRA on hard shifts: between Alpaca (0.0014, where LoRA matches it) and the 0.01-0.1 of
Biderman et al. 2024's code and maths instruction sets, where full tuning leads."""
FULL_BYTES_PER_PARAM = 16
"""Trainer-style AMP full tuning with AdamW: fp32 master 4 + fp32 gradients 4 + two fp32 states 8."""
PHONE_PARAMS = 2.1e9
"""C6.17: the on-device class of models (Gemma 3 1B, Llama 3.2 1B, Qwen3 0.6B/1.7B, SmolLM2 1.7B, all released
for phones and edge devices) stops at ~2B parameters: ~1.2 GiB at ~4.8 bits per weight (llama.cpp Q4_K_M).
A base at or under it already fits such a device; a larger one needs a smaller student."""
GIB = 1024**3


def human(n: float) -> str:
    """8030261248 -> '8.03B', 80_000_000 -> '80M', 600_000 -> '600K'."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def human_bytes(n: float) -> str:
    return f"{n / 1024**4:,.1f} TiB" if n >= 1024**4 else f"{n / GIB:,.1f} GiB"


def two_digits(x: float) -> str:
    """A small ratio with two significant digits: 0.000075 -> '0.000075', 0.021 -> '0.021'."""
    if x <= 0:
        return "0"
    decimals = max(2, 1 - math.floor(math.log10(x)))
    return f"{x:.{decimals}f}"


class Facts:
    """Derived from the answers and the model spec once per recommendation."""

    def __init__(self, answers: Answers, spec: ModelSpec):
        self.answers, self.spec = answers, spec
        self.params = spec.total_params
        self.tokens = answers.num_examples * answers.avg_tokens_per_example
        """Tokens of data per epoch."""
        self.tpp = self.tokens / self.params
        """Tokens per parameter when every weight trains (full tuning)."""
        self.small_model = self.params <= SMALL_MODEL or spec.kind == "encoder"

    @cached_property
    def lora_params(self) -> int:
        return lora_params(self.spec, TrainSetup(method="lora"))

    @cached_property
    def trainable(self) -> dict:
        """Trainable parameters of each frozen-base method at its defaults (for the reasons' numbers)."""
        return {m: REGISTRY[m].trainable(self.spec, TrainSetup(method=m)) for m in REGISTRY}

    @cached_property
    def values(self) -> dict:
        """The ``{name}`` fields of the rules' and caveats' sentences."""
        a, p = self.answers, self.params
        w16, w4 = p * 2, self.spec.linear_params() * 0.5 + (p - self.spec.linear_params()) * 2
        return {"params": human(p), "active": human(self.spec.active_params), "examples": f"{a.num_examples:,}",
                "tokens": human(self.tokens), "tpp": two_digits(self.tpp),
                "lora_params": human(self.lora_params), "lora_tpp": two_digits(self.tokens / self.lora_params),
                "thin_tokens": human(FULL_THIN_TPP * p), "tasks": f"{a.num_tasks:,}",
                "serve_full": human_bytes(a.num_tasks * w16), "task": a.task.replace("_", " "),
                "w16": human_bytes(w16), "w4": human_bytes(w4), "saved": human_bytes(w16 - w4),
                "full_gib": human_bytes(FULL_BYTES_PER_PARAM * p),
                "deep": "code" if a.task == "code" else "new domain knowledge",
                "adapter_params": human(self.trainable["adapters"]), "prompt_params": human(self.trainable["prompt_tuning"]),
                "lora_share": f"{self.lora_params / p:.2%}", "domain": a.domain_distance,
                "phone": human(PHONE_PARAMS), "priority": a.priority,
                "goals": ", ".join(g.replace("_", " ") for g in a.goals) or "none"}
