"""The data report in a process of its own, bounded in time and memory (the app's upload path).

    python -m tuners.datareport FILE SEQ_LEN [--tokenizer tokenizer.json]

Prints the report JSON (``DataReport.to_dict`` plus every token length), or ``{"error": "..."}``.
``report(...)`` runs it with a wall-clock limit and an address-space limit, so a huge or hostile
file cannot stall or exhaust the server.
"""
from __future__ import annotations

import argparse
import json
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

    try:
        rep = quick_report(args.path, args.seq_len, args.tokenizer)
    except InputError as exc:
        print(json.dumps({"error": str(exc)}))
        return 0
    print(json.dumps({**rep.to_dict(), "lengths": rep.token_lengths}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
