"""The run history: SQLite in ``$TUNING_ADVISOR_HOME`` (default ``~/.tuning-advisor``), one row per
trial run, plus a folder per run holding its events (JSON lines) and result JSON.

Each write is one short transaction, so a crash leaves the store consistent. What the disk does to
it, and what happens then:

* really corrupt (not an SQLite header, ``PRAGMA quick_check`` fails) or a foreign database: moved
  aside under a name no earlier copy has (kept, never deleted), and a fresh store started;
* full, locked by another process, read-only, an I/O error: the file is kept as it is. Writes raise
  ``StoreError`` (one line with the fix; the CLI exits 2), reads answer from the file as it is;
* a run that ended while its row could not be written: its row takes the end from the run folder's
  ``result.json``, and a folder the store lacks entirely is added back (``list_runs``);
* a row whose process is gone (none recorded, dead, a PID no process can have, a PID reused): marked
  failed with why on the next read; never counted as a live trial; ``prune`` removes such runs.
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

from tuners.home import (HOME_ENV, StoreError, check_home, disk_full, home, home_path, home_problem,  # noqa: F401
                         pin_home, private_dir, uploads, write_private)

STATUSES = ("queued", "running", "completed", "failed", "cancelled")
_COLUMNS = ("id", "created", "updated", "status", "method", "model", "device", "pid", "run_dir", "request",
            "estimate", "measured", "extrapolated", "error", "pid_start")
# Columns added after the first release, with their types: _open adds them to an older store and
# records the schema version it brought the store to (SQLite's user_version).
_MIGRATIONS = {"pid_start": "INTEGER"}
SCHEMA_VERSION = 2
_JSON = ("request", "estimate", "measured", "extrapolated")


def db_path() -> Path:
    """Where the store is (nothing created: readers of a missing store get nothing)."""
    return home_path() / "runs.db"


class _Foreign(sqlite3.DatabaseError):
    """A database whose ``runs`` table is not ours."""


_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def _unavailable(path: Path, exc: BaseException) -> StoreError:
    """One line for a store that is fine but cannot be used now, with the fix."""
    if isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error):
        return StoreError(home_problem(path.parent, exc))
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = f"{name} {exc}".lower()
    if "full" in text or ("ioerr" in text or "i/o" in text) and disk_full(path.parent):
        why = "the disk is full: free space on it and run the command again (nothing in it was lost)"
    elif "busy" in text or "locked" in text:
        why = ("it is locked by another process (another tuning-advisor command, or a tool holding it open): "
               "try again when that finishes")
    elif "readonly" in text or "read-only" in text or "perm" in text or "cantopen" in text or "unable to open" in text:
        why = (f"it cannot be written (permissions or a read-only disk): fix the permissions of {path.parent}, or set "
               f"{HOME_ENV} to a writable folder")
    elif "ioerr" in text or "i/o" in text:
        why = "the disk reported an I/O error (often a full disk): free space or check the disk, then run it again"
    else:
        why = f"{exc}: run the command again; if it persists, check the disk"
    return StoreError(f"the run history {path} is kept as it is but cannot be used now: {why}")


def _corruption(path: Path) -> str | None:
    """Why ``path`` is really corrupt (not SQLite, or its own check fails), else None. Checked on a
    read-only connection, so a full, locked or read-only disk never looks like corruption."""
    try:
        with open(path, "rb") as f:
            header = f.read(16)
    except OSError:
        return None
    if header and header != b"SQLite format 3\x00":
        return "not an SQLite database"
    if not header:
        return None  # an empty file is an empty database to SQLite
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        try:
            verdict = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        return str(exc) if name in _CORRUPT or "malformed" in str(exc) or "not a database" in str(exc) else None
    return None if verdict == "ok" else f"its integrity check fails ({str(verdict)[:80]})"


def _aside_name(path: Path) -> Path:
    """A name no earlier copy has: the second and a counter (a copy is never overwritten)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        aside = path.with_name(f"runs.db.unreadable-{stamp}" + (f"-{n}" if n else ""))
        if not any(Path(str(aside) + s).exists() for s in ("", "-wal", "-shm")):
            return aside
    return path.with_name(f"runs.db.unreadable-{stamp}-{uuid.uuid4().hex[:8]}")


def _move_aside(path: Path, why: str) -> None:
    aside = _aside_name(path)
    for suffix in ("", "-wal", "-shm"):
        if Path(str(path) + suffix).exists():
            os.replace(str(path) + suffix, str(aside) + suffix)  # a free name: no earlier copy is overwritten
    print(f"tuning-advisor: the run history {path} is damaged ({why}); moved it to {aside.name} (kept) and started "
          "a new one", file=sys.stderr)


_RUNS_TABLE = """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued','running','completed','failed','cancelled')),
        method TEXT, model TEXT, device TEXT, pid INTEGER, run_dir TEXT NOT NULL,
        request TEXT, estimate TEXT, measured TEXT, extrapolated TEXT, error TEXT)"""


def _busy_timeout() -> float:
    try:
        return min(3600.0, max(0.1, float(os.environ.get("TUNING_ADVISOR_BUSY_TIMEOUT", 30))))
    except ValueError:
        return 30.0


BUSY_TIMEOUT = _busy_timeout()
"""Seconds a command waits for another process's lock on the store before it says so (30;
``TUNING_ADVISOR_BUSY_TIMEOUT`` changes it)."""


def _open(path: Path) -> sqlite3.Connection:
    try:  # created 0600 before SQLite opens it (an empty file is an empty database); its -wal/-shm copy its mode
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(_RUNS_TABLE)
        columns = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
        if {"id", "status", "run_dir"} <= columns:
            for name, kind in _MIGRATIONS.items():
                if name not in columns:
                    con.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
                    columns.add(name)
        if not set(_COLUMNS) <= columns:  # a foreign table of the same name
            raise _Foreign(f"its table 'runs' lacks columns {sorted(set(_COLUMNS) - columns)}")
        if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        con.close()
        raise
    for suffix in ("", "-wal", "-shm"):  # SQLite creates its files with the umask's mode
        try:
            os.chmod(str(path) + suffix, 0o600)
        except OSError:
            pass
    return con


def _connect() -> sqlite3.Connection:
    """The store. Only a really corrupt file (not SQLite, or its integrity check fails) or a foreign
    database is moved aside (kept, under a name no earlier copy has) with a one-line notice, and a fresh
    one started. A full, locked, read-only or failing disk leaves the file as it is: StoreError."""
    try:
        path = home() / "runs.db"
    except OSError as exc:
        raise StoreError(home_problem(home_path(), exc)) from None
    try:
        return _open(path)
    except _Foreign as exc:
        why = str(exc)
    except sqlite3.Error as exc:
        why = _corruption(path) if getattr(exc, "sqlite_errorname", "") in _CORRUPT else None
        if why is None:
            raise _unavailable(path, exc) from None
    try:
        _move_aside(path, why)
        return _open(path)
    except (OSError, sqlite3.Error) as exc:
        raise _unavailable(path, exc) from None


@contextmanager
def _session():
    """One transaction on the store, committed (or rolled back) and closed: a closed connection lets
    SQLite fold the WAL back into the database, so a later read-only reader sees everything. A write
    that fails (full, locked, I/O) is a StoreError; nothing is moved aside mid-session."""
    con = _connect()
    try:
        with con:
            yield con
    except sqlite3.Error as exc:
        raise _unavailable(db_path(), exc) from None
    finally:
        con.close()


def new_run(request: dict) -> tuple[str, Path]:
    """A new run's folder and row (queued). When the store cannot record it (StoreError), the folder is
    removed again: nothing ran, nothing is half-recorded."""
    import shutil

    plan = request.get("plan") or request  # a trial request carries its plan
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    runs = check_home() / "runs"
    run_dir = runs / run_id
    try:
        run_dir.mkdir(mode=0o700)
        write_private(run_dir / "request.json", json.dumps(request, indent=2).encode())
        now = time.time()
        with _session() as con:
            con.execute("INSERT OR REPLACE INTO runs (id, created, updated, status, method, model, run_dir, request) "
                        "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                        (run_id, now, now, plan.get("method"), plan.get("model"), str(run_dir), json.dumps(request)))
    except (OSError, StoreError) as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(exc, StoreError):
            raise
        raise StoreError(home_problem(runs.parent, exc)) from None
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


def try_update(run_id: str, **fields) -> bool:
    """``update`` for a running trial: a store that cannot be written now (full, locked) does not stop
    the run; its end is recorded from the run folder's result.json once the store is writable."""
    try:
        update(run_id, **fields)
        return True
    except StoreError as exc:
        notice(f"tuning-advisor: {exc}")
        return False


RECORD_RETRY_S = 60.0
"""How long a finished run keeps trying to record its end while the disk is full or the store locked."""


def record_result(run_id: str, run_dir: Path, result: dict) -> bool:
    """A run's end: ``result.json`` in its folder and its row, each on its own and retried for up to
    RECORD_RETRY_S (a full disk freed meanwhile loses nothing). What still could not be written is
    recovered later: the row's end from result.json, a run with neither marked failed with why."""
    written = recorded = False
    deadline = time.time() + RECORD_RETRY_S
    while True:
        if not written:
            try:
                write_private(run_dir / "result.json", json.dumps(result, indent=2).encode())
                written = True
            except OSError as exc:
                notice(f"tuning-advisor: could not write {run_dir / 'result.json'} ({exc.strerror or exc}); retrying")
        recorded = recorded or try_update(run_id, status=result["status"], estimate=result["estimate"],
                                          measured=result["measured"], extrapolated=result["extrapolated"],
                                          error=result["error"])
        if (written and recorded) or time.time() > deadline:
            return written and recorded
        time.sleep(2)


def _row(r) -> dict | None:
    """A run as a dict; None for a row that cannot be read (skipped, never fatal)."""
    d = dict(zip(_COLUMNS, r))
    try:
        for k in _JSON:
            d[k] = json.loads(d[k]) if d[k] else None
    except (json.JSONDecodeError, TypeError, RecursionError):
        print(f"tuning-advisor: skipped run {d.get('id')!r} of the history: a field is not valid JSON", file=sys.stderr)
        return None
    if not isinstance(d["created"], (int, float)) or not isinstance(d["updated"], (int, float)):
        return None
    if not isinstance(d["pid"], int) or isinstance(d["pid"], bool):
        d["pid"] = None  # text or a float in the column: no process we started
    return d


PID_MAX = 2**22
"""The largest PID Linux hands out (``/proc/sys/kernel/pid_max`` is at most 4,194,304): a larger
number in a row names no process."""


def process_start(pid: int) -> int | None:
    """When the process started (clock ticks since boot, /proc/PID/stat field 22): with the PID it
    names one process, even after the PID is reused."""
    if not isinstance(pid, int) or not 0 < pid <= PID_MAX:
        return None
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _runs_this(pid: int, run_id: str | None) -> bool:
    """Whether the live process ``pid`` is this run's runner (its command line names the run); True
    when that cannot be told (no /proc)."""
    if not run_id:
        return True
    try:
        return run_id.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def _alive(pid: int | None, start: int | None = None, run_id: str | None = None) -> bool:
    if not isinstance(pid, int) or not 0 < pid <= PID_MAX:
        return False  # no PID, or one no process can have
    if start is not None and process_start(pid) not in (None, start):
        return False  # the PID now belongs to another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    # A zombie (finished but not yet reaped by its parent) is not running.
    try:
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] == "Z":
            return False
    except OSError:
        return True
    # A row from before pid_start was recorded: a live PID counts only if its command names the run.
    return start is not None or _runs_this(pid, run_id)


CANCEL_REQUESTED = "cancelled by the user"
START_GRACE_S = 60.0
"""A queued row gets its PID within milliseconds of being written (launch.start); one still without a
PID after this long never started (its launcher died), and ends as failed."""


def _ended(r: dict) -> str | None:
    """Why a live-looking row is in fact over (its process is gone), else None."""
    if r["status"] not in ("queued", "running"):
        return None
    if r["pid"] is None:
        if time.time() - r["created"] < START_GRACE_S and r["status"] == "queued":
            return None  # being started right now
        return "the run never started: no process was recorded for it (its launcher ended first)"
    if not _alive(r["pid"], r.get("pid_start"), r["id"]):
        if not 0 < r["pid"] <= PID_MAX:
            return f"the run's recorded process ({r['pid']}) cannot exist: the row is damaged"
        return "the run's process ended without a result (killed or crashed)"
    return None


def _from_folder(r: dict) -> dict:
    """A run's own result.json (written by its runner even when the store could not be): its status and
    figures; {} when there is none."""
    try:
        res = json.loads((Path(r["run_dir"]) / "result.json").read_text())
    except (OSError, ValueError, RecursionError, TypeError):
        return {}
    if not isinstance(res, dict) or res.get("status") not in ("completed", "failed", "cancelled"):
        return {}
    return {k: res.get(k) for k in ("status", "device", "estimate", "measured", "extrapolated", "error")}


def _reap(con, rows: list[dict]) -> None:
    """A live-looking run whose process is gone ends as its result.json says, else as cancelled (when a
    cancel was asked for) or failed with why (written back unless ``con`` is None: a store that cannot
    be written is only shown right)."""
    for r in rows:
        why = _ended(r)
        if why is None:
            continue
        found = _from_folder(r)
        if found:
            r.update({k: v for k, v in found.items() if v is not None or k == "error"})
        else:
            r["status"] = "cancelled" if r["error"] == CANCEL_REQUESTED else "failed"
            r["error"] = r["error"] or why
        if con is not None:
            con.execute("UPDATE runs SET status = ?, error = ?, device = ?, estimate = ?, measured = ?, extrapolated = ?, "
                        "updated = ? WHERE id = ? AND status IN ('queued', 'running')",
                        (r["status"], r["error"], r["device"], *(json.dumps(r[k]) if r[k] is not None else None
                                                                for k in ("estimate", "measured", "extrapolated")),
                         time.time(), r["id"]))


def live_runs() -> list[dict]:
    """Runs whose process is alive (queued or running), newest first: what counts against the limit
    of trials at once. A row without a live process of its own never counts."""
    return [r for r in list_runs(50) if r["status"] in ("queued", "running") and r["pid"] is not None]


def _writable(path: Path) -> bool:
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def _read_only(path: Path, query: str, args: tuple) -> list[tuple]:
    """A query on the store without writing to it: ``mode=ro`` (a read-only WAL store needs its -shm
    file), else ``immutable=1``. Raises the last sqlite3.Error when neither opens it."""
    for mode in ("mode=ro", "immutable=1"):
        try:
            con = sqlite3.connect(f"file:{path}?{mode}", uri=True, timeout=min(5.0, BUSY_TIMEOUT))
            try:
                return con.execute(query, args).fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            problem = exc
    raise problem


def _read(query: str, args: tuple, heal: bool = False) -> list[dict]:
    """Rows of a query, reaping dead runs on the way (and with ``heal``, adding runs whose folder the
    store lacks). Reading needs no write access: with no store there is nothing to read, and a store
    that cannot be written now (read-only home, full disk, a lock) is read as it is, with a notice."""
    path = db_path()
    if not path.is_file() and not (heal and any(_run_folders())):
        return []
    if _writable(path):
        try:
            with _session() as con:
                if heal:
                    _rebuild(con)
                rows = [row for r in con.execute(query, args) if (row := _row(r)) is not None]
                _reap(con, rows)
            return rows
        except StoreError as exc:
            if not path.is_file():
                return []
            notice(f"tuning-advisor: shown as it is, not updated: {exc}")
    try:
        rows = [row for r in _read_only(path, query, args) if (row := _row(r)) is not None]
    except sqlite3.Error as exc:
        notice(f"tuning-advisor: the run history {path} could not be read ({exc}); it is kept as it is")
        return []
    _reap(None, rows)
    return rows


_SAID: set[str] = set()


def notice(line: str) -> None:
    """A one-line notice on stderr, once per process (a follow loop reads the store every 0.2 s)."""
    if line not in _SAID:
        _SAID.add(line)
        try:
            print(line, file=sys.stderr, flush=True)
        except OSError:  # stderr is a log file on the same full disk
            pass


def full_disk_message(exc: BaseException) -> str | None:
    """The one line for a run that failed because its disk filled up (ENOSPC, EDQUOT), else None."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return f"the disk filled up during the run{where}: free space on it, then run the trial again"
    return None


def get(run_id: str) -> dict | None:
    rows = _read(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE id = ?", (run_id,))
    return rows[0] if rows else None


def list_runs(limit: int = 100) -> list[dict]:
    """The newest runs; runs whose folder holds a result the store lacks are added first."""
    return _read(f"SELECT {', '.join(_COLUMNS)} FROM runs ORDER BY created DESC LIMIT ?", (limit,), heal=True)


# --- healing: runs the store missed, rows nothing will finish ------------------------------------


def _run_folders() -> list[Path]:
    folder = home_path() / "runs"
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def _rebuild(con) -> int:
    """Rows for run folders the store lacks (a run recorded while the store could not be written, or
    a store started afresh): status and figures from the folder's result.json, the request from its
    request.json. A folder without a result that is younger than START_GRACE_S is being created."""
    known = {r[0] for r in con.execute("SELECT id FROM runs")}
    added = 0
    for folder in _run_folders():
        if folder.name in known:
            continue
        r = {"run_dir": str(folder)}
        found = _from_folder(r)
        try:
            created = folder.stat().st_mtime
            request = json.loads((folder / "request.json").read_text())
        except (OSError, ValueError, RecursionError):
            continue  # not a run folder of ours
        if not isinstance(request, dict) or (not found and time.time() - created < START_GRACE_S):
            continue
        plan = request.get("plan") if isinstance(request.get("plan"), dict) else request
        found = found or {"status": "failed", "error": "the run ended without a result while the run history could "
                                                       "not be written (recovered from its folder)"}
        con.execute("INSERT OR IGNORE INTO runs (id, created, updated, status, method, model, device, run_dir, request, "
                    "estimate, measured, extrapolated, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (folder.name, created, time.time(), found["status"], str(plan.get("method") or "") or None,
                     str(plan.get("model") or "") or None, found.get("device"), str(folder), json.dumps(request),
                     *(json.dumps(found.get(k)) if found.get(k) is not None else None
                       for k in ("estimate", "measured", "extrapolated")), found.get("error")))
        added += 1
    if added:
        print(f"tuning-advisor: recovered {added} run(s) from their folders into the run history", file=sys.stderr)
    return added


def end_stale(run_id: str) -> bool:
    """Ends a queued/running row that has no live process (cancelled by the user); False when the run
    has a live process (cancel that) or is over."""
    row = get(run_id)
    if row is None or row["status"] not in ("queued", "running") or _alive(row["pid"], row.get("pid_start"), run_id):
        return False
    update(run_id, status="cancelled", error=CANCEL_REQUESTED)
    return True


def prune() -> list[str]:
    """Removes the runs that ended without a result (killed, never started, stale rows; no result.json
    in their folder): their rows and folders. Runs with a result, and live runs, stay."""
    import shutil

    list_runs(10**6)  # reap first: whatever is over is marked so
    gone = []
    with _session() as con:
        for run_id, run_dir, status in con.execute("SELECT id, run_dir, status FROM runs").fetchall():
            if status in ("failed", "cancelled") and not (Path(run_dir or "") / "result.json").is_file():
                con.execute("DELETE FROM runs WHERE id = ?", (run_id,))
                gone.append((run_id, run_dir))
    root = (home_path() / "runs").resolve()
    for _, run_dir in gone:
        folder = Path(run_dir or "")
        if folder.is_dir() and folder.resolve().parent == root:  # only our own run folders
            shutil.rmtree(folder, ignore_errors=True)
    return [run_id for run_id, _ in gone]


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
