"""Models already on this machine: the Hugging Face cache and folders the user names. Nothing is
downloaded and nothing heavy is imported (no torch): only files are read.

The hub cache (``huggingface_hub``'s layout) keeps one folder per repository,
``models--<org>--<name>/``, with ``refs/<branch>`` holding a commit hash, ``snapshots/<commit>/``
holding the files (symlinks into ``blobs/``) and ``blobs/`` the contents. Its location is
``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from estimators.errors import InputError, read_json

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "tiktoken.model")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


@dataclass(frozen=True)
class LocalModel:
    """One model found on disk."""

    id: str
    """``org/name`` for the hub cache, the folder's name otherwise."""
    path: str
    """The folder holding config.json (a snapshot for the hub cache): what ``--model`` takes."""
    source: str
    """``hf-cache`` or ``folder``."""
    revision: str | None
    model_type: str | None
    architecture: str | None
    params: int | None
    """Exact count from the config where the arithmetic is built in (None otherwise)."""
    size_bytes: int
    """Bytes on disk of the folder's files (hub symlinks resolved, each blob counted once)."""
    weights: bool
    tokenizer: bool
    error: str | None = None
    """Why the config could not be read (the model is still listed)."""

    def to_dict(self) -> dict:
        return asdict(self)


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloaded repositories (its own precedence of variables)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _snapshot(repo: Path) -> tuple[Path, str] | None:
    """The snapshot ``refs/main`` points at, else the most recently written one."""
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file():
        commit = ref.read_text().strip()
        if (snapshots / commit).is_dir():
            return snapshots / commit, commit
    found = sorted((p for p in snapshots.glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True) \
        if snapshots.is_dir() else []
    return (found[0], found[0].name) if found else None


def _files(folder: Path) -> list[Path]:
    out = []
    for root, dirs, names in os.walk(folder):  # symlinked folders are not followed
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out += [Path(root) / n for n in names if not n.startswith(".")]
    return out


def _size(files: list[Path]) -> int:
    seen, total = set(), 0
    for f in files:
        try:
            real = f.resolve()
            if real not in seen:
                seen.add(real)
                total += real.stat().st_size
        except OSError:  # a dangling link (an interrupted download)
            continue
    return total


def _describe(folder: Path, model_id: str, source: str, revision: str | None) -> LocalModel:
    from estimators.spec import SUPPORTED_FAMILIES, spec_from_config

    files = _files(folder)
    names = {f.name for f in files}
    cfg, error, params = {}, None, None
    try:  # a bad config (deep, huge, not JSON, a FIFO) is this folder's note, never the listing's end
        cfg = read_json(folder / "config.json", "config.json")
    except InputError as exc:
        cfg, error = {}, "config.json unreadable: " + str(exc).replace(f"config.json file '{folder / 'config.json'}' ", "")
    try:
        if not isinstance(cfg, dict):
            cfg = {}
            raise InputError("config.json unreadable: not a JSON object")
        if cfg.get("model_type") in SUPPORTED_FAMILIES:
            params = spec_from_config(cfg, model_id).total_params
    except InputError as exc:
        error = str(exc)[:200]
    except (OSError, ValueError, RecursionError) as exc:
        error = f"config.json unreadable: {str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}"
    arch = (cfg.get("architectures") or [None])[0] if isinstance(cfg.get("architectures"), list) else None
    return LocalModel(id=model_id, path=str(folder), source=source, revision=revision, model_type=cfg.get("model_type"),
                      architecture=arch, params=params, size_bytes=_size(files),
                      weights=any(n.endswith(WEIGHT_SUFFIXES) for n in names),
                      tokenizer=any(n in names for n in TOKENIZER_FILES), error=error)


def scan_hub(cache: Path | None = None) -> list[LocalModel]:
    """Every model repository of the hub cache that has a snapshot with a config.json."""
    cache = cache or hub_cache_dir()
    out = []
    for repo in sorted(cache.glob("models--*")) if cache.is_dir() else []:
        snap = _snapshot(repo)
        if snap and (snap[0] / "config.json").exists():
            model_id = "/".join(repo.name.split("--")[1:])
            out.append(_describe(snap[0], model_id, "hf-cache", snap[1]))
    return out


def scan_folder(folder: str | Path) -> list[LocalModel]:
    """A model folder (config.json inside), or a folder of model folders (one level down)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"folder '{folder}' does not exist (give a folder holding model folders)")
    if (root / "config.json").is_file():
        return [_describe(root, root.name, "folder", None)]
    return [_describe(p, p.name, "folder", None) for p in sorted(root.iterdir())
            if p.is_dir() and (p / "config.json").is_file()]


def scan(folders: list[str] | tuple = ()) -> list[LocalModel]:
    """The hub cache plus each folder the user adds."""
    found = scan_hub()
    for folder in folders:
        found += scan_folder(folder)
    return found
