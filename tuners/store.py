"""The run history: SQLite in ``$TUNING_ADVISOR_HOME`` (default ``~/.tuning-advisor``), one row per
trial run, plus a folder per run holding its events (JSON lines) and result JSON.

Each write is one short transaction, so a crash leaves the store consistent; a run whose process
died without finishing is marked ``failed`` the next time the history is read.
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

STATUSES = ("queued", "running", "completed", "failed", "cancelled")
_COLUMNS = ("id", "created", "updated", "status", "method", "model", "device", "pid", "run_dir", "request",
            "estimate", "measured", "extrapolated", "error", "pid_start")
# Columns added after the first release, with their types: _open adds them to an older store and
# records the schema version it brought the store to (SQLite's user_version).
_MIGRATIONS = {"pid_start": "INTEGER"}
SCHEMA_VERSION = 2
_JSON = ("request", "estimate", "measured", "extrapolated")


def _home_path() -> Path:
    return Path(os.environ.get("TUNING_ADVISOR_HOME") or Path.home() / ".tuning-advisor")


def db_path() -> Path:
    """Where the store is (nothing created: readers of a missing store get nothing)."""
    return _home_path() / "runs.db"


def home() -> Path:
    """The data folder, created if needed."""
    path = _home_path()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)  # runs hold users' data and plans: theirs only
    return path


def uploads() -> Path:
    """The folder of uploaded data files: this user's only (0700)."""
    folder = home() / "uploads"
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def write_private(path: Path, data: bytes) -> None:
    """Writes a file only this user can read (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


_RUNS_TABLE = """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued','running','completed','failed','cancelled')),
        method TEXT, model TEXT, device TEXT, pid INTEGER, run_dir TEXT NOT NULL,
        request TEXT, estimate TEXT, measured TEXT, extrapolated TEXT, error TEXT)"""


def _open(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(_RUNS_TABLE)
    columns = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
    if {"id", "status", "run_dir"} <= columns:
        for name, kind in _MIGRATIONS.items():
            if name not in columns:
                con.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
                columns.add(name)
    if not set(_COLUMNS) <= columns:  # a foreign table of the same name
        con.close()
        raise sqlite3.DatabaseError(f"table 'runs' lacks columns {sorted(set(_COLUMNS) - columns)}")
    if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return con


def _connect() -> sqlite3.Connection:
    """The store; a corrupt or foreign database is moved aside (kept, never deleted) with a one-line
    notice, and a fresh one is started."""
    path = home() / "runs.db"
    try:
        return _open(path)
    except sqlite3.DatabaseError as exc:
        aside = path.with_name(f"runs.db.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            if Path(str(path) + suffix).exists():
                os.replace(str(path) + suffix, str(aside) + suffix)
        print(f"tuning-advisor: the run history {path} could not be read ({exc}); moved it to {aside.name} "
              "and started a new one", file=sys.stderr)
        return _open(path)


@contextmanager
def _session():
    """One transaction on the store, committed (or rolled back) and closed: a closed connection lets
    SQLite fold the WAL back into the database, so a later read-only reader sees everything."""
    con = _connect()
    try:
        with con:
            yield con
    finally:
        con.close()


def new_run(request: dict) -> tuple[str, Path]:
    plan = request.get("plan") or request  # a trial request carries its plan
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    run_dir = home() / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "request.json").write_text(json.dumps(request, indent=2))
    now = time.time()
    with _session() as con:
        con.execute("INSERT INTO runs (id, created, updated, status, method, model, run_dir, request) "
                    "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                    (run_id, now, now, plan.get("method"), plan.get("model"), str(run_dir), json.dumps(request)))
    return run_id, run_dir


def update(run_id: str, **fields) -> None:
    bad = set(fields) - set(_COLUMNS)
    if bad:
        raise KeyError(f"unknown run fields {bad}")
    if "status" in fields and fields["status"] not in STATUSES:
        raise ValueError(f"bad status {fields['status']!r}")
    values = {k: json.dumps(v) if k in _JSON and v is not None else v for k, v in fields.items()}
    values["updated"] = time.time()
    sets = ", ".join(f"{k} = ?" for k in values)
    with _session() as con:
        con.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*values.values(), run_id))


def _row(r) -> dict | None:
    """A run as a dict; None for a row that cannot be read (skipped, never fatal)."""
    d = dict(zip(_COLUMNS, r))
    try:
        for k in _JSON:
            d[k] = json.loads(d[k]) if d[k] else None
    except (json.JSONDecodeError, TypeError):
        print(f"tuning-advisor: skipped run {d.get('id')!r} of the history: a field is not valid JSON", file=sys.stderr)
        return None
    if not isinstance(d["created"], (int, float)) or not isinstance(d["updated"], (int, float)):
        return None
    return d


def process_start(pid: int) -> int | None:
    """When the process started (clock ticks since boot, /proc/PID/stat field 22): with the PID it
    names one process, even after the PID is reused."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int | None, start: int | None = None) -> bool:
    if not pid:
        return False
    if start is not None and process_start(pid) not in (None, start):
        return False  # the PID now belongs to another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (finished but not yet reaped by its parent) is not running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return True


CANCEL_REQUESTED = "cancelled by the user"


def _reap(con, rows: list[dict]) -> None:
    """A live-looking run whose process is gone ends as cancelled (when a cancel was asked for) or failed
    (written back unless ``con`` is None: a read-only store is only shown right)."""
    for r in rows:
        if r["status"] in ("queued", "running") and r["pid"] and not _alive(r["pid"], r.get("pid_start")):
            cancelled = r["error"] == CANCEL_REQUESTED
            r["status"] = "cancelled" if cancelled else "failed"
            r["error"] = r["error"] or "the run's process ended without a result (killed or crashed)"
            if con is not None:
                con.execute("UPDATE runs SET status = ?, error = ?, updated = ? WHERE id = ? AND status IN "
                            "('queued', 'running')", (r["status"], r["error"], time.time(), r["id"]))


def live_runs() -> list[dict]:
    """Runs whose process is alive (queued or running), newest first."""
    return [r for r in list_runs(50) if r["status"] in ("queued", "running")]


def _writable(path: Path) -> bool:
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def _read_only(path: Path, query: str, args: tuple) -> list[tuple]:
    """A query on the store without writing to it: ``mode=ro`` (a read-only WAL store needs its -shm
    file), else ``immutable=1``. Raises the last sqlite3.Error when neither opens it."""
    for mode in ("mode=ro", "immutable=1"):
        try:
            con = sqlite3.connect(f"file:{path}?{mode}", uri=True, timeout=5)
            try:
                return con.execute(query, args).fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            problem = exc
    raise problem


def _read(query: str, args: tuple) -> list[dict]:
    """Rows of a query, reaping dead runs on the way. Reading needs no write access: with no store
    there is nothing to read, and a store in a read-only home is opened immutable (no reaping)."""
    path = db_path()
    if not path.is_file():
        return []
    if not _writable(path):
        try:
            rows = [row for r in _read_only(path, query, args) if (row := _row(r)) is not None]
        except sqlite3.Error as exc:
            print(f"tuning-advisor: the run history {path} could not be read ({exc})", file=sys.stderr)
            return []
        _reap(None, rows)
        return rows
    with _session() as con:
        rows = [row for r in con.execute(query, args) if (row := _row(r)) is not None]
        _reap(con, rows)
    return rows


def get(run_id: str) -> dict | None:
    rows = _read(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE id = ?", (run_id,))
    return rows[0] if rows else None


def list_runs(limit: int = 100) -> list[dict]:
    return _read(f"SELECT {', '.join(_COLUMNS)} FROM runs ORDER BY created DESC LIMIT ?", (limit,))


def events(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "events.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            break
    return out


# --- calibration records (what trial runs measured per device, method and precision) -----------

_CALIBRATION_TABLE = """CREATE TABLE IF NOT EXISTS calibration (
    device TEXT NOT NULL, method TEXT NOT NULL, precision TEXT NOT NULL,
    efficiency REAL NOT NULL, overhead_bytes INTEGER, slack REAL,
    runs INTEGER NOT NULL, updated REAL NOT NULL, run_id TEXT,
    PRIMARY KEY (device, method, precision))"""


def record_calibration(device: str, method: str, precision: str, efficiency: float, run_id: str,
                       overhead_bytes: int | None = None, slack: float | None = None) -> None:
    if not (efficiency > 0):
        raise ValueError(f"efficiency must be positive, got {efficiency}")
    with _session() as con:
        con.execute(_CALIBRATION_TABLE)
        row = con.execute("SELECT runs FROM calibration WHERE device=? AND method=? AND precision=?",
                          (device, method, precision)).fetchone()
        runs = (row[0] if row else 0) + 1
        con.execute("INSERT OR REPLACE INTO calibration VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (device, method, precision, efficiency, overhead_bytes, slack, runs, time.time(), run_id))


def calibration_for(device: str | None, method: str, precision: str):
    """The latest calibration for (device, method, precision); without one, the latest for this device
    and precision from another method of the same family (``estimators.calibration.method_family``:
    the stored efficiency is the method-independent base, which holds within a family; the record says
    which method measured it). None when there is none — also when the store is missing, unreadable or
    corrupt: an estimate never fails because of the history."""
    from estimators.calibration import Calibration, method_family

    if not device:
        return None
    path = db_path()
    if not path.is_file():
        return None
    try:
        rows = _read_only(path, "SELECT device, method, precision, efficiency, overhead_bytes, slack, runs, updated, "
                                "run_id FROM calibration WHERE device=? AND precision=? ORDER BY method = ? DESC, "
                                "updated DESC", (device, precision, method))
        family = method_family(method)
        rows = [r for r in rows if r[1] in REGISTRY_IDS() and method_family(r[1]) == family]
        cal = Calibration(*rows[0]) if rows else None
        return cal if cal is not None and cal.efficiency > 0 else None
    except (sqlite3.Error, TypeError, ValueError):
        return None


def REGISTRY_IDS() -> tuple[str, ...]:  # noqa: N802 - the registry's ids, looked up lazily (no import cycle)
    from estimators.methods import METHOD_IDS

    return tuple(METHOD_IDS)


def calibration_stamp() -> float:
    """Changes when a trial records a calibration (for caches of estimates): the store's mtime."""
    try:
        return db_path().stat().st_mtime
    except OSError:
        return 0.0
