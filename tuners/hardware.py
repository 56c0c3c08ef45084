"""This machine's CPU as a "device" the estimators understand: its memory and a measured matmul peak.

A CPU has no datasheet TFLOP/s we can look up, so we measure: the best of a few large matrix
products per dtype (what training's linear layers run), and the memory bandwidth of a large copy. Cached per CPU model and thread count in
the data folder, so only the first trial on a machine pays the second or two it takes.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from estimators.catalog import GPU
from tuners import store

# Share of the measured matmul peak a whole fp32 training step reaches before calibration. From
# bench/accuracy.py --quick (2026-11-22, 2-core CPU, ~60M Llama): full 0.57, LoRA 0.62, prompt
# tuning 0.67, adapters 0.68 of peak at 0.5 assumed -> 0.65.
CPU_DEFAULT_EFFICIENCY = 0.65


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def proc_bytes(path: str, key: str) -> int | None:
    """A ``kB`` line of a /proc file (``VmRSS:`` of /proc/self/status, ``MemTotal:`` of /proc/meminfo)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _mem_total() -> int:
    return proc_bytes("/proc/meminfo", "MemTotal:") or 8 * 1024**3


def matmul_tflops(dtype_name: str, n: int | None = None, repeats: int = 5) -> float:
    """Best of several square matmuls after two warm-ups (single measurements varied by ~50 %).
    bf16 is often emulated on CPUs (hundreds of times slower), so it gets a smaller matrix."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    n = n or (1024 if dtype_name == "fp32" else 384)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def copy_gbs(mib: int = 64, repeats: int = 5) -> float:
    """Host memory bandwidth: the best of a few copies of a ``mib`` MiB tensor (read + write bytes),
    what the step-time model's memory-bound terms (optimizer step, dequantization) divide by."""
    import torch

    a = torch.empty(mib * 2**20 // 4, dtype=torch.float32).fill_(1.0)
    b = torch.empty_like(a)
    b.copy_(a)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        b.copy_(a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.numel() * 4 / best / 1e9


def cpu_device() -> GPU:
    import torch

    key = f"{cpu_name()}|{torch.get_num_threads()} threads|torch {torch.__version__}"
    cache = store.home() / "cpu_peak.json"
    try:
        known = json.loads(cache.read_text()) if cache.exists() else {}
        peaks = known.get(key) if isinstance(known, dict) else None
        if not (isinstance(peaks, dict) and all(isinstance(peaks.get(p), (int, float)) and peaks[p] > 0
                                                for p in ("fp32", "bf16", "bandwidth_gbs"))):
            peaks = None
    except (OSError, ValueError, UnicodeDecodeError):  # a corrupt cache is measured again, never fatal
        known, peaks = {}, None
    if peaks is None:
        peaks = {p: matmul_tflops(p) for p in ("fp32", "bf16")}
        peaks["bandwidth_gbs"] = copy_gbs()
        known = {**(known if isinstance(known, dict) else {}), key: peaks}
        try:
            store.write_private(cache, json.dumps(known, indent=2))  # this user's only
        except OSError:
            pass
    return GPU(id="cpu", name=f"CPU ({cpu_name()}, {torch.get_num_threads()} threads)", memory_bytes=_mem_total(),
               tflops={"fp32": peaks["fp32"], "bf16": peaks["bf16"], "fp16": peaks["bf16"]},
               bandwidth_gbs=peaks["bandwidth_gbs"],
               efficiency=CPU_DEFAULT_EFFICIENCY, source=f"measured matmul peak on this machine (pid {os.getpid()})")
