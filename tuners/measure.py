"""Measure one steady-state training step: peak live tensor bytes and where the peak fell."""
from __future__ import annotations

from contextlib import contextmanager
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


class CpuMeter:
    """Memory of a trial on CPU: the live tensor bytes of step 2 (``LiveTensorTracker``; with several
    ranks tracked from step 1, so what the first step creates and keeps — DDP's gradient buckets,
    FSDP's buffers — counts too) and the process's peak resident memory above its baseline."""

    def __init__(self, world: int = 1):
        from tuners.hardware import proc_bytes

        self.first = 1 if world > 1 else 2
        self.tracker, self.peak, self.phase = None, None, None
        self.baseline = proc_bytes("/proc/self/status", "VmRSS:") or 0

    @contextmanager
    def step(self, step: int, built, group: list):
        """Around one optimizer step; yields the ``on_phase`` callback for the step."""
        if step == self.first:
            self.tracker = LiveTensorTracker()
            self.tracker.track(built.model, built.optimizer, *([built.teacher] if built.teacher is not None else []))
        if self.tracker is None or step not in (self.first, 2):
            yield lambda name: None
            return
        self.tracker.track(group)
        if step == 2:
            self.tracker.reset_peak()
        with self.tracker:
            yield self.tracker.set_phase
        if step == 2:
            self.peak, self.phase = self.tracker.peak, self.tracker.peak_phase

    def current(self):
        return self.peak

    def measured(self) -> dict:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.baseline
        return {"peak_allocated": self.peak, "peak_device": rss, "peak_phase": self.phase,
                "peak_rss_above_baseline": rss}


class CudaMeter:
    """Memory of a trial on a GPU: the allocator's peaks from step 2 on (step 1 creates the optimizer
    states and warms the allocator)."""

    @contextmanager
    def step(self, step: int, built, group: list):
        if step == 2:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        yield lambda name: None
        torch.cuda.synchronize()

    def current(self):
        return torch.cuda.max_memory_allocated()

    def measured(self) -> dict:
        free, total = torch.cuda.mem_get_info()
        return {"peak_allocated": torch.cuda.max_memory_allocated(), "peak_device": total - free,
                "peak_reserved": torch.cuda.max_memory_reserved()}
