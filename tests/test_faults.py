"""Faults during trials: whatever kills or stalls a run, the history ends consistent (one final status
with a cause) and no process is left behind. Plus the store's faults: a home that cannot be written
still serves every command that only reads."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, reached, wait_until
from tests.test_tuners import home, plan_for, tiny  # noqa: F401  (fixtures)
from tuners import launch, store

pytestmark = pytest.mark.slow




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


def test_a_timeout_covers_start_up_not_only_steps(home, tiny):  # noqa: F811
    run_id, run_dir = launch.start({"plan": plan_for(tiny, "lora").to_json(), "steps": 100000, "timeout": 0.5})
    res = launch.follow(run_id, timeout=120)
    assert res["status"] == "failed" and res["error_kind"] == "timeout", res
    assert not any(e["event"] == "step" for e in store.events(run_dir))  # it stopped before the first step
    assert _group_gone(store.get(run_id)["pid"])


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
