"""Models on this machine: a fake Hugging Face cache laid out as huggingface_hub lays it out
(models--org--name/{refs/main, snapshots/<commit>/ → ../../blobs/<hash>}) and plain folders."""
import json
import os

import pytest

from advisor.cli import main
from estimators.catalog import model_configs
from estimators.errors import InputError
from estimators.spec import clean_config
from tuners.localmodels import hub_cache_dir, scan, scan_folder, scan_hub

QWEN = clean_config(model_configs()["qwen2.5-0.5b"])


def blob(cache, repo, content: bytes) -> str:
    """Writes a blob the way the hub does (named by a hash) and returns its name."""
    name = f"{abs(hash(content)):x}{len(content)}"
    path = cache / repo / "blobs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return name


def snapshot(cache, org, name, commit, files: dict, main=True):
    repo = f"models--{org}--{name}"
    snap = cache / repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for fname, content in files.items():
        (snap / fname).symlink_to(os.path.join("..", "..", "blobs", blob(cache, repo, content)))
    if main:
        (cache / repo / "refs").mkdir(exist_ok=True)
        (cache / repo / "refs" / "main").write_text(commit)
    return snap


@pytest.fixture
def hub(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    weights = b"\0" * 4096
    snapshot(cache, "Qwen", "Qwen2.5-0.5B", "aaa111", {"config.json": json.dumps(QWEN).encode()}, main=False)
    snapshot(cache, "Qwen", "Qwen2.5-0.5B", "bbb222", {"config.json": json.dumps(QWEN).encode(),
                                                      "model.safetensors": weights, "tokenizer.json": b"{}"})
    snapshot(cache, "someone", "weird-arch", "ccc333", {"config.json": b'{"model_type": "mamba"}'})
    snapshot(cache, "someone", "broken", "ddd444", {"config.json": b"{not json"})
    (cache / "datasets--someone--data" / "snapshots" / "x").mkdir(parents=True)  # not a model
    return cache


def test_cache_location_follows_huggingface_hub(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hub_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hub_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HF_HOME")
    assert hub_cache_dir() == pytest.importorskip("pathlib").Path.home() / ".cache" / "huggingface" / "hub"


def test_hub_cache_models_with_refs_main_snapshot(hub):
    found = {m.id: m for m in scan_hub()}
    assert set(found) == {"Qwen/Qwen2.5-0.5B", "someone/weird-arch", "someone/broken"}
    qwen = found["Qwen/Qwen2.5-0.5B"]
    assert qwen.revision == "bbb222" and qwen.path.endswith("snapshots/bbb222")
    assert qwen.model_type == "qwen2" and qwen.params == 494_032_768  # the catalog's meta-device count
    assert qwen.weights and qwen.tokenizer
    assert qwen.size_bytes == 4096 + 2 + len(json.dumps(QWEN))  # blobs behind the symlinks
    assert found["someone/weird-arch"].params is None and found["someone/weird-arch"].model_type == "mamba"
    assert "unreadable" in found["someone/broken"].error


def test_user_folders(tmp_path, hub):
    model = tmp_path / "mine" / "my-model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(QWEN))
    (model / "pytorch_model.bin").write_bytes(b"\0" * 100)
    assert [m.id for m in scan_folder(tmp_path / "mine")] == ["my-model"]
    assert scan_folder(model)[0].weights and not scan_folder(model)[0].tokenizer
    assert {m.source for m in scan([str(tmp_path / "mine")])} == {"hf-cache", "folder"}
    with pytest.raises(InputError, match="does not exist"):
        scan_folder(tmp_path / "nope")


def test_cli_lists_local_models(hub, capsys, tmp_path):
    assert main(["models", "--local", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in rows} == {"Qwen/Qwen2.5-0.5B", "someone/weird-arch", "someone/broken"}
    assert main(["models", "--local"]) == 0
    assert "Qwen/Qwen2.5-0.5B" in capsys.readouterr().out
    assert main(["models", "--folder", str(tmp_path)]) == 2
    assert "--local" in capsys.readouterr().err


def test_a_listed_snapshot_is_a_model_for_estimate(hub, capsys):
    path = next(m.path for m in scan_hub() if m.id == "Qwen/Qwen2.5-0.5B")
    assert main(["estimate", "--model", path, "--method", "lora", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"]["total"] == 494_032_768
