"""The data report in a process of its own, bounded in time and memory (the app's upload path).

    python -m tuners.datareport FILE SEQ_LEN [--tokenizer tokenizer.json]

Prints the report JSON (``DataReport.to_dict`` plus every token length), or ``{"error": "..."}``.
A JSONL file with some lines that are not JSON is profiled without them: the report lists the first
``SHOWN_BAD_LINES`` by number with the reason (``bad_lines``, ``bad_count``) and names a copy of the
file without them (``clean_path``, in the data folder) for plans and trials.
``report(...)`` runs it with a wall-clock limit and an address-space limit, so a huge or hostile
file cannot stall or exhaust the server.
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
from pathlib import Path

from estimators.errors import InputError
from tuners.launch import ROOT, child_env

MAX_BYTES = 512 * 1024**2
"""Largest data file the app profiles (a trial or the exported script reads any size)."""
TIME_LIMIT_S = 120
MEMORY_LIMIT = 6 * 1024**3


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def report(path: str | Path, seq_len: int, tokenizer_file: str | Path | None = None,
           timeout: float = TIME_LIMIT_S) -> dict:
    """The report of ``path``; an InputError (one line) for a bad, too large or too slow file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"data file '{path.name}' not found (give a .jsonl, .csv or .parquet file)")
    if path.stat().st_size > MAX_BYTES:
        raise InputError(f"data file '{path.name}' is {path.stat().st_size / 1024**2:,.0f} MB: the app profiles files "
                         f"up to {MAX_BYTES // 1024**2} MB (give a sample; trials and train.py read any size)")
    cmd = [sys.executable, "-m", "tuners.datareport", str(path), str(int(seq_len))]
    if tokenizer_file:
        cmd += ["--tokenizer", str(tokenizer_file)]
    env = child_env()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory, env=env,
                           cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise InputError(f"data file '{path.name}' took over {timeout:.0f} s to profile: give a smaller sample") from None
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise InputError(f"data file '{path.name}' could not be profiled (the reader ran out of memory or crashed): "
                         "give a smaller sample") from None
    if "error" in out:
        raise InputError(out["error"])
    return out


SHOWN_BAD_LINES = 20


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def bad_json_lines(path: Path) -> tuple[list[dict], list[str]]:
    """The lines of a JSONL file that are not one JSON object (``{"line": n, "reason": ...}``), and the
    good lines."""
    bad, good = [], []
    text = path.read_text(encoding="utf-8", errors="strict")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            bad.append({"line": n, "reason": f"{exc.msg} (column {exc.colno})"})
            continue
        except ValueError as exc:
            bad.append({"line": n, "reason": str(exc)})
            continue
        if not isinstance(value, dict):
            bad.append({"line": n, "reason": f"a JSON {type(value).__name__}, not an object"})
        else:
            good.append(line)
    return bad, good


def _without_bad_lines(path: Path) -> tuple[Path, list[dict]] | None:
    """A copy of a JSONL file without its bad lines (in the data folder) and the bad lines; None when
    every line is fine, or nothing is left."""
    if path.suffix.lower() not in (".jsonl", ".json") or path.read_text(encoding="utf-8").lstrip().startswith("["):
        return None
    bad, good = bad_json_lines(path)
    if not bad or not good:
        return None
    import hashlib

    from tuners import store

    body = "\n".join(good) + "\n"
    name = re.sub(r"^[0-9a-f]{12}-", "", path.name)  # an upload's stored name: <digest>-<the user's name>
    clean = store.uploads() / f"{hashlib.sha256(body.encode()).hexdigest()[:12]}-{name}"
    if not clean.exists():
        store.write_private(clean, body.encode())
    return clean, bad


def data_facts(path: str | Path, model: str | None = None) -> dict:
    """A plan's data facts from a data file, as the app's upload fills them (ui/questionnaire.py): the
    report at sequence length 512, token lengths counted with the model folder's own tokenizer when it
    has one; examples = usable rows, tokens per example = their mean (issue 21: ``estimate --data``)."""
    folder = Path(model).expanduser() if model else None
    tokenizer = folder / "tokenizer.json" if folder is not None and folder.is_dir() else None
    rep = report(path, 512, tokenizer if tokenizer is not None and tokenizer.is_file() else None)
    if not rep["usable_rows"]:
        raise InputError(f"data file '{Path(path).name}' has no usable rows (see `tuning-advisor trial --data` "
                         "for the problems)")
    return {"path": str(Path(path).resolve()), "format": rep["format"], "num_examples": rep["usable_rows"],
            "tokens_per_example": max(1, round(rep["mean_tokens"])), "token_lengths": rep["token_lengths"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tuners.datareport", description=__doc__)
    ap.add_argument("path")
    ap.add_argument("seq_len", type=int)
    ap.add_argument("--tokenizer")
    args = ap.parse_args(argv)
    from tuners.data import quick_report

    extra = {}
    try:
        cleaned = _without_bad_lines(Path(args.path))
        if cleaned:
            extra = {"clean_path": str(cleaned[0]), "bad_count": len(cleaned[1]),
                     "bad_lines": cleaned[1][:SHOWN_BAD_LINES]}
        rep = quick_report(cleaned[0] if cleaned else args.path, args.seq_len, args.tokenizer)
    except UnicodeDecodeError:
        print(json.dumps({"error": f"data file '{Path(args.path).name}' is not UTF-8 text"}))
        return 0
    except InputError as exc:
        print(json.dumps({"error": str(exc)}))
        return 0
    print(json.dumps({**rep.to_dict(), "path": args.path, "lengths": rep.token_lengths, **extra}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
