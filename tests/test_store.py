"""The run store survives what users' disks do to it: a corrupt or foreign database is moved aside
(kept) and a fresh one started; a bad row is skipped, never fatal."""
import os
import sqlite3

import pytest

from tuners import store


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("content", [b"not a database at all" * 200, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_corrupt_database_is_moved_aside_and_a_new_one_started(home, content, capsys):
    (home / "runs.db").write_bytes(content)
    assert store.list_runs() == []
    run_id, _ = store.new_run({"plan": {"method": "lora", "model": "m"}})
    assert store.get(run_id)["status"] == "queued"
    aside = list(home.glob("runs.db.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content  # nothing deleted
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_foreign_runs_table_is_moved_aside(home):
    con = sqlite3.connect(home / "runs.db")
    con.execute("CREATE TABLE runs (name TEXT)")
    con.commit()
    con.close()
    run_id, _ = store.new_run({"plan": {"method": "lora", "model": "m"}})
    assert [r["id"] for r in store.list_runs()] == [run_id] and list(home.glob("runs.db.unreadable-*"))


def test_a_bad_row_is_skipped(home):
    good, _ = store.new_run({"plan": {"method": "lora", "model": "m"}})
    bad, _ = store.new_run({"plan": {"method": "full", "model": "m"}})
    con = sqlite3.connect(home / "runs.db")
    con.execute("UPDATE runs SET estimate = '{broken' WHERE id = ?", (bad,))
    con.commit()
    con.close()
    assert [r["id"] for r in store.list_runs()] == [good]
    assert store.get(bad) is None


def test_a_reused_pid_does_not_keep_a_dead_run_running(home):
    """A live PID that belongs to another process (its start time differs) is not the run's."""
    run_id, _ = store.new_run({"plan": {"method": "lora", "model": "m"}})
    me = os.getpid()
    store.update(run_id, status="running", pid=me, pid_start=store.process_start(me))
    assert store.get(run_id)["status"] == "running"  # really alive
    store.update(run_id, pid_start=store.process_start(me) - 1)  # same PID, another process's start
    row = store.get(run_id)
    assert row["status"] == "failed" and "ended without a result" in row["error"]


def test_a_store_from_before_pid_start_is_migrated(home):
    con = sqlite3.connect(home / "runs.db")
    con.execute("""CREATE TABLE runs (id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL,
        status TEXT NOT NULL, method TEXT, model TEXT, device TEXT, pid INTEGER, run_dir TEXT NOT NULL,
        request TEXT, estimate TEXT, measured TEXT, extrapolated TEXT, error TEXT)""")
    con.execute("INSERT INTO runs VALUES ('old', 1, 2, 'completed', 'lora', 'm', 'cpu', NULL, '/x', NULL, NULL, NULL, "
                "NULL, NULL)")
    con.commit()
    con.close()
    assert [r["id"] for r in store.list_runs()] == ["old"] and not list(home.glob("runs.db.unreadable-*"))
    con = sqlite3.connect(home / "runs.db")
    assert con.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
