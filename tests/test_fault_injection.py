"""Faults injected for real: a full file system (a small tmpfs, mounted when the tests run as root), a
lock on the store held by another process, stale and damaged rows in a real SQLite file, a launcher's
environment variables, damaged model files, recursion bombs, FIFOs, a million-row data file's sample,
and a home folder that was world-readable. Each case ends in one line naming the problem and the fix,
exit 2 where the user must act, and nothing in the run history lost or reset."""
import json
import os
import sqlite3
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advisor.cli import main
from tests.conftest import ROOT
from tuners import files, launch, store

TRIAL = ["trial", "--model", "llama-3.2-1b", "--scale-down", "--method", "lora", "--steps", "3", "--batch-size", "1",
         "--seq-len", "32", "--precision", "fp32"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(path))
    return path


def _cli(home_path, *args, env=None, cwd=ROOT, timeout=180):
    full = {**os.environ, "TUNING_ADVISOR_HOME": str(home_path), **(env or {})}
    return subprocess.run([sys.executable, "-m", "advisor", *args], capture_output=True, text=True, cwd=cwd, env=full,
                          timeout=timeout)


def _one_line(r):
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return lines


def _main(argv) -> int:
    """The CLI's exit status, in this process (argparse's own errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _seed(home_path, status="completed") -> str:
    """One finished run, as a trial leaves it: a row and a folder with request.json and result.json."""
    run_id, run_dir = store.new_run({"plan": {"method": "lora", "model": "tiny"}, "steps": 3})
    result = {"run_id": run_id, "status": status, "device": "cpu", "estimate": None, "measured": {"peak_allocated": 1},
              "extrapolated": None, "error": None}
    (run_dir / "result.json").write_text(json.dumps(result))
    store.update(run_id, status=status, device="cpu", measured=result["measured"], pid=None)
    return run_id


def _data(tmp_path, rows=8) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"input": f"q{i}", "output": f"answer {i}"}) for i in range(rows)))
    return path


@pytest.fixture
def tmpfs(tmp_path):
    """A real 4 MiB file system of its own (tmpfs), so it can be filled without touching the machine's."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if r.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk cases need a real small file system")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(folder: Path) -> Path:
    """Writes until the file system says ENOSPC; the filler's path (delete it to free the space)."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    try:  # the last partial blocks too
        with open(folder / "filler2", "wb") as f:
            while True:
                f.write(b"\0" * 512)
                f.flush()
    except OSError:
        pass
    return filler


# --- 1. the store keeps a full, locked or unwritable history; only real corruption is moved aside ----------


def test_a_full_disk_keeps_the_history_and_reads_still_answer(tmpfs, tmp_path, monkeypatch):
    home_path = tmpfs / "home"
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(home_path))
    earlier = _seed(home_path)
    data = _data(tmp_path)
    _fill(tmpfs)
    r = _cli(home_path, "runs")
    assert r.returncode == 0 and earlier in r.stdout, r.stderr
    assert all("disk is full" in line for line in _one_line(r))
    r = _cli(home_path, *TRIAL, "--data", str(data))
    assert r.returncode == 2 and "disk is full" in r.stderr and "free space" in r.stderr, r.stderr
    assert len(_one_line(r)) <= 2  # the reading notice, then the error: one line each
    for f in tmpfs.glob("filler*"):
        f.unlink()
    r = _cli(home_path, "runs", "--json")
    assert r.returncode == 0 and [row["id"] for row in json.loads(r.stdout)] == [earlier]
    assert not list(home_path.glob("runs.db.unreadable-*"))


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_store_locked_by_another_process_is_never_reset(home, tmp_path, journal):
    earlier = _seed(home)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; con = sqlite3.connect(sys.argv[1], isolation_level=None); "
         f"con.execute('PRAGMA journal_mode={journal}'); con.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); "
         "sys.stdin.read(); con.execute('COMMIT')", str(store.db_path())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        env = {"TUNING_ADVISOR_BUSY_TIMEOUT": "1"}
        r = _cli(home, "runs", env=env)
        assert r.returncode == 0 and earlier in r.stdout, r.stderr  # read as it is
        r = _cli(home, *TRIAL, "--data", str(_data(tmp_path)), env=env)
        assert r.returncode == 2 and "locked by another process" in r.stderr and "try again" in r.stderr, r.stderr
        assert [p.name for p in (home / "runs").iterdir()] == [earlier]  # no run folder without a row
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert not list(home.glob("runs.db.unreadable-*"))
    assert [r["id"] for r in store.list_runs()] == [earlier]


def test_a_store_on_a_disk_remounted_read_only_is_kept_and_read(tmpfs, tmp_path, monkeypatch):
    home_path = tmpfs / "home"
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(home_path))
    earlier = _seed(home_path)
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)]).returncode == 0
    r = _cli(home_path, "runs")
    assert r.returncode == 0 and earlier in r.stdout, r.stderr
    r = _cli(home_path, *TRIAL, "--data", str(_data(tmp_path)))
    assert r.returncode == 2 and "read-only" in r.stderr and len(_one_line(r)) == 1, r.stderr
    subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)])
    assert not list(home_path.glob("runs.db.unreadable-*")) and [r["id"] for r in store.list_runs()] == [earlier]


def test_moved_aside_copies_never_overwrite_each_other(home, capsys):
    home.mkdir()
    contents = [b"not a database, first" * 100, b"SQLite format 3\x00" + b"\xee" * 4000]
    for content in contents:  # twice in the same second
        (home / "runs.db").write_bytes(content)
        store.list_runs()
        store.new_run({"plan": {"method": "lora", "model": "m"}})
    kept = sorted(p.read_bytes() for p in home.glob("runs.db.unreadable-*") if not p.name.endswith(("-wal", "-shm")))
    assert kept == sorted(contents)


def test_a_healthy_store_that_fails_to_open_is_not_called_corrupt(home, monkeypatch, capsys):
    """Any error but corruption (here: SQLite's own 'disk I/O error') keeps the file."""
    earlier = _seed(home)
    real_open = store._open

    def failing(path):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_open", failing)
    with pytest.raises(store.StoreError, match="kept as it is"):
        store.update(earlier, status="failed")
    monkeypatch.setattr(store, "_open", real_open)
    assert store.get(earlier)["status"] == "completed" and not list(home.glob("runs.db.unreadable-*"))


def test_runs_rebuilds_the_rows_the_store_lacks(home, capsys):
    completed = _seed(home)
    failed = _seed(home, status="failed")
    store.db_path().unlink()  # e.g. the store was moved aside, or these runs finished while it was full
    rows = {r["id"]: r for r in store.list_runs()}
    assert rows[completed]["status"] == "completed" and rows[completed]["measured"] == {"peak_allocated": 1}
    assert rows[failed]["status"] == "failed" and rows[completed]["method"] == "lora"
    assert "recovered 2 run(s)" in capsys.readouterr().err


# --- 2. stale rows heal: never counted, cancellable, prunable ------------------------------------------


def _insert(status, pid, created, run_id, home_path):
    run_dir = home_path / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "request.json").write_text("{}")
    con = sqlite3.connect(store.db_path())
    con.execute("INSERT INTO runs (id, created, updated, status, pid, run_dir) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, created, created, status, pid, str(run_dir)))
    con.commit()
    con.close()


def test_rows_without_a_live_process_heal_and_never_block_a_trial(home, monkeypatch):
    _seed(home)
    old = time.time() - 3600
    _insert("queued", None, old, "q1", home)
    _insert("queued", None, old, "q2", home)
    _insert("running", 999999999999, old, "absurd", home)
    _insert("running", "abc", old, "text-pid", home)
    _insert("queued", None, time.time(), "starting", home)  # being launched right now
    monkeypatch.setenv("TUNING_ADVISOR_MAX_TRIALS", "1")
    assert store.live_runs() == []  # nothing here holds a trial slot
    rows = {r["id"]: r for r in store.list_runs()}
    assert rows["q1"]["status"] == rows["q2"]["status"] == "failed" and "never started" in rows["q1"]["error"]
    assert rows["absurd"]["status"] == "failed" and "cannot exist" in rows["absurd"]["error"]
    assert rows["text-pid"]["status"] == "failed"
    assert rows["starting"]["status"] == "queued"
    assert launch.cancel("starting") and store.get("starting")["status"] == "cancelled"
    pruned = store.prune()
    assert sorted(pruned) == ["absurd", "q1", "q2", "starting", "text-pid"]
    assert [r["status"] for r in store.list_runs()] == ["completed"] and not (home / "runs" / "q1").exists()


def test_runs_prune_and_cancel_on_the_command_line(home, capsys):
    _insert("queued", None, time.time() - 3600, "q1", home) if store.db_path().exists() else None
    store.new_run({"plan": {"method": "lora", "model": "m"}})  # creates the store
    _insert("running", 999999999999, time.time() - 3600, "absurd", home)
    assert main(["runs", "--prune"]) == 0 and "removed" in capsys.readouterr().err
    assert "absurd" not in [r["id"] for r in store.list_runs()]
    assert main(["runs", "--cancel", "no-such-run"]) == 2
    assert "nothing to cancel" in capsys.readouterr().err


def test_a_reused_pid_without_a_start_time_is_not_the_run(home):
    """A row from before pid_start: a live PID counts only when its command line names the run."""
    _seed(home)
    _insert("running", os.getpid(), time.time(), "reused", home)  # this pytest process: alive, not a runner
    row = store.get("reused")
    assert row["status"] == "failed" and "ended without a result" in row["error"]


# --- 3. a clean environment and a usable home, before anything runs -----------------------------------


def test_trials_start_from_a_scrubbed_environment(monkeypatch, tmp_path):
    for k, v in {"WORLD_SIZE": "4", "RANK": "abc", "LOCAL_RANK": "1", "MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "1",
                 "SLURM_PROCID": "3", "TORCHELASTIC_RUN_ID": "x", "OMPI_COMM_WORLD_RANK": "2",
                 "HF_HOME": "/somewhere", "CUDA_VISIBLE_DEVICES": "0", "NCCL_SOCKET_IFNAME": "eth0"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNING_ADVISOR_HOME", "relative/home")
    env = launch.child_env()
    for gone in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                 "TORCHELASTIC_RUN_ID", "OMPI_COMM_WORLD_RANK"):
        assert gone not in env
    for kept in ("PATH", "HOME", "HF_HOME", "CUDA_VISIBLE_DEVICES", "NCCL_SOCKET_IFNAME"):
        assert env[kept] == os.environ[kept]
    assert env["TUNING_ADVISOR_HOME"] == str(tmp_path / "relative" / "home")
    assert str(ROOT) in env["PYTHONPATH"].split(os.pathsep)
    monkeypatch.setenv("TUNING_ADVISOR_HOME", "~/x-home")
    assert store.home_path() == Path.home() / "x-home"


def _mount_read_only(tmp_path):
    mount = tmp_path / "ro-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mount)], capture_output=True).returncode:
        return None
    return mount


@pytest.mark.parametrize("case", ["read-only disk", "under a file", "name too long", "unwritable"])
def test_an_unusable_home_is_one_line_with_the_fix_before_anything_runs(case, tmp_path):
    (tmp_path / "a-file").write_text("")
    if case == "read-only disk":
        mount = _mount_read_only(tmp_path)
        if mount is None:
            pytest.skip("cannot mount a read-only tmpfs here (needs root)")
        path = mount / "home"
    elif case == "unwritable":
        if os.geteuid() == 0:
            pytest.skip("root writes into a 0500 folder anyway (the read-only disk case covers it)")
        (tmp_path / "locked").mkdir(mode=0o500)
        path = tmp_path / "locked" / "home"
    else:
        path = {"under a file": tmp_path / "a-file" / "home", "name too long": tmp_path / ("x" * 300)}[case]
    try:
        r = _cli(path, *TRIAL, "--data", str(_data(tmp_path)))
    finally:
        if case == "read-only disk":
            subprocess.run(["umount", "-l", str(path.parent)], capture_output=True)
    assert r.returncode == 2 and len(_one_line(r)) == 1, r.stderr
    assert "data folder" in r.stderr and "TUNING_ADVISOR_HOME" in r.stderr


# --- 4. bad files get their own line -------------------------------------------------------------------


def _safetensors(tensors: dict) -> bytes:
    """A safetensors file written by hand (its README's layout): F32 tensors of the given lengths."""
    header, offset = {}, 0
    for name, n in tensors.items():
        header[name] = {"dtype": "F32", "shape": [n], "data_offsets": [offset, offset + 4 * n]}
        offset += 4 * n
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["hello world", "the colour is red"], trainers.BpeTrainer(special_tokens=["<unk>"]))
    return tok.to_str()


@pytest.mark.parametrize("name", ["empty", "garbage", "truncated", "header only", "wrong sizes"])
def test_a_damaged_safetensors_file_is_named_with_the_fix(name, tmp_path):
    good = _safetensors({"a": 4, "b": 2})
    raw = {"empty": b"", "garbage": os.urandom(3000), "truncated": good[:-5],
           "header only": good[:8 + struct.unpack("<Q", good[:8])[0]],
           "wrong sizes": good.replace(b'"shape": [4]', b'"shape": [9]')}[name]
    path = tmp_path / "model.safetensors"
    path.write_bytes(good)
    assert files.check_safetensors(path) == 2
    path.write_bytes(raw)
    with pytest.raises(files.InputError, match=r"model\.safetensors in .* is damaged: .*re-save the weights"):
        files.check_weights(tmp_path)


@pytest.mark.parametrize("name", ["binary", "empty object", "truncated", "deep", "a fifo"])
def test_a_damaged_tokenizer_is_named_with_the_fix(name, tmp_path):
    good = _tokenizer_json()
    path = tmp_path / "tokenizer.json"
    path.write_text(good)
    files.check_tokenizer(tmp_path)
    path.unlink()
    if name == "a fifo":
        os.mkfifo(path)
    else:
        path.write_bytes({"binary": os.urandom(2000), "empty object": b"{}", "truncated": good[:len(good) // 2].encode(),
                          "deep": b"[" * 100000 + b"]" * 100000}[name])
    with pytest.raises(files.InputError, match=r"tokenizer\.json in .* is damaged: .*re-save the tokenizer"):
        files.check_tokenizer(tmp_path)


def _fifo(tmp_path, name):
    path = tmp_path / name
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("args", [["recommend", "--answers", "{fifo}"], ["export", "--plan", "{fifo}", "--out", "{out}"],
                                  ["estimate", "--plan", "{fifo}"], ["trial", "--plan", "{fifo}"],
                                  ["estimate", "--model", "{fifo}", "--method", "lora"],
                                  TRIAL + ["--data", "{fifo}"]])
def test_fifos_are_refused_not_waited_on(args, tmp_path):
    fifo = _fifo(tmp_path, "in.jsonl" if "--data" in args else "in.json")
    argv = [a.replace("{fifo}", str(fifo)).replace("{out}", str(tmp_path / "out")) for a in args]
    r = _cli(tmp_path / "home", *argv, timeout=60)  # a regression hangs: the timeout fails the test
    assert r.returncode == 2 and len(_one_line(r)) == 1, r.stderr


def test_json_nested_without_end_is_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    for argv in (["recommend", "--answers", str(deep)], ["estimate", "--plan", str(deep)],
                 ["export", "--plan", str(deep), "--out", str(tmp_path / "o")],
                 ["estimate", "--model", str(deep), "--method", "lora"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "levels deep" in err and len(err.strip().splitlines()) == 1, err
    models = tmp_path / "models"
    for name, cfg in (("bad", "[" * 100000 + "]" * 100000), ("good", json.dumps(
            {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 128, "vocab_size": 1000}))):
        (models / name).mkdir(parents=True)
        (models / name / "config.json").write_text(cfg)
    assert main(["models", "--local", "--folder", str(models)]) == 0
    out = capsys.readouterr()
    assert "good" in out.out and "skipped" in out.err and "bad" in out.err


def test_the_suite_misses(tmp_path, capsys):
    assert _main(["estimate", "--model", "llama-3.2-1b", "--method", "lora", "--examples", "9" * 300]) == 2
    assert "examples" in capsys.readouterr().err
    t5 = json.loads((ROOT / "estimators" / "data" / "models" / "flan-t5-base.json").read_text())
    (tmp_path / "t5.json").write_text(json.dumps({**t5, "feed_forward_proj": 5}))
    assert main(["estimate", "--model", str(tmp_path / "t5.json"), "--method", "lora"]) == 2
    assert "feed_forward_proj" in capsys.readouterr().err
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"input": "q", "output": "x" * 2_000_000}) + "\n")
    from tuners.data import load_sample

    with pytest.raises(files.InputError, match="longer than 1,000,000 characters") as info:
        load_sample(long)
    assert "empty" not in str(info.value)
    r = subprocess.run([sys.executable, "-m", "advisor"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "usage: tuning-advisor" in r.stderr and not r.stdout


# --- 5. trials read a bounded sample ------------------------------------------------------------------------


def test_a_big_data_file_is_sampled_with_its_longest_rows(tmp_path):
    from tuners import data

    path = tmp_path / "big.jsonl"
    n = 200_000
    rows = [json.dumps({"input": f"question {i}", "output": f"answer {i}"}) for i in range(n)]
    rows[123_457] = json.dumps({"input": "the longest", "output": "word " * 500})
    path.write_text("\n".join(rows) + "\n")
    sample = data.load_sample(path)
    assert sample.total_rows == n and len(sample.rows) <= data.SAMPLE_ROWS + data.LONGEST_ROWS
    assert any(r["input"] == "the longest" for r in sample.rows)  # longest-first batches still see it
    report, usable = data.validate(sample, lambda text: {"input_ids": text.split()}, 64)
    d = report.to_dict()
    assert d["rows"] == n and d["sampled"] and d["rows_read"] == len(sample.rows) and "sample of" in d["sample_note"]
    assert abs(report.usable_in_file - n) <= 1
    steps = data.for_steps(usable, report.token_lengths, 6)  # only these are encoded for 3 steps of batch 2
    length = lambda e: len((e.prompt + e.completion).split()) + 1  # noqa: E731  (the lengths the report counted)
    assert sorted(map(length, steps)) == sorted(map(length, usable))[-6:]
    assert any(e.prompt == "the longest" for e in steps)
    small = _data(tmp_path, rows=50)
    assert not data.load_sample(small).sampled and len(data.load_sample(small).rows) == 50


# --- 6. privacy -------------------------------------------------------------------------------------------


def test_a_home_that_existed_world_readable_becomes_private(home):
    old = os.umask(0o022)
    try:
        home.mkdir(mode=0o755)
        os.chmod(home, 0o755)
        (home / "runs" / "r1").mkdir(parents=True)
        (home / "runs" / "r1" / "result.json").write_text("{}")
        con = sqlite3.connect(home / "runs.db")
        con.execute("CREATE TABLE t (x)")
        con.commit()
        con.close()
        os.chmod(home / "runs.db", 0o644)
        store.list_runs()
        run_id, run_dir = store.new_run({"plan": {"method": "lora", "model": "m"}})
    finally:
        os.umask(old)
    modes = {p.relative_to(home).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [home, *home.rglob("*")]}
    assert all(m == 0o700 for p, m in modes.items() if (home / p).is_dir()), modes
    assert all(m & 0o077 == 0 for m in modes.values()), modes


def test_a_home_that_holds_other_things_has_only_ours_made_private(home):
    """TUNING_ADVISOR_HOME=~ must not chmod the user's own files."""
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    os.chmod(home / "notes.txt", 0o644)
    os.chmod(home, 0o755)
    store.new_run({"plan": {"method": "lora", "model": "m"}})
    from tuners import home as home_mod

    home_mod._PRIVATE_CHECKED.clear()  # as a later command sees it
    store.list_runs()
    assert stat.S_IMODE((home / "notes.txt").stat().st_mode) == 0o644 and stat.S_IMODE(home.stat().st_mode) == 0o755
    assert stat.S_IMODE(store.db_path().stat().st_mode) == 0o600


AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture
def network(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TUNING_ADVISOR_NETWORK", "1")
    monkeypatch.setenv("TUNING_ADVISOR_TOKEN", "s3cret")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    at = AppTest.from_file(str(ROOT / "advisor_app.py"), default_timeout=90)
    at.query_params["token"] = "s3cret"
    return at.run()


def test_the_token_in_the_address_is_used_once_and_dropped(network):
    at = network
    assert not at.exception and not at.error and "token" not in at.query_params
    at.run()  # the session stays admitted without it
    assert not at.error and at.dataframe


def test_the_trial_view_refuses_a_folder_outside_the_allowed_roots_before_launch(network):
    at = network
    at.radio(key="view").set_value("Trial run").run()
    at.radio(key="trial_source").set_value("Local model folder").run()
    at.text_input(key="trial_folder").set_value("/usr").run()
    assert not at.exception and "allowed folders" in at.error[0].value
    assert not [b for b in at.button if b.key == "trial_launch"]  # nothing to launch with it
