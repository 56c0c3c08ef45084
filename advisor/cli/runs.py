"""``runs``: the history of trial runs (and ``--prune``, ``--cancel``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from estimators.errors import InputError
from advisor.cli.parsing import number
from advisor.formatting import _table, gib

MAX_LIST = 100_000
COLUMNS = ("id", "status", "method", "model", "device", "est peak", "measured peak", "error")


def add(sub) -> None:
    p = sub.add_parser("runs", help="the history of trial runs")
    p.add_argument("--limit", type=number(int, high=MAX_LIST), default=50, help="newest runs shown (default 50)")
    p.add_argument("--prune", action="store_true",
                   help="remove the runs that ended without a result (killed, never started), rows and folders")
    p.add_argument("--cancel", metavar="RUN_ID", help="cancel a live run (or end a row whose process is gone)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _row(r: dict) -> dict:
    est = (r["estimate"] or {}).get("memory", {}).get("peak_allocated")
    meas = (r["measured"] or {}).get("peak_allocated")
    return {"id": r["id"], "status": r["status"], "method": r["method"] or "", "model": Path(r["model"] or "").name,
            "device": (r["device"] or "")[:24], "est peak": gib(est), "measured peak": gib(meas),
            "error": (r["error"] or "")[:60]}


def run(args) -> int:
    from tuners import launch, store

    if args.cancel:
        if not launch.cancel(args.cancel):
            raise InputError(f"run {args.cancel} is not running (or not in the history): nothing to cancel")
        print(f"cancelling run {args.cancel}", file=sys.stderr)
        return 0
    if args.prune:
        gone = store.prune()
        print(f"removed {len(gone)} run(s) that ended without a result" + (f": {', '.join(gone)}" if gone else ""),
              file=sys.stderr)
    rows = store.list_runs(args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no runs yet (start one with `tuning-advisor trial`)")
    else:
        print(_table([_row(r) for r in rows], [(k, k) for k in COLUMNS]))
    return 0
