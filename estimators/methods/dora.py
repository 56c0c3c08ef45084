"""DoRA (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation"): LoRA's update for the
direction of each targeted weight plus a trainable magnitude per output feature (PEFT ``use_dora``).

What PEFT 0.21 does per DoRA layer and step (peft/tuners/lora/dora.py), and what that costs:
* parameters: LoRA's A and B plus a magnitude vector of ``out_features`` (fp32);
* activations saved for backward, per token: LoRA's (fp32 input copy, A's output) plus the LoRA
  branch's output (fp32, kept to get the magnitude's gradient) and the base layer's output (kept
  for the same reason), ``(4 + d) · out_features`` bytes;
* per micro-batch, not per token: ``B·A`` rebuilt through an identity matrix and the column norms
  of ``W + s·B·A`` (detached, Liu et al. §4.3): ~``2·r·in·(in + out) + 3·in·out`` FLOPs per layer.
"""
from estimators.methods.base import (FP32, DORA_SETTINGS, MethodSpec, lora_assumptions, lora_extra_activations,
                                     lora_linears, lora_modules, lora_params)


def _trainable(spec, setup) -> int:
    return lora_params(spec, setup) + sum(lin.out_features * lin.count for lin in lora_linears(spec, setup.lora_targets))


def _activations(spec, setup) -> int:
    d = setup.act_bytes
    extra = sum((FP32 + d) * lin.out_features * lin.count / max(spec.layers, 1)
                for lin in lora_linears(spec, setup.lora_targets))
    return lora_extra_activations(spec, setup) + int(extra)


def _norm_flops(spec, setup) -> float:
    r = setup.lora_rank
    return float(sum((2 * r * lin.in_features * (lin.in_features + lin.out_features)
                      + 3 * lin.in_features * lin.out_features) * lin.count
                     for lin in lora_linears(spec, setup.lora_targets)))


def _assumptions(spec, setup):
    return lora_assumptions(spec, setup) + [
        "DoRA: a trainable magnitude per output feature; weight norms recomputed every micro-batch (detached)"]


SPEC = MethodSpec(
    id="dora", label="DoRA", summary="LoRA with a learned magnitude per output (weight-decomposed LoRA)",
    trains_base=False, settings=DORA_SETTINGS, default_lr=2e-4,
    trainable=_trainable,
    adapter_linears=lambda spec, setup: lora_linears(spec, setup.lora_targets),
    added_modules=lora_modules,
    extra_activations=_activations,
    extra_flops_per_step=_norm_flops,
    exact_check=True,
    assumptions=_assumptions,
    citation="Liu et al. 2024, DoRA: Weight-Decomposed Low-Rank Adaptation (ICML)",
)
