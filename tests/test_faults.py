"""Faults during trials: whatever kills or stalls a run, the history ends consistent (one final status
with a cause) and no process is left behind. Plus the store's faults: a home that cannot be written
still serves every command that only reads. The injected faults themselves (a full disk, a lock, stale
rows, a launcher's environment, damaged files) are in tests/test_fault_injection.py."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, reached, wait_until
from tests.test_tuners import home, plan_for, tiny  # noqa: F401  (fixtures)
from tuners import launch, store

slow = pytest.mark.slow


def _group_members(pgid):
    """Processes of process group ``pgid`` that still run (zombies awaiting their parent do not)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(stat.parent.name)
    return members


def _group_gone(pid, seconds=10):
    return wait_until(lambda: not _group_members(pid), seconds)


@slow
@pytest.mark.parametrize("when", ["start-up", "model build", "mid-step"])
def test_a_killed_runner_ends_failed_with_its_cause(home, tiny, when):  # noqa: F811
    run_id, run_dir = launch.start({"plan": plan_for(tiny, "lora").to_json(), "steps": 100000})
    if when == "model build":  # the device is recorded right before the data and model are loaded
        assert wait_until(lambda: store.get(run_id)["device"], 120, poll=0.02)
    elif when == "mid-step":
        assert wait_until(lambda: reached(run_dir, "step"), 120), "the run never reached a step"
    pid = store.get(run_id)["pid"]
    os.killpg(pid, signal.SIGKILL)  # no handler runs: the store must find out by itself
    res = launch.follow(run_id, timeout=60)
    assert res["status"] == "failed" and "killed or crashed" in res["error"], res
    assert store.get(run_id)["status"] == "failed"
    assert _group_gone(pid)


@slow
def test_a_timeout_covers_start_up_not_only_steps(home, tiny):  # noqa: F811
    run_id, run_dir = launch.start({"plan": plan_for(tiny, "lora").to_json(), "steps": 100000, "timeout": 0.05})  # well inside start-up (a tiny LoRA can reach a step in 0.5 s)
    res = launch.follow(run_id, timeout=120)
    assert res["status"] == "failed" and res["error_kind"] == "timeout", res
    assert not any(e["event"] == "step" for e in store.events(run_dir))  # it stopped before the first step
    assert _group_gone(store.get(run_id)["pid"])


@slow
def test_the_number_of_live_trials_is_limited(home, tiny, monkeypatch):  # noqa: F811
    from estimators.errors import InputError

    monkeypatch.setenv("TUNING_ADVISOR_MAX_TRIALS", "1")
    run_id, run_dir = launch.start({"plan": plan_for(tiny, "lora").to_json(), "steps": 100000})
    try:
        with pytest.raises(InputError, match="already running"):
            launch.start({"plan": plan_for(tiny, "lora").to_json(), "steps": 3})
    finally:
        launch.cancel(run_id)
        assert launch.follow(run_id, timeout=60)["status"] == "cancelled"


def _cli(home_path, *args):
    return subprocess.run([sys.executable, "-m", "advisor", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "TUNING_ADVISOR_HOME": str(home_path)})


def test_reading_commands_work_when_the_home_cannot_be_created(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unmakeable = blocker / "home"  # under a file: no one, root included, can create it
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"task": "chat", "goals": ["style"], "num_examples": 2000,
                                   "domain_distance": "moderate", "model": "llama-3.2-1b", "gpu": "l4"}))
    for args in (["models"], ["gpus"], ["runs"], ["runs", "--json"],
                 ["estimate", "--model", "llama-3.2-1b", "--method", "lora", "--gpu", "l4"],
                 ["recommend", "--answers", str(answers)]):
        r = _cli(unmakeable, *args)
        assert r.returncode == 0 and not r.stderr.strip(), (args, r.stderr)
    assert not unmakeable.exists()


def test_a_read_only_store_is_read_without_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path))
    run_id, _ = store.new_run({"method": "lora", "model": "x"})
    store.update(run_id, status="running", pid=2**22 + 4321)  # dead: a writable store would reap it
    before = store.db_path().read_bytes()
    monkeypatch.setattr(store, "_writable", lambda path: False)
    rows = store.list_runs()
    assert [r["id"] for r in rows] == [run_id] and rows[0]["status"] == "failed"  # shown right...
    assert store.db_path().read_bytes() == before  # ...and nothing written


# --- injected faults that need a real trial (the fast ones are in tests/test_fault_injection.py) -------


def _trial_cli(home_path, tiny, *extra, env=None, cwd=ROOT, model=None):  # noqa: F811
    args = ["trial", "--model", str(model or tiny / "model"), "--method", "lora", "--data", str(tiny / "train.jsonl"),
            "--steps", "3", "--batch-size", "2", "--seq-len", "32", "--precision", "fp32", "--json", *extra]
    return subprocess.run([sys.executable, "-m", "advisor", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "TUNING_ADVISOR_HOME": str(home_path), **(env or {})}, timeout=300)


@slow
def test_a_launchers_environment_and_a_relative_home_do_not_break_a_trial(tiny, tmp_path):  # noqa: F811
    env = {"WORLD_SIZE": "4", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "10.9.9.9", "MASTER_PORT": "1"}
    r = _trial_cli("relative-home", tiny, env=env, cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "completed", r.stderr[-2000:]
    assert (tmp_path / "relative-home" / "runs.db").is_file()  # the folder seen from where the command ran
    r = _trial_cli("relative-home", tiny, env={"RANK": "abc"}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]


@slow
def test_stale_rows_do_not_block_a_trial_and_show_as_failed(tiny, tmp_path):  # noqa: F811
    import sqlite3

    home_path = tmp_path / "home"
    r = _trial_cli(home_path, tiny)  # a real store with one run
    assert r.returncode == 0, r.stderr[-2000:]
    con = sqlite3.connect(home_path / "runs.db")
    old = time.time() - 3600
    for run_id, status, pid in (("q1", "queued", None), ("q2", "queued", None), ("absurd", "running", 999999999999)):
        con.execute("INSERT INTO runs (id, created, updated, status, pid, run_dir) VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, old, old, status, pid, str(home_path / "runs" / run_id)))
    con.commit()
    con.close()
    r = _trial_cli(home_path, tiny, env={"TUNING_ADVISOR_MAX_TRIALS": "1"})
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "completed", r.stderr[-2000:]
    rows = {row["id"]: row for row in json.loads(_cli(home_path, "runs", "--json").stdout)}
    assert all(rows[i]["status"] == "failed" and rows[i]["error"] for i in ("q1", "q2", "absurd"))
    assert sum(row["status"] == "completed" for row in rows.values()) == 2


@slow
@pytest.mark.parametrize("damage", ["weights", "tokenizer"])
def test_a_damaged_model_file_is_a_failed_run_naming_it(tiny, tmp_path, damage):  # noqa: F811
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny / "model", folder)
    if damage == "weights":
        (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:1000])
    else:
        (folder / "tokenizer.json").write_text("{}")
    r = _trial_cli(tmp_path / "home", tiny, model=folder)
    name = "model.safetensors" if damage == "weights" else "tokenizer.json"
    res = json.loads(r.stdout)
    assert r.returncode == 2 and res["status"] == "failed" and name in res["error"] and "re-" in res["error"], res
    rows = json.loads(_cli(tmp_path / "home", "runs", "--json").stdout)
    assert rows[0]["status"] == "failed" and name in rows[0]["error"]  # recorded


@slow
def test_a_disk_that_fills_mid_run_loses_no_run(tiny, tmp_path):  # noqa: F811
    from tests.test_fault_injection import _fill

    mount = tmp_path / "small-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        home_path = mount / "home"
        assert _trial_cli(home_path, tiny).returncode == 0  # an earlier run
        before = {p.name for p in (home_path / "runs").iterdir()}
        proc = subprocess.Popen([sys.executable, "-m", "advisor", "trial", "--model", str(tiny / "model"), "--method",
                                 "lora", "--data", str(tiny / "train.jsonl"), "--steps", "100000", "--batch-size", "2",
                                 "--seq-len", "32", "--precision", "fp32", "--json"], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "TUNING_ADVISOR_HOME": str(home_path)})
        def live_dir():
            return next((p for p in (home_path / "runs").iterdir() if p.name not in before), None)

        assert wait_until(lambda: live_dir() is not None and reached(live_dir(), "step"), 120)
        _fill(mount)
        events, size, still = live_dir() / "events.jsonl", -1, 0
        while still < 10:  # the run has stopped writing events (the disk is full): it waits to record its end
            now = events.stat().st_size
            still, size = (still + 1 if now == size else 0), now
            time.sleep(0.5)
        for f in mount.glob("filler*"):
            f.unlink()
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 2 and "disk filled up" in json.loads(out)["error"], err[-2000:]
        rows = json.loads(_cli(home_path, "runs", "--json").stdout)
        assert [row["status"] for row in rows] == ["failed", "completed"] and "disk" in rows[0]["error"]
        assert not list(home_path.glob("runs.db.unreadable-*"))
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
