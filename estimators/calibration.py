"""Calibration from trial runs: what a device really achieves, per method and precision.

A completed trial records (device, method, precision) → the efficiency it reached (normalised so
that passing it to ``estimate`` reproduces the measured tokens/s) and the memory the process held
beyond the peak of live tensors. Later estimates on the same device use the latest values and say
so in ``assumptions``; without a record they fall back to the documented defaults.

Stored in the run store's SQLite file (``$TUNING_ADVISOR_HOME/runs.db``); stdlib only.
"""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path


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
        return f"calibrated on {self.device} by {self.runs} trial run(s), latest {self.run_id} ({when})"


def _db() -> Path:
    home = Path(os.environ.get("TUNING_ADVISOR_HOME") or Path.home() / ".tuning-advisor")
    home.mkdir(parents=True, exist_ok=True)
    return home / "runs.db"


def _connect() -> sqlite3.Connection:
    con = sqlite3.connect(_db(), timeout=30)
    con.execute("""CREATE TABLE IF NOT EXISTS calibration (
        device TEXT NOT NULL, method TEXT NOT NULL, precision TEXT NOT NULL,
        efficiency REAL NOT NULL, overhead_bytes INTEGER, slack REAL,
        runs INTEGER NOT NULL, updated REAL NOT NULL, run_id TEXT,
        PRIMARY KEY (device, method, precision))""")
    return con


def record(device: str, method: str, precision: str, efficiency: float, run_id: str,
           overhead_bytes: int | None = None, slack: float | None = None) -> None:
    if not (efficiency > 0):
        raise ValueError(f"efficiency must be positive, got {efficiency}")
    with _connect() as con:
        row = con.execute("SELECT runs FROM calibration WHERE device=? AND method=? AND precision=?",
                          (device, method, precision)).fetchone()
        runs = (row[0] if row else 0) + 1
        con.execute("INSERT OR REPLACE INTO calibration VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (device, method, precision, efficiency, overhead_bytes, slack, runs, time.time(), run_id))


def lookup(device: str | None, method: str, precision: str) -> Calibration | None:
    if not device or not _db().exists():
        return None
    with _connect() as con:
        row = con.execute("SELECT * FROM calibration WHERE device=? AND method=? AND precision=?",
                          (device, method, precision)).fetchone()
    return Calibration(*row) if row else None


def all_records() -> list[Calibration]:
    if not _db().exists():
        return []
    with _connect() as con:
        return [Calibration(*r) for r in con.execute("SELECT * FROM calibration ORDER BY device, method")]
