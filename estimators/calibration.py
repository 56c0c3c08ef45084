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
        return f"calibrated on {self.device} by {self.runs} {self.method} trial run(s), latest {self.run_id} ({when})"
