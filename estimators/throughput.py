"""Training FLOPs, time and cost of a whole run, and the size of what it produces."""
from __future__ import annotations

from dataclasses import dataclass

from estimators.catalog import GPU
from estimators.memory import base_weight_bytes
from estimators.methods import quantized_params, trainable_params
from estimators.setup import DTYPE_BYTES, TrainSetup
from estimators.spec import ModelSpec

# Each method's share of the GPU's default efficiency (MFU) and its step-time multiplier live in its
# registry entry (``MethodSpec.efficiency`` / ``slowdown``, estimators/methods/); trial runs calibrate
# the base efficiency per device.


@dataclass(frozen=True)
class TimeEstimate:
    tokens: int | None
    """Tokens processed over the whole run (examples × tokens per example × epochs)."""
    flops_per_token: float
    flops: float | None
    seconds: float | None
    cost_usd: float | None
    tokens_per_second: float | None
    """Throughput of all GPUs together."""

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "flops": self.flops, "seconds": self.seconds,
                "flops_per_token": self.flops_per_token, "tokens_per_second": self.tokens_per_second}


def attention_flops_per_token(spec: ModelSpec, seq_len: int) -> float:
    """Forward attention score and value matmuls: 2 matmuls × 2 FLOPs × L × (heads·head_dim) × s."""
    return 4 * spec.layers * spec.heads * spec.head_dim * seq_len


def flops_per_token(spec: ModelSpec, setup: TrainSetup, teacher: ModelSpec | None = None) -> float:
    """Training FLOPs per token (Kaplan et al. 2020; Chinchilla appendix F; nanoGPT's estimate_mfu).

    Forward ≈ 2N + attention; backward ≈ 2× forward when every weight trains (6N total). With a
    frozen base the weight gradients are skipped but input gradients still flow (≈ 4N), plus 6 per
    trainable adapter parameter. Checkpointing runs the forward again (+2N + attention).
    N is the active parameter count (MoE: the experts a token visits), without embeddings' lookups.
    Work done once per micro-batch (DoRA's weight norms) is spread over its tokens.
    """
    n = spec.active_params - spec.vocab * spec.hidden * (1 if not spec.tied_embeddings else 0)
    s = setup.tokens_per_sequence
    attn = attention_flops_per_token(spec, s)
    forward = 2 * n + attn
    if setup.frozen_base:
        total = 2 * forward + 6 * trainable_params(spec, setup)
    else:
        total = 3 * forward
    if setup.gradient_checkpointing:
        total += forward
    if setup.m.needs_teacher and teacher is not None:
        total += 2 * teacher.active_params + attention_flops_per_token(teacher, s)
    total += setup.m.extra_flops_per_step(spec, setup) / (setup.batch_size * s)
    return float(total)


def method_efficiency(setup: TrainSetup) -> float:
    """The method's share of the base efficiency, its step-time multiplier folded in."""
    return setup.m.efficiency / setup.m.slowdown


def estimate_time(spec: ModelSpec, setup: TrainSetup, gpu: GPU | None, teacher: ModelSpec | None = None,
                  price_per_hour: float | None = None, efficiency: float | None = None) -> TimeEstimate:
    """Whole-run time = FLOPs / (GPUs × peak × efficiency); cost = GPU-hours × price per GPU-hour."""
    fpt = flops_per_token(spec, setup, teacher)
    if gpu is None:
        return TimeEstimate(None, fpt, None, None, None, None)
    eff = (efficiency if efficiency is not None else gpu.efficiency) * method_efficiency(setup)
    rate = setup.num_gpus * gpu.peak_flops(setup.precision) * eff
    tps = rate / fpt if rate else None
    if not (setup.examples and setup.tokens_per_example):
        return TimeEstimate(None, fpt, None, None, None, tps)
    # Prompt tuning prepends its virtual tokens to every example: they cost compute too.
    per_example = setup.tokens_per_example + setup.m.virtual_tokens(setup)
    tokens = int(setup.examples * per_example * setup.epochs)
    flops = fpt * tokens
    seconds = flops / rate if rate else None
    price = price_per_hour if price_per_hour is not None else gpu.price_per_hour_usd
    cost = None if seconds is None or price is None else seconds / 3600 * setup.num_gpus * price
    return TimeEstimate(tokens, fpt, flops, seconds, cost, tps)


def artifact_bytes(spec: ModelSpec, setup: TrainSetup) -> int:
    """Size of what training produces: a prompt vector, an adapter (fp32 as PEFT saves it), or a
    whole model (in the training precision; distillation produces the student)."""
    if setup.frozen_base:
        return trainable_params(spec, setup) * 4
    return spec.total_params * DTYPE_BYTES[setup.precision]


def serving_bytes(spec: ModelSpec, setup: TrainSetup, tasks: int) -> int:
    """Weights to serve ``tasks`` tuned variants: K adapters on one shared base (C3.6, C2.4) versus K
    whole models for full tuning or distillation. 16-bit serving; QLoRA's base stays 4-bit."""
    if setup.frozen_base:
        base = spec.total_params * 2
        if setup.m.quantized_base:  # quantized linears stay quantized; the rest is served in 16 bits
            q = quantized_params(spec)
            base = base_weight_bytes(spec, setup) - (spec.total_params - q) * 2
        return base + tasks * artifact_bytes(spec, setup)
    return tasks * spec.total_params * 2
