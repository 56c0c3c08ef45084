"""``estimate``: memory per GPU, time, cost and artifact size of one plan (with ``--dry-run``, the
exact check on fake tensors; with ``--min-gpus``, what would fit)."""
from __future__ import annotations

import json
import sys

from estimators.errors import InputError
from estimators.estimate import Estimate
from estimators.plan import Plan
from advisor.cli.options import add_setup_arguments, plan_from_args
from advisor.cli.parsing import command_parser, positive_float
from advisor.formatting import format_estimate, format_min_gpus, gib

EPILOG = """\
--model takes a catalog id, a path to a config.json, or a local Hugging Face model folder.
Memory is per GPU: total = peak_allocated (what torch.cuda.max_memory_allocated would report)
+ overhead (CUDA context and allocator slack). A custom GPU: --gpu-memory-gib 24 --gpu-tflops 120.
"""


def add(sub) -> None:
    p = command_parser(sub, "estimate", "memory, time, cost and artifact size of one setup",
                       "Estimate memory per GPU, time, cost and artifact size of tuning a model.", EPILOG)
    add_setup_arguments(p)
    p.add_argument("--json", action="store_true", help="print the estimate JSON (DESIGN.md contract)")
    p.add_argument("--data", dest="estimate_data", metavar="FILE",
                   help="a data file (.jsonl, .csv, .parquet): examples and token lengths from it, as the app's upload")
    p.add_argument("--min-gpus", action="store_true",
                   help="also: the smallest count of this GPU that fits under each sharding, and the cheapest GPU "
                        "type x count from the catalog that fits (within --max-hours/--max-cost when given)")
    p.add_argument("--max-hours", type=positive_float, help="with --min-gpus: a time budget for the whole run")
    p.add_argument("--max-cost", type=positive_float, help="with --min-gpus: a money budget (USD) for the whole run")
    p.add_argument("--dry-run", action="store_true",
                   help="also run one real training step on fake tensors (exact peak, no memory used; "
                        "full, lora, prompt_tuning, adapters; seconds to a minute for billions of parameters)")
    p.set_defaults(func=run, parser=p)


def estimate_plan(plan: Plan) -> Estimate:
    """The plan's estimate with this machine's calibration for its GPU, if trials recorded one."""
    from tuners.store import calibration_for  # sqlite only (no torch)

    gpu = plan.gpu()
    return plan.run_estimate(calibration_for(gpu.id if gpu else None, plan.method, plan.settings["precision"]))


def _dry_run(plan: Plan, e: Estimate, quiet: bool) -> dict:
    from tuners.dryrun import SUPPORTED, dry_run  # imports torch: only when asked

    if plan.method not in SUPPORTED:
        raise InputError(f"the exact check supports {', '.join(SUPPORTED)}; {plan.method} needs a real trial run "
                         "(tuning-advisor trial)")
    if not quiet:
        print("exact check: running one step on fake tensors…", file=sys.stderr)
    d = dry_run(e.spec.config, plan)
    d["analytic_vs_dry_run"] = e.memory.peak_allocated / d["peak_allocated"] - 1
    return d


def run(args) -> int:
    if not args.min_gpus and (args.max_hours is not None or args.max_cost is not None):
        raise InputError("--max-hours and --max-cost are budgets for --min-gpus: add --min-gpus (or drop them)")
    plan = plan_from_args(args, args.parser)
    e = estimate_plan(plan)
    out = e.to_json()
    out["plan"] = {**plan.to_json(), "estimate": None}
    if args.dry_run:
        out["dry_run"] = _dry_run(plan, e, quiet=args.json)
        out["assumptions"].append("dry_run: peak of live tensor bytes of one real step run on fake tensors")
    if args.min_gpus:
        from estimators.scaling import min_gpus

        out["min_gpus"] = min_gpus(plan, args.max_hours, args.max_cost)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(format_estimate(e))
    if args.min_gpus:
        print("\n" + format_min_gpus(out["min_gpus"]))
    if args.dry_run:
        d = out["dry_run"]
        print(f"\nExact check (fake tensors, {d['seconds']:.1f} s): peak allocated {gib(d['peak_allocated'])} at "
              f"{d['peak_phase']}; the analytic estimate differs by {d['analytic_vs_dry_run']:+.1%}")
    return 0
