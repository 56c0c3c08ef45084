"""``trial``: a short real run of exactly the plan, in a process of its own, measured against its
estimate."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from estimators.errors import InputError
from estimators.plan import Plan
from advisor.cli.options import TRIAL_OPTIONS, add_setup_arguments, plan_from_args
from advisor.cli.parsing import command_parser
from advisor.formatting import _progress, format_trial

TRIAL_HELP = """\
Example (a quick check on a CPU machine, random weights, small copy of the architecture):
  tuning-advisor trial --model llama-3.2-1b --scale-down --method lora --data train.jsonl \\
      --steps 5 --batch-size 2 --seq-len 128 --precision fp32
Runs are kept in $TUNING_ADVISOR_HOME (default ~/.tuning-advisor); Ctrl-C cancels and records it.
"""


def add(sub) -> None:
    p = command_parser(sub, "trial", "a short real tuning run that measures what the estimate predicts",
                       "Run a few real optimizer steps of a method on your data and model, in a process of its own, "
                       "and compare measured peak memory and throughput with the estimate.", TRIAL_HELP)
    add_setup_arguments(p)
    t = p.add_argument_group("trial")
    t.add_argument("--data", help="training data: .jsonl, .csv or .parquet (default: the plan's data path)")
    TRIAL_OPTIONS["steps"].add_to(t)
    t.add_argument("--scale-down", action="store_true",
                   help="a small copy of the architecture (random weights) for a quick check on a small machine")
    TRIAL_OPTIONS["timeout"].add_to(t)
    TRIAL_OPTIONS["nproc"].add_to(t)
    t.add_argument("--keep-model", action="store_true",
                   help="keep the random-weight model copy in the run folder (deleted after the run by default)")
    t.add_argument("--force", action="store_true",
                   help="launch even when the plan's estimated step memory exceeds this machine's free memory")
    t.add_argument("--trust-remote-code", action="store_true", help="allow a model folder's own code (off by default)")
    p.add_argument("--json", action="store_true", help="print the result JSON (DESIGN.md contract)")
    p.set_defaults(func=run, parser=p)


def _absolute(ref: str) -> str:
    """A local folder or config named by its absolute path (the runner's working folder differs)."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def _trial_plan(args) -> Plan:
    """The plan with its data file checked and every local path absolute, checked before anything starts."""
    if args.nproc > 1 and not args.plan and args.num_gpus == 1:
        args.num_gpus = args.nproc  # N ranks stand for N GPUs of the plan
    plan = plan_from_args(args, args.parser)  # validates every option before anything starts
    data = args.data or plan.data.get("path")
    if not data:
        raise InputError("give --data FILE (JSONL, CSV or Parquet): the plan has no data path")
    if not Path(data).expanduser().is_file():
        what = "is not a regular file (a pipe, device or folder)" if Path(data).expanduser().exists() else "not found"
        raise InputError(f"data file '{data}' {what} (give a .jsonl, .csv or .parquet file)")
    teacher = plan.settings.get("teacher")
    plan = plan.edit(model=_absolute(plan.model), data={"path": _absolute(data)},
                     settings={"teacher": _absolute(teacher)} if teacher else None)
    plan.spec()  # the model exists and suits the plan
    if not args.scale_down and not args.force:
        from tuners.launch import memory_shortfall  # no torch

        short = memory_shortfall(plan, args.nproc)
        if short:
            raise InputError(short + ": add --scale-down for a small copy of the architecture, or --force to try anyway")
    return plan


def run(args) -> int:
    from tuners import launch, store

    store.check_home()  # a data folder that cannot be written: one line with the fix, before anything runs
    plan = _trial_plan(args)
    request = {"plan": plan.to_json(), "steps": args.steps, "scale_down": args.scale_down, "timeout": args.timeout,
               "trust_remote_code": args.trust_remote_code, "nproc": args.nproc, "keep_model": args.keep_model}
    run_id, _ = launch.start(request)
    print(f"run {run_id} started (tuning-advisor runs lists it)", file=sys.stderr)
    try:
        res = launch.follow(run_id, on_event=(lambda e: None) if args.json else _progress)
    except KeyboardInterrupt:
        launch.cancel(run_id)
        res = launch.follow(run_id)
    print(json.dumps(res, indent=2) if args.json else format_trial(res))
    if res["status"] == "completed":
        return 0
    if not args.json:
        print(f"tuning-advisor trial: error: {res['error']}", file=sys.stderr)
    return 2 if res.get("error_kind") in ("input", "disk") else 1
