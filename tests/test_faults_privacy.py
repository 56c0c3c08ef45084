"""Everything the app, the CLI and a trial write under the data folder is this user's only at the
moment it is written (folders 0700, files 0600), with the ordinary umask 022 in force and without a
later start to fix it up (issue 27, privacy). A real trial of a tiny model through the CLI, an upload
that moves into its run, the app's pasted config and sample data, and the derived-spec cache."""
import json
import os
import stat
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(home):
    """Every path under ``home`` with its permission bits (symbolic links not followed)."""
    return {p.relative_to(home).as_posix() or ".": (stat.S_IMODE(p.lstat().st_mode), p.is_dir())
            for p in [home, *home.rglob("*")] if not p.is_symlink()}


def not_private(home):
    """Paths whose mode is not the private one: 0700 folders, 0600 files (0700 for a launch script)."""
    def private(name, mode, is_dir):
        return mode == (0o700 if is_dir or name.endswith("/launch.sh") else 0o600)

    return {name: oct(mode) for name, (mode, is_dir) in modes(home).items() if not private(name, mode, is_dir)}


@pytest.fixture
def tiny_model(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                   intermediate_size=64, vocab_size=300, max_position_embeddings=128)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


def test_a_trial_with_an_upload_leaves_only_private_files(tmp_path, tiny_model, umask_022, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(home))
    from tuners import store

    upload = store.uploads() / "abc-colours.jsonl"  # as the app stores an upload
    store.write_private(upload, "\n".join(json.dumps({"input": f"Q{i}?", "output": "red"}) for i in range(16)))
    r = subprocess.run([sys.executable, "-m", "advisor", "trial", "--model", str(tiny_model), "--method", "lora",
                        "--data", str(upload), "--steps", "3", "--batch-size", "2", "--seq-len", "16",
                        "--precision", "fp32", "--json", "--timeout", "300"], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "TUNING_ADVISOR_HOME": str(home)})
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout)
    assert result["status"] == "completed", result.get("error")
    run_dir = home / "runs" / result["run_id"]
    # what the run wrote: its request (rewritten when the upload moved in), log, events, result, the
    # project with its launch script, the adapter, the tokenizer
    assert {"request.json", "log.txt", "events.jsonl", "result.json", "project", "data"} <= {p.name for p in run_dir.iterdir()}
    assert (run_dir / "data" / "abc-colours.jsonl").is_file() and not upload.exists()
    assert (run_dir / "project" / "launch.sh").stat().st_mode & 0o100  # still runnable by its owner
    assert not_private(home) == {}


def test_the_apps_own_files_and_the_store_are_private_when_written(tmp_path, umask_022, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(home))
    from tuners import store
    from ui import questionnaire, trial

    cfg = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 128, "vocab_size": 512}
    pasted = questionnaire._pasted_config(json.dumps(cfg))
    sample = trial.sample_data()
    with store._session() as con:  # the store open: its -wal and -shm files exist now
        con.execute("SELECT count(*) FROM runs").fetchone()
        side = {p.name for p in home.iterdir() if p.name.startswith("runs.db")}
        assert {"runs.db", "runs.db-wal", "runs.db-shm"} <= side, side
        assert not_private(home) == {}
    assert os.path.isfile(pasted) and os.path.isfile(sample)
    assert not_private(home) == {}


def test_the_derived_spec_cache_is_private(tmp_path, umask_022, monkeypatch):
    pytest.importorskip("transformers")
    home = tmp_path / "home"
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(home))
    from tuners import metaspec

    cfg = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512}
    metaspec.lookup(cfg)
    assert metaspec.cache_path(cfg).is_file()
    assert not_private(home) == {}
