"""Measure one steady-state training step: peak live tensor bytes and where the peak fell."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tuners import runtime
from tuners.memtrack import LiveTensorTracker


@dataclass(frozen=True)
class StepMemory:
    peak_allocated: int
    """Peak of live tensor bytes during the step (CPU and CUDA alike)."""
    resident_before: int
    """Weights, buffers and optimizer states alive before the step."""
    peak_phase: str
    phases: dict


def train_step(model, optimizer, batch: dict, on_phase=lambda name: None, loss_fn=None, autocast=None):
    """One optimizer step (the runtime's, which trial runs and exported scripts use)."""
    return runtime.train_step(model, optimizer, batch, on_phase, loss=loss_fn, autocast=autocast)


def measure_step_memory(model, optimizer, batch: dict, warmup: bool = True) -> StepMemory:
    """Runs a warm-up step (so optimizer states exist, as in every later step), then one tracked step."""
    if warmup:
        train_step(model, optimizer, batch)
    tracker = LiveTensorTracker()
    tracker.track(model, optimizer, batch)
    before = tracker.current
    with tracker:
        train_step(model, optimizer, batch, tracker.set_phase)
    return StepMemory(peak_allocated=tracker.peak, resident_before=before, peak_phase=tracker.peak_phase,
                      phases=dict(tracker.by_phase))


def cuda_step_memory(model, optimizer, batch: dict) -> dict:
    """On CUDA: the allocator's own peaks for one step after a warm-up."""
    train_step(model, optimizer, batch)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    train_step(model, optimizer, batch)
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    return {"peak_allocated": torch.cuda.max_memory_allocated(), "peak_reserved": torch.cuda.max_memory_reserved(),
            "device_in_use": total - free}
