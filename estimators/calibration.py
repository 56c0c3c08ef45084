"""Calibration from trial runs: what a device really achieves, per method and precision.

A completed trial records (device, method, precision) → the base efficiency it reached (the one that
makes the step-time model, estimators/steptime.py, reproduce the measured step) and the memory the
process held beyond the peak of live tensors. Later estimates on the same device and precision use
the latest values — the same method's when there is one, else another method's — say so in
``assumptions``, and narrow the time range to what calibrated repeats achieve; without a record
they fall back to the documented defaults.

This module is the record's shape only (estimators do no I/O): the run store keeps the records in
its SQLite file (``tuners.store.record_calibration`` / ``calibration_for``), and the callers (CLI,
app, trial runner) look one up and pass it to ``estimate``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Calibration:
    device: str
    """Catalog GPU id (``h100-sxm``...) or ``cpu``."""
    method: str
    precision: str
    efficiency: float
    """Base efficiency (before the per-method factor) that reproduces the measured throughput."""
    overhead_bytes: int | None
    """Device memory in use beyond the allocator's reserved peak (CUDA context, workspaces)."""
    slack: float | None
    """(reserved − allocated) / allocated at the peak: the caching allocator's slack."""
    runs: int
    updated: float
    run_id: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d", time.localtime(self.updated))
        return (f"calibrated on {self.device} by {self.runs} {self.method} trial run(s), latest {self.run_id} ({when}); "
                f"it carries to {method_family(self.method)}-family methods at {self.precision} only")


def method_family(method: str) -> str:
    """Methods whose steps a calibration carries between (issue 21): ``quantized`` (a 4/8-bit base:
    dequantization dominates), ``frozen`` (a 16/32-bit frozen base with adapters, prompts or LoRA),
    ``full`` (every weight trains; distillation's student too). A trial's measured efficiency folds in
    what the step-time model leaves out for its family; across families that differs, so it stays put."""
    from estimators.methods import get

    m = get(method)
    if m.quantized_base:
        return "quantized"
    return "full" if m.trains_base else "frozen"


TIME_RATIO_RANGE = (0.7, 1.4)
"""Measured over estimated tokens/s outside this range gets an explanation on the trial page."""


def time_ratio_note(ratio: float | None, calibrated: str | None, cpu: bool, step_terms: dict | None) -> str | None:
    """Why a trial's measured / estimated tokens/s is outside ``TIME_RATIO_RANGE`` (None inside it): what the
    estimate rested on and which of its terms dominated the step, so the reader knows what the ratio says."""
    low, high = TIME_RATIO_RANGE
    if ratio is None or low <= ratio <= high:
        return None
    terms = {k: v for k, v in (step_terms or {}).items() if isinstance(v, (int, float)) and k not in
             ("total", "busy", "micro_batches")}
    top = max(terms, key=terms.get) if terms else None
    side = "faster" if ratio > high else "slower"
    parts = [f"measured {ratio:.2f}× the estimated tokens/s ({side} than estimated, outside {low}–{high}×)"]
    if not calibrated:
        parts.append("this device had no calibration for this method family and dtype, so the estimate used a default "
                     "efficiency; this trial now records one, and the next estimate of the same family and dtype uses it")
    else:
        parts.append(f"the estimate was {calibrated}; a ratio this far off means this run's shape or load differs from "
                     "the calibrating one")
    if top == "launch":
        parts.append("the step is bound by issuing kernels (the host's speed per kernel), not by the device's math")
    elif top in ("fixed", "optimizer"):
        parts.append(f"the step is dominated by its {top} term, which does not grow with tokens: tiny trial shapes "
                     "weigh it far more than a real run")
    if cpu:
        parts.append("on a CPU shared with other work, step times also move with the machine's load")
    return "; ".join(parts) + "."
