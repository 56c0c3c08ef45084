"""``export``: a runnable project for a plan (train.py, plan.json, launch.sh, requirements.txt, README.md)."""
from __future__ import annotations

import json
from pathlib import Path

from estimators.errors import InputError
from estimators.plan import Plan
from advisor.cli.parsing import command_parser


def add(sub) -> None:
    p = command_parser(sub, "export", "write a runnable project (train.py, plan.json, launch.sh...) for a plan",
                       "Write a runnable project for a plan: train.py (one script for every method, driven by "
                       "plan.json), plan.json, launch.sh (python or torchrun with the plan's sharding), "
                       "requirements.txt (pinned) and README.md (expected memory, time, cost).",
                       "Take a plan from `recommend --json` (recommendations[i].plan) or the app's download.")
    p.add_argument("--plan", required=True, metavar="FILE", help="the plan JSON file (- for stdin)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new or empty)")
    p.add_argument("--force", action="store_true", help="write into a folder that has files (overwrites ours)")
    p.add_argument("--json", action="store_true", help="print the folder and its files as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from tuners.export import write_project  # no torch: the project is files

    plan = Plan.from_file(args.plan)
    plan.spec(), plan.gpu()  # the model and GPU it names exist, and its settings suit the model
    out = Path(args.out).expanduser()
    if out.exists() and any(out.iterdir()) and not args.force:
        raise InputError(f"'{out}' exists and is not empty: choose a new --out folder (or add --force)")
    try:
        write_project(plan, out)
    except OSError as exc:
        raise InputError(f"cannot write the project to '{out}': {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps({"out": str(out.resolve()), "files": sorted(p.name for p in out.iterdir())}, indent=2))
    else:
        print(f"wrote {out}/: train.py, plan.json, launch.sh, requirements.txt, README.md\n"
              f"  quick check: python {out}/train.py --model MODEL_FOLDER --data FILE --max-steps 10\n"
              f"  full run:    MODEL=... DATA=... {out}/launch.sh")
    return 0
