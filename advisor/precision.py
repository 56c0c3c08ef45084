"""Hardware-aware precision (C6.11): what a plan trains in on a given GPU, and the caveats that say so.

* bf16 where the GPU has it (Ampere and later).
* Without bf16 (T4, V100: pre-Ampere tensor cores do fp16 only): fp16 autocast with dynamic loss
  scaling (Micikevicius et al. 2018, "Mixed Precision Training"). Methods that train every weight keep
  fp32 master weights (``mixed_precision``: ~16 B/param with AdamW); PEFT methods keep the frozen base in
  fp16, their trainable parameters are fp32 already (PEFT's default).
* T5 overflows in fp16 (it was pretrained in bf16; transformers issue #10830 and the T5 model docs):
  fp32 on GPUs without bf16, except for methods that only compute in 16 bits (QLoRA), which are warned.
"""
from __future__ import annotations

from estimators.catalog import GPU, GIB
from estimators.methods import REGISTRY
from estimators.plan import Plan
from estimators.spec import ModelSpec

_FP16_UNSAFE = {"t5"}
"""Families whose activations overflow fp16."""


def has_bf16(gpu: GPU) -> bool:
    return bool(gpu.tflops.get("bf16"))


def precision_for(gpu: GPU, spec: ModelSpec, method: str) -> dict:
    """The plan settings ``precision`` and ``mixed_precision`` for this method on this GPU."""
    if has_bf16(gpu):
        return {"precision": "bf16", "mixed_precision": False}
    m = REGISTRY[method]
    if spec.family in _FP16_UNSAFE and not m.compute_16bit:
        return {"precision": "fp32", "mixed_precision": False}
    return {"precision": "fp16", "mixed_precision": m.trains_base}


def hardware_caveat(gpu: GPU, spec: ModelSpec, method: str) -> str | None:
    """Why the plan does not train in bf16 here (None where it does)."""
    if has_bf16(gpu):
        return None
    label = REGISTRY[method].label
    if spec.family in _FP16_UNSAFE:
        if REGISTRY[method].compute_16bit:
            return (f"{spec.family.upper()} overflows in fp16 and {gpu.name} has no bf16, while {label} computes in "
                    "16 bits: expect NaN losses; prefer a GPU with bf16 (C6.11).")
        return (f"{spec.family.upper()} overflows in fp16 and {gpu.name} has no bf16: {label} — fp32 throughout, "
                f"{gpu.tflops.get('fp16', 0) / max(gpu.tflops.get('fp32') or 1, 1e-9):.0f}× below the fp16 peak "
                "(C6.11).")
    if REGISTRY[method].trains_base:
        return (f"{gpu.name} has no bf16: {label} — fp16 autocast with dynamic loss scaling over fp32 master "
                "weights (C6.11).")
    return (f"{gpu.name} has no bf16: {label} — frozen base in fp16, the fp32 trainable parameters under fp16 "
            "autocast with dynamic loss scaling (C6.11).")


def pure_precision_caveat(plan: Plan, spec: ModelSpec, calibration=None) -> str | None:
    """For methods that train every weight in pure 16-bit: say so, and what Trainer-style AMP would need."""
    s = plan.settings
    if not REGISTRY[plan.method].trains_base or s["mixed_precision"] or s["precision"] == "fp32":
        return None
    amp = plan.edit(settings={"mixed_precision": True}).run_estimate(calibration, spec)
    p = s["precision"]
    return (f"Memory assumes pure {p}: weights, gradients and AdamW states in {p} with no fp32 master copy "
            f"(~8 B/param). Trainer-style AMP (fp32 master weights, {p} autocast) needs ~16 B/param: "
            f"{amp.memory.total / GIB:,.1f} GiB per GPU for this plan; estimate it with --mixed-precision (C6.11).")
