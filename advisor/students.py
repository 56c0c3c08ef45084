"""Which student a distillation trains, chosen by the target it must reach (C2.7, C6.7, C6.17).

* A device (``small_footprint``; ``device_memory_gib`` when the device's memory is known): the largest
  catalog model of the teacher's kind and tokenizer whose 4-bit export fits the device — without a
  memory figure, the on-device class up to ``PHONE_PARAMS`` (Gemma 3 1B, Llama 3.2 1B, Qwen3 0.6B/1.7B:
  ~0.4-1.2 GiB at ~4.8 bits per weight).
* A serving cost or latency goal: the largest such model at most a quarter of the teacher's size (a 70B
  teaches an 8B): the cost per token falls by about the size ratio.
* Always smaller than the teacher (at most half its size): a student as large as its teacher saves nothing.

Among equal sizes the teacher's own model line comes first (the longest common start of the catalog ids).
"""
from __future__ import annotations

import os

from advisor.facts import GIB, PHONE_PARAMS
from estimators.catalog import model_by_id, model_configs
from estimators.spec import ModelSpec
from estimators.tokenizers import tokenizers_compatible

EXPORT_BITS = 4.85
"""Bits per weight of a 4-bit on-device export: llama.cpp's Q4_K_M averages ~4.8-4.9 bits per weight (4-bit
blocks plus their scales, a few tensors kept at higher precision), e.g. ~4.9 GB for an 8B model."""
RUNTIME_SHARE = 0.8
"""Share of a device's memory budget the weights may take; the rest is the KV cache and runtime buffers."""


def export_bytes(spec: ModelSpec, bits: float = EXPORT_BITS) -> int:
    """Size of ``spec`` exported with ``bits`` per weight: 1.72B parameters x 4.85 / 8 -> ~0.97 GiB."""
    return int(spec.total_params * bits / 8)


def target_for(goals, device_memory_gib: float | None) -> str | None:
    """``device``, ``serving`` or None (no goal that distillation serves)."""
    if "small_footprint" in goals or device_memory_gib is not None:
        return "device"
    return "serving" if "reduce_inference_cost" in goals else None


def candidates(teacher: ModelSpec) -> list[ModelSpec]:
    """Catalog models of the teacher's kind sharing its tokenizer and at most half its size, largest first."""
    found = []
    for model_id in model_configs():
        cand = model_by_id(model_id)
        if cand.kind == teacher.kind and cand.total_params * 2 <= teacher.total_params \
                and tokenizers_compatible(teacher, cand):
            found.append(cand)
    return sorted(found, key=lambda m: (-m.total_params, -len(os.path.commonprefix([teacher.id, m.id])), m.id))


def student_for(teacher: ModelSpec, goals, device_memory_gib: float | None = None) -> tuple[ModelSpec | None, str]:
    """(student, why): the student for this target, and the sentence that says how it was chosen."""
    found = candidates(teacher)
    target = target_for(goals, device_memory_gib)
    if target == "device":
        if device_memory_gib is not None:
            limit = device_memory_gib * GIB * RUNTIME_SHARE
            pick = [m for m in found if export_bytes(m) <= limit]
            rule = (f"the largest whose 4-bit export fits {RUNTIME_SHARE:.0%} of the device's "
                    f"{device_memory_gib:g} GiB")
        else:
            pick = [m for m in found if m.total_params <= PHONE_PARAMS]
            rule = f"the largest of the on-device class (up to ~{PHONE_PARAMS / 1e9:.1f}B parameters)"
    else:
        pick = [m for m in found if m.total_params * 4 <= teacher.total_params]
        rule = "the largest at most a quarter of the teacher's size"
    if not pick:
        return None, rule
    s = pick[0]
    return s, (f"Student {s.id} ({s.total_params / 1e9:.2f}B, 4-bit export ~{export_bytes(s) / GIB:.2f} GiB): "
               f"{rule} among catalog models sharing {teacher.id}'s tokenizer "
               f"({teacher.tokenizer_family or f'vocabulary {teacher.vocab:,}'})")
