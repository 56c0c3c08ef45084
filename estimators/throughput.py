"""Training FLOPs, time and cost of a whole run, and the size of what it produces."""
from __future__ import annotations

from dataclasses import dataclass

from estimators.catalog import GPU
from estimators.memory import base_weight_bytes
from estimators.methods import quantized_params, trainable_params
from estimators.setup import DTYPE_BYTES, TrainSetup
from estimators.spec import ModelSpec
from estimators.steptime import StepTime, constants, padding_ratio, step_time
from estimators.stepwork import attention_flops_per_token  # noqa: F401  (read as throughput.attention_flops_per_token too)

# Each method's share of the GPU's default efficiency (MFU) lives in its registry entry
# (``MethodSpec.efficiency``, estimators/methods/); the step-time terms beside the FLOPs (launches,
# padding, dequantization, optimizer, communication) are in estimators/steptime.py; trial runs
# calibrate the base efficiency per device.


@dataclass(frozen=True)
class TimeEstimate:
    tokens: int | None
    """Tokens of the whole run (examples × mean tokens per example × epochs, prompt tuning's virtual
    tokens included): what the data holds, before padding."""
    flops_per_token: float
    flops: float | None
    seconds: float | None
    cost_usd: float | None
    tokens_per_second: float | None
    """Throughput of all GPUs together at full micro-batches of ``seq_len`` tokens (a trial's shape)."""
    seconds_low: float | None = None
    seconds_high: float | None = None
    cost_usd_low: float | None = None
    cost_usd_high: float | None = None
    range_basis: str | None = None
    """Where the low–high range comes from (the published-run spread, or a calibrated trial's)."""
    padded_tokens: int | None = None
    """Tokens the GPUs process over the run: padding to each micro-batch's longest example included."""
    steps: float | None = None
    """Optimizer steps of the whole run."""
    step: StepTime | None = None
    """One optimizer step of the whole run's shape, by term."""

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "flops": self.flops, "seconds": self.seconds,
                "flops_per_token": self.flops_per_token, "tokens_per_second": self.tokens_per_second}

    def contract(self) -> dict:
        """The estimate JSON's ``time`` block: the contract's keys, then the range and the step."""
        out = {"tokens": self.tokens, "flops": self.flops, "seconds": self.seconds}
        if self.seconds is not None:
            out.update(seconds_low=self.seconds_low, seconds_high=self.seconds_high, range_basis=self.range_basis,
                       padded_tokens=self.padded_tokens, steps=self.steps,
                       step_seconds=None if self.step is None else self.step.total,
                       step_terms=None if self.step is None else self.step.to_dict())
        return out


def flops_per_token(spec: ModelSpec, setup: TrainSetup, teacher: ModelSpec | None = None,
                    length: float | None = None) -> float:
    """Training FLOPs per token at sequences of ``length`` tokens (default ``setup.tokens_per_sequence``)
    (Kaplan et al. 2020; Chinchilla appendix F; nanoGPT's estimate_mfu).

    Forward ≈ 2N + attention; backward ≈ 2× forward when every weight trains (6N total). With a
    frozen base the weight gradients are skipped but input gradients still flow (≈ 4N), plus 6 per
    trainable adapter parameter. Checkpointing runs the forward again (+2N + attention).
    N is the active parameter count (MoE: the experts a token visits), without embeddings' lookups.
    Work done once per micro-batch (DoRA's weight norms) is spread over its tokens.
    """
    n = spec.active_params - spec.vocab * spec.hidden * (1 if not spec.tied_embeddings else 0)
    s = setup.tokens_per_sequence if length is None else length
    attn = attention_flops_per_token(spec, s)
    forward = 2 * n + attn
    if setup.frozen_base:
        total = 2 * forward + 6 * trainable_params(spec, setup)
    else:
        total = 3 * forward
    if setup.gradient_checkpointing:
        total += forward
    if setup.m.needs_teacher and teacher is not None:
        # Precomputed logits (issue 25): the teacher's forward runs once over the data, not every epoch.
        once = setup.epochs if setup.teacher_logits == "precomputed" else 1
        total += (2 * teacher.active_params + attention_flops_per_token(teacher, s)) / once
    total += setup.m.extra_flops_per_step(spec, setup) / (setup.batch_size * s)
    return float(total)


def method_efficiency(setup: TrainSetup) -> float:
    """The method's share of the base efficiency (its registry entry)."""
    return setup.m.efficiency


def run_length(setup: TrainSetup) -> float:
    """Tokens per row the whole run's micro-batches have: ``seq_len`` when packing, else the mean
    example padded to its micro-batch's longest (``steptime.padding_ratio``), prompt tuning's virtual
    tokens added either way."""
    if setup.packing:
        return float(setup.tokens_per_sequence)
    real = min(float(setup.seq_len), setup.tokens_per_example * padding_ratio(setup))
    return real + setup.m.virtual_tokens(setup)


def estimate_time(spec: ModelSpec, setup: TrainSetup, gpu: GPU | None, teacher: ModelSpec | None = None,
                  price_per_hour: float | None = None, efficiency: float | None = None) -> TimeEstimate:
    """Whole-run time = optimizer steps × seconds per step (estimators/steptime.py); cost = GPU-hours
    × price per GPU-hour; the range is the spread of the published runs the model was fitted on (wider
    on a GPU whose efficiency is an unfitted default), or of calibrated repeat trials when
    ``efficiency`` comes from a trial on this device."""
    fpt = flops_per_token(spec, setup, teacher)
    if gpu is None:
        return TimeEstimate(None, fpt, None, None, None, None)
    eff = efficiency if efficiency is not None else gpu.efficiency
    per_token = (lambda length: flops_per_token(spec, setup, teacher, length))
    full = setup.tokens_per_sequence
    at_full = step_time(spec, setup, gpu, full, per_token, eff)
    rows_per_step = setup.batch_size * setup.grad_accum * setup.num_gpus
    tps = rows_per_step * full / at_full.total if at_full.total else None
    if not (setup.examples and setup.tokens_per_example):
        return TimeEstimate(None, fpt, None, None, None, tps)
    per_example = setup.tokens_per_example + setup.m.virtual_tokens(setup)
    tokens = int(setup.examples * per_example * setup.epochs)
    length = run_length(setup)
    if setup.packing:  # examples laid end to end in rows of seq_len (virtual tokens once per row)
        rows = setup.examples * setup.tokens_per_example * setup.epochs / setup.seq_len
    else:
        rows = setup.examples * setup.epochs
    steps = rows / rows_per_step
    step = step_time(spec, setup, gpu, length, per_token, eff)
    seconds = steps * step.total
    padded = int(rows * length)
    flops = flops_per_token(spec, setup, teacher, length) * padded
    if efficiency is not None:
        band = constants()["calibrated_band"]
    else:
        band = constants()["band" if gpu.efficiency_fitted else "default_efficiency_band"]
    price = price_per_hour if price_per_hour is not None else gpu.price_per_hour_usd

    def cost(secs):
        return None if price is None else secs / 3600 * setup.num_gpus * price

    return TimeEstimate(tokens, fpt, flops, seconds, cost(seconds), tps,
                        seconds_low=seconds * band["low"], seconds_high=seconds * band["high"],
                        cost_usd_low=None if price is None else cost(seconds * band["low"]),
                        cost_usd_high=None if price is None else cost(seconds * band["high"]),
                        range_basis=band["basis"], padded_tokens=padded, steps=steps, step=step)


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
