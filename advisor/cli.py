"""``tuning-advisor``: the command line (also ``python -m advisor``).

Every failure a user can cause ends with one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

from estimators.catalog import GPU, catalog_rows, custom_gpu, gpu_by_id, gpus
from estimators.errors import InputError
from estimators.estimate import Estimate
from estimators.methods import REGISTRY
from estimators.plan import Plan, setting
from estimators.setup import ATTENTIONS, METHODS, OPTIMIZERS, PRECISIONS, SHARDINGS, TrainSetup
from advisor.answers import SPEED_SETTINGS  # one list: the answers' speed and the CLI options
from advisor.formatting import (_progress, _table, format_estimate, format_min_gpus, format_recommendation,
                                format_trial, gib, human_count)

GIB = 1024**3

DESCRIPTION = """\
Choose how to adapt a foundation model, and know what it costs before you pay for it.

  tuning-advisor models                      the model catalog (ids for --model)
  tuning-advisor gpus                        the GPU catalog (ids for --gpu)
  tuning-advisor estimate --model llama-3.1-8b --method qlora --gpu l4 \\
      --examples 5000 --tokens-per-example 400 --epochs 2
                                             memory per GPU, time, cost, artifact size
  tuning-advisor recommend --answers answers.json
                                             every method ranked for your situation, with reasons

  tuning-advisor recommend --answers answers.json --json > rec.json      each method comes with its plan
  tuning-advisor estimate --plan plan.json    the estimate of a plan (e.g. one taken from recommend --json)
  tuning-advisor trial --plan plan.json --scale-down --steps 10
                                             a short real run of exactly that plan
  tuning-advisor export --plan plan.json --out my-run
                                             a runnable project: train.py, plan.json, launch.sh, ...

Methods: """ + ", ".join(f"{m} ({spec.label})" for m, spec in REGISTRY.items()) + """.
Add --json to any command for machine-readable output.
"""

EPILOG = """\
--model takes a catalog id, a path to a config.json, or a local Hugging Face model folder.
Memory is per GPU: total = peak_allocated (what torch.cuda.max_memory_allocated would report)
+ overhead (CUDA context and allocator slack). A custom GPU: --gpu-memory-gib 24 --gpu-tflops 120.
"""


ANSWERS_HELP = """\
Answers file example (only task, goals, num_examples, domain_distance, model, gpu are required):
  {"task": "chat", "goals": ["style"], "num_examples": 2000, "avg_tokens_per_example": 300,
   "domain_distance": "moderate", "model": "llama-3.1-8b", "gpu": "rtx-4090", "num_gpus": 1,
   "max_hours": null, "max_cost_usd": null, "num_tasks": 1, "priority": "balanced"}
goals: style, specialization, domain_knowledge, proprietary_data, edge_cases, multi_task,
       reduce_inference_cost, output_format, factual_recall, small_footprint
"""


TRIAL_HELP = """\
Example (a quick check on a CPU machine, random weights, small copy of the architecture):
  tuning-advisor trial --model llama-3.2-1b --scale-down --method lora --data train.jsonl \\
      --steps 5 --batch-size 2 --seq-len 128 --precision fp32
Runs are kept in $TUNING_ADVISOR_HOME (default ~/.tuning-advisor); Ctrl-C cancels and records it.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage by default)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(cast, allow_zero: bool = False, high: float = 1e12):
    """An argparse type: a finite number of type ``cast``, positive (or >= 0) and at most ``high``,
    with a one-line message."""
    wanted = f"{'a number >= 0' if allow_zero else 'a positive ' + ('integer' if cast is int else 'number')}" \
             f" up to {high:,g}"

    def parse(text: str):
        try:
            if len(text.strip()) > 40:  # 300 digits parse as an int too large for any float comparison
                raise ValueError(text)
            value = cast(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text[:40]!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero) or value > high:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text[:40]!r}")
        return value

    return parse


_positive_int = _number(int)
_positive_float = _number(float)
_non_negative_float = _number(float, allow_zero=True)
MAX_STEPS, MAX_NPROC, MAX_LIST = 100_000, 1024, 100_000


def add_setup_arguments(p: argparse.ArgumentParser) -> None:
    """The options that describe a training run (shared by ``estimate`` and ``trial``)."""
    p.add_argument("--plan", metavar="FILE", help="a plan JSON file (from recommend --json or export); replaces the "
                                                  "options below")
    p.add_argument("--model", help="catalog id, path to a config.json, or a model folder")
    p.add_argument("--method", choices=METHODS, help="tuning method")
    g = p.add_argument_group("training setup")
    g.add_argument("--batch-size", type=_positive_int, default=1, help="micro-batch per GPU (default 1)")
    g.add_argument("--seq-len", type=_positive_int, default=512, help="tokens per sequence (default 512)")
    g.add_argument("--precision", choices=PRECISIONS, default="bf16", help="weight/compute dtype (default bf16)")
    g.add_argument("--mixed-precision", action="store_true",
                   help="fp32 master weights + autocast to --precision (default: pure low precision)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw", help="default adamw")
    g.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward")
    g.add_argument("--attention", choices=ATTENTIONS, default="sdpa",
                   help="sdpa (memory linear in length) or eager (quadratic); default sdpa")
    g.add_argument("--grad-accum", type=_positive_int, default=1, help="gradient accumulation steps (default 1)")
    m = p.add_argument_group("method options")
    m.add_argument("--lora-rank", type=_positive_int, help="LoRA/QLoRA/DoRA rank (default 16)")
    m.add_argument("--lora-targets", help="all-linear or a comma list, e.g. q,v (default all-linear)")
    m.add_argument("--quant-bits", type=int, choices=(4, 8), help="QLoRA base bits (default 4, NF4)")
    m.add_argument("--no-double-quant", action="store_true", help="QLoRA without double quantization")
    m.add_argument("--num-virtual-tokens", type=_positive_int, help="prompt tuning (default 20)")
    m.add_argument("--adapter-size", type=_positive_int, help="adapter bottleneck width (default 64)")
    m.add_argument("--teacher", help="distillation teacher: catalog id, config.json or model folder")
    m.add_argument("--teacher-quant-bits", type=int, choices=(4, 8), help="store the frozen teacher in 4 or 8 bits")
    h = p.add_argument_group("hardware and budget")
    h.add_argument("--gpu", help="GPU id from `tuning-advisor gpus` (omit for memory only)")
    h.add_argument("--gpu-memory-gib", type=_positive_float, help="custom GPU: memory in GiB")
    h.add_argument("--gpu-tflops", type=_positive_float, help="custom GPU: dense bf16/fp16 peak TFLOP/s")
    h.add_argument("--num-gpus", type=_positive_int, default=1, help="GPUs (default 1)")
    h.add_argument("--sharding", choices=SHARDINGS, default="none", help="multi-GPU sharding (default none = DDP)")
    h.add_argument("--cpu-offload", action="store_true", help="offload optimizer states to CPU memory")
    h.add_argument("--price-per-hour", type=_non_negative_float, help="USD per GPU-hour (default: catalog price)")
    h.add_argument("--host-memory-gib", type=_positive_float,
                   help="host RAM of one machine in GiB (default: a typical host for the GPU class, e.g. 2 TB for "
                        "8x H100/H200, 128 GiB for 2x RTX 4090; `gpus --json` lists them). Offload must fit in it")
    d = p.add_argument_group("data")
    d.add_argument("--examples", type=_positive_int, help="number of training examples")
    d.add_argument("--tokens-per-example", type=_positive_int, help="typical tokens per example")
    d.add_argument("--epochs", type=_positive_float, default=1, help="passes over the data (default 1)")
    d.add_argument("--tasks", type=_positive_int, default=1, help="tuned variants to serve (for serving memory)")
    # --- speed settings (issue 21): what sets tokens/s besides the shape; each is a plan setting --------
    v = p.add_argument_group("speed settings (estimated, and honoured by trial and export)")
    v.add_argument("--packing", action="store_true", help="pack examples end to end into full seq-len rows")
    v.add_argument("--compile", action="store_true", help="run the model under torch.compile")
    v.add_argument("--fused-cross-entropy", action="store_true",
                   help="chunked fused linear + cross-entropy loss (Liger): no full fp32 logits in memory or time")
    v.add_argument("--optimizer-in-backward", action="store_true",
                   help="update each parameter in backward and free its gradient (needs --grad-accum 1)")
    v.add_argument("--activation-offloading", action="store_true",
                   help="keep saved activations in host memory between forward and backward")
    t = p.add_argument_group("run settings (kept in the plan; used by trial and export)")
    t.add_argument("--lr", type=_positive_float, help="learning rate (default per method)")
    t.add_argument("--lora-alpha", type=_positive_float, help="LoRA/DoRA scaling numerator (default 2 x rank)")
    t.add_argument("--prompt-init", choices=setting("prompt_init", "prompt_tuning").choices,
                   help="prompt tuning initialisation")
    t.add_argument("--temperature", type=_positive_float, help="distillation softmax temperature (default 2)")
    t.add_argument("--alpha", type=float, help="distillation weight of the teacher term, 0..1 (default 0.5)")


# Method options (argparse default None, so a given one is known) and the plan setting each feeds.
_METHOD_OPTIONS = {"lora_rank": "lora_rank", "lora_targets": "lora_targets", "quant_bits": "quant_bits",
                   "no_double_quant": "double_quant", "num_virtual_tokens": "num_virtual_tokens",
                   "adapter_size": "adapter_size", "teacher_quant_bits": "teacher_quant_bits"}


def _given_method_options(args) -> dict:
    """The method options given on the command line, by setting name."""
    return {setting: (not value if option == "no_double_quant" else value)
            for option, setting in _METHOD_OPTIONS.items()
            if (value := getattr(args, option, None)) not in (None, False)}


def setup_from_args(args, device: str = "cuda") -> TrainSetup:
    return TrainSetup(
        method=args.method, batch_size=args.batch_size, seq_len=args.seq_len, precision=args.precision,
        mixed_precision=args.mixed_precision, optimizer=args.optimizer,
        gradient_checkpointing=args.gradient_checkpointing, attention=args.attention, num_gpus=args.num_gpus,
        sharding=args.sharding, cpu_offload=args.cpu_offload, grad_accum=args.grad_accum, device=device,
        examples=args.examples, tokens_per_example=args.tokens_per_example, epochs=args.epochs,
        **{k: getattr(args, k, False) for k in SPEED_SETTINGS}, **_given_method_options(args))




def gpu_from_args(args) -> GPU | None:
    if args.gpu_memory_gib is not None or args.gpu_tflops is not None:
        if args.gpu:
            raise InputError("give either --gpu or a custom GPU (--gpu-memory-gib/--gpu-tflops), not both")
        return custom_gpu(args.gpu_memory_gib, args.gpu_tflops, args.price_per_hour)
    if args.gpu is not None and not args.gpu.strip():
        raise InputError("--gpu is empty: give a GPU id from `tuning-advisor gpus` (or leave it out)")
    return gpu_by_id(args.gpu) if args.gpu else None


# Plan settings a TrainSetup does not carry: each option of that name feeds the setting when given.
_RUN_SETTINGS = ("lr", "lora_alpha", "prompt_init", "temperature", "alpha", "teacher")
# Every option that describes the plan: none of them goes with --plan (the file says it all).
_PLAN_EXCLUSIVE = ("model", "method", "batch_size", "seq_len", "precision", "mixed_precision", "optimizer",
                   "gradient_checkpointing", "attention", "grad_accum", "lora_rank", "lora_targets", "quant_bits",
                   "no_double_quant", "num_virtual_tokens", "adapter_size", "teacher_quant_bits", "gpu",
                   "gpu_memory_gib", "gpu_tflops", "num_gpus", "sharding", "cpu_offload", "price_per_hour",
                   "examples", "tokens_per_example", "epochs", "tasks") + _RUN_SETTINGS + SPEED_SETTINGS + ("estimate_data",)


def plan_from_args(args, parser: argparse.ArgumentParser) -> Plan:
    """The plan a command works on: ``--plan FILE`` as it is, or one built from the options."""
    if args.plan:
        given = [name for name in _PLAN_EXCLUSIVE if getattr(args, name, None) != parser.get_default(name)]
        if given:
            raise InputError(f"--{given[0].replace('_', '-')} does not go with --plan: edit the plan file instead "
                             "(or drop --plan)")
        plan = Plan.from_file(args.plan)
        host = getattr(args, "host_memory_gib", None)
        return plan if host is None else plan.edit(hardware={"host_memory_gib": host})
    if not args.model or not args.method:
        raise InputError("give --model and --method (or --plan FILE)")
    method = REGISTRY[args.method]
    extra = {k: getattr(args, k) for k in _RUN_SETTINGS if getattr(args, k, None) is not None}
    options = {setting: option for option, setting in _METHOD_OPTIONS.items()}
    unknown = [options.get(k, k) for k in [*extra, *_given_method_options(args)]
               if k not in {"lr"} | set(method.setting_names)]
    if unknown:
        raise InputError(f"--{unknown[0].replace('_', '-')} does not apply to {args.method} (drop it, or choose a "
                         "method it belongs to)")
    setup = setup_from_args(args)
    gpu = gpu_from_args(args)
    hardware = {"price_per_hour": args.price_per_hour, "host_memory_gib": getattr(args, "host_memory_gib", None)}
    if gpu is not None and gpu.id == "custom":
        hardware.update(gpu="custom", gpu_memory_gib=args.gpu_memory_gib, gpu_tflops=args.gpu_tflops)
    elif gpu is not None:
        hardware["gpu"] = gpu.id
    data = None
    if getattr(args, "estimate_data", None):  # estimate --data FILE: the data facts, as the app's upload fills them
        if args.examples is not None or args.tokens_per_example is not None:
            raise InputError("--data FILE gives the examples and their lengths: drop --examples/--tokens-per-example")
        from tuners.datareport import data_facts  # a bounded subprocess; no torch here

        data = data_facts(args.estimate_data, args.model)
        setup = replace(setup, examples=data["num_examples"], tokens_per_example=data["tokens_per_example"])
    return Plan.from_setup(args.model, setup, settings=extra, hardware=hardware, data=data, tasks=args.tasks)


def estimate_plan(plan: Plan) -> Estimate:
    """The plan's estimate with this machine's calibration for its GPU, if trials recorded one."""
    from tuners.store import calibration_for  # sqlite only (no torch)

    gpu = plan.gpu()
    return plan.run_estimate(calibration_for(gpu.id if gpu else None, plan.method, plan.settings["precision"]))


# --- commands -------------------------------------------------------------------------------------


def cmd_local_models(args) -> int:
    """`models --local`: models in the Hugging Face cache and the given folders (nothing downloaded)."""
    from tuners.localmodels import hub_cache_dir, scan  # files only: no torch

    rows = [m.to_dict() for m in scan(args.folder or ())]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in [r for r in rows if r["error"] and not r["model_type"]]:  # a folder we cannot read: a note, not a row
        print(f"tuning-advisor models: skipped {r['path']}: {r['error']}", file=sys.stderr)
        rows.remove(r)
    if not rows:
        print(f"no models found in {hub_cache_dir()}" + (f" or {', '.join(args.folder)}" if args.folder else ""))
        return 0
    shown = [{**r, "params": human_count(r["params"]) if r["params"] else "?", "size": gib(r["size_bytes"]),
              "tokenizer": "yes" if r["tokenizer"] else "no", "weights": "yes" if r["weights"] else "no",
              "model_type": r["model_type"] or r["error"] or "?"} for r in rows]
    print(_table(shown, [("id", "id"), ("model_type", "family"), ("params", "params"), ("size", "on disk"),
                         ("weights", "weights"), ("tokenizer", "tokenizer"), ("path", "path (for --model)")]))
    return 0


def cmd_models(args) -> int:
    if args.folder and not args.local:
        raise InputError("--folder lists models on this machine: add --local (models --local --folder DIR)")
    if args.local:
        return cmd_local_models(args)
    rows = catalog_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    shown = [{**r, "params": human_count(r["params"]),
              "active_params": human_count(r["active_params"]) if r["active_params"] != r["params"] else ""} for r in rows]
    print(_table(shown, [("id", "id"), ("family", "family"), ("kind", "kind"), ("params", "params"),
                         ("active_params", "active"), ("layers", "layers"), ("hidden", "hidden"), ("vocab", "vocab")]))
    return 0


def cmd_gpus(args) -> int:
    from estimators.transfer import host_for

    rows = [{**g.to_dict(), "host": dataclasses.asdict(host_for(g.id))} for g in gpus().values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    shown = [{**r, "bf16_tflops": r["bf16_tflops"] or "—", "price": f"${r['price_per_hour_usd']:.2f}/h"} for r in rows]
    print(_table(shown, [("id", "id"), ("name", "name"), ("memory_gib", "GiB"), ("bf16_tflops", "bf16 TFLOP/s"),
                         ("fp16_tflops", "fp16"), ("fp32_tflops", "fp32"), ("bandwidth_gbs", "GB/s"), ("price", "price")]))
    return 0


def cmd_estimate(args) -> int:
    if not args.min_gpus and (args.max_hours is not None or args.max_cost is not None):
        raise InputError("--max-hours and --max-cost are budgets for --min-gpus: add --min-gpus (or drop them)")
    plan = plan_from_args(args, args.parser)
    e = estimate_plan(plan)
    out = e.to_json()
    out["plan"] = {**plan.to_json(), "estimate": None}
    if args.dry_run:
        from tuners.dryrun import SUPPORTED, dry_run  # imports torch: only when asked

        if plan.method not in SUPPORTED:
            raise InputError(f"the exact check supports {', '.join(SUPPORTED)}; {plan.method} needs a real trial run "
                             "(tuning-advisor trial)")
        if not args.json:
            print("exact check: running one step on fake tensors…", file=sys.stderr)
        d = dry_run(e.spec.config, plan)
        d["analytic_vs_dry_run"] = e.memory.peak_allocated / d["peak_allocated"] - 1
        out["dry_run"] = d
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


def cmd_recommend(args) -> int:
    from advisor.answers import Answers
    from advisor.recommend import recommend

    rec = recommend(Answers.from_file(args.answers))
    print(json.dumps(rec.to_json(), indent=2) if args.json else format_recommendation(rec))
    return 0


def cmd_trial(args) -> int:
    from tuners import launch, store

    store.check_home()  # a data folder that cannot be written: one line with the fix, before anything runs
    if args.nproc > 1 and not args.plan and args.num_gpus == 1:
        args.num_gpus = args.nproc  # N ranks stand for N GPUs of the plan
    plan = plan_from_args(args, args.parser)  # validates every option before anything starts
    data = args.data or plan.data.get("path")
    if not data:
        raise InputError("give --data FILE (JSONL, CSV or Parquet): the plan has no data path")
    if not Path(data).expanduser().is_file():
        what = "is not a regular file (a pipe, device or folder)" if Path(data).expanduser().exists() else "not found"
        raise InputError(f"data file '{data}' {what} (give a .jsonl, .csv or .parquet file)")
    def absolute(ref: str) -> str:  # a local folder or config is named by its absolute path (the runner's cwd differs)
        path = Path(ref).expanduser()
        return str(path.resolve()) if path.exists() else ref

    teacher = plan.settings.get("teacher")
    plan = plan.edit(model=absolute(plan.model), data={"path": absolute(data)},
                     settings={"teacher": absolute(teacher)} if teacher else None)
    plan.spec()  # the model exists and suits the plan, before anything starts
    if not args.scale_down and not args.force:
        from tuners.launch import memory_shortfall  # no torch

        short = memory_shortfall(plan, args.nproc)
        if short:
            raise InputError(short + ": add --scale-down for a small copy of the architecture, or --force to try anyway")
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


def cmd_export(args) -> int:
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


def cmd_runs(args) -> int:
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
        return 0
    if not rows:
        print("no runs yet (start one with `tuning-advisor trial`)")
        return 0
    shown = []
    for r in rows:
        est = (r["estimate"] or {}).get("memory", {}).get("peak_allocated")
        meas = (r["measured"] or {}).get("peak_allocated")
        shown.append({"id": r["id"], "status": r["status"], "method": r["method"] or "",
                      "model": Path(r["model"] or "").name, "device": (r["device"] or "")[:24],
                      "est peak": gib(est), "measured peak": gib(meas), "error": (r["error"] or "")[:60]})
    print(_table(shown, [(k, k) for k in ("id", "status", "method", "model", "device", "est peak", "measured peak",
                                          "error")]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tuning-advisor", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("models", help="list the model catalog (or, with --local, the models on this machine)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--local", action="store_true",
                   help="list models in the Hugging Face cache (HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub)")
    p.add_argument("--folder", action="append", metavar="DIR",
                   help="with --local: also look in this folder (a model folder or a folder of them; repeatable)")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("gpus", help="list the GPU catalog")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gpus)
    p = sub.add_parser("estimate", help="memory, time, cost and artifact size of one setup",
                       description="Estimate memory per GPU, time, cost and artifact size of tuning a model.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setup_arguments(p)
    p.add_argument("--json", action="store_true", help="print the estimate JSON (DESIGN.md contract)")
    p.add_argument("--data", dest="estimate_data", metavar="FILE",
                   help="a data file (.jsonl, .csv, .parquet): examples and token lengths from it, as the app's upload")
    p.add_argument("--min-gpus", action="store_true",
                   help="also: the smallest count of this GPU that fits under each sharding, and the cheapest GPU "
                        "type x count from the catalog that fits (within --max-hours/--max-cost when given)")
    p.add_argument("--max-hours", type=_positive_float, help="with --min-gpus: a time budget for the whole run")
    p.add_argument("--max-cost", type=_positive_float, help="with --min-gpus: a money budget (USD) for the whole run")
    p.add_argument("--dry-run", action="store_true",
                   help="also run one real training step on fake tensors (exact peak, no memory used; "
                        "full, lora, prompt_tuning, adapters; seconds to a minute for billions of parameters)")
    p.set_defaults(func=cmd_estimate, parser=p)
    p = sub.add_parser("recommend", help="rank every method for your answers, with reasons",
                       description="Rank the tuning methods for a questionnaire's answers (JSON), with reasons "
                                   "citing CRITERIA.md, caveats, the settings that fit your GPU and their estimates.",
                       epilog=ANSWERS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--answers", required=True, metavar="FILE|-", help="answers JSON file, or - for stdin")
    p.add_argument("--json", action="store_true", help="print the recommendation JSON (DESIGN.md contract)")
    p.set_defaults(func=cmd_recommend)
    p = sub.add_parser("trial", help="a short real tuning run that measures what the estimate predicts",
                       description="Run a few real optimizer steps of a method on your data and model, in a process "
                                   "of its own, and compare measured peak memory and throughput with the estimate.",
                       epilog=TRIAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setup_arguments(p)
    t = p.add_argument_group("trial")
    t.add_argument("--data", help="training data: .jsonl, .csv or .parquet (default: the plan's data path)")
    t.add_argument("--steps", type=_number(int, high=MAX_STEPS), default=20, help="optimizer steps (default 20; at least 3)")
    t.add_argument("--scale-down", action="store_true",
                   help="a small copy of the architecture (random weights) for a quick check on a small machine")
    t.add_argument("--timeout", type=_positive_float, help="stop the run after this many seconds")
    t.add_argument("--nproc", type=_number(int, high=MAX_NPROC), default=1,
                   help="run on N ranks through torchrun with the plan's --sharding (none = DDP, fsdp/zero3 = FSDP2 "
                        "full shard, zero2 = FSDP2 without resharding after forward); N GPUs, or on a CPU machine N "
                        "processes over gloo (default 1)")
    t.add_argument("--keep-model", action="store_true",
                   help="keep the random-weight model copy in the run folder (deleted after the run by default)")
    t.add_argument("--force", action="store_true",
                   help="launch even when the plan's estimated step memory exceeds this machine's free memory")
    t.add_argument("--trust-remote-code", action="store_true", help="allow a model folder's own code (off by default)")
    p.add_argument("--json", action="store_true", help="print the result JSON (DESIGN.md contract)")
    p.set_defaults(func=cmd_trial, parser=p)
    p = sub.add_parser("export", help="write a runnable project (train.py, plan.json, launch.sh...) for a plan",
                       description="Write a runnable project for a plan: train.py (one script for every method, "
                                   "driven by plan.json), plan.json, launch.sh (python or torchrun with the plan's "
                                   "sharding), requirements.txt (pinned) and README.md (expected memory, time, cost).",
                       epilog="Take a plan from `recommend --json` (recommendations[i].plan) or the app's download.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", required=True, metavar="FILE", help="the plan JSON file (- for stdin)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new or empty)")
    p.add_argument("--force", action="store_true", help="write into a folder that has files (overwrites ours)")
    p.add_argument("--json", action="store_true", help="print the folder and its files as JSON")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("runs", help="the history of trial runs")
    p.add_argument("--limit", type=_number(int, high=MAX_LIST), default=50, help="newest runs shown (default 50)")
    p.add_argument("--prune", action="store_true",
                   help="remove the runs that ended without a result (killed, never started), rows and folders")
    p.add_argument("--cancel", metavar="RUN_ID", help="cancel a live run (or end a row whose process is gone)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tuners.home import pin_home  # a relative or ~ TUNING_ADVISOR_HOME, made absolute once (files only)

    pin_home()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):  # no command: the usage, on stderr (it is an error: exit 2)
        parser.print_usage(sys.stderr)
        print("tuning-advisor: error: give a command (see tuning-advisor --help)", file=sys.stderr)
        return 2
    from tuners import metaspec  # no torch until an unknown architecture needs deriving

    metaspec.install()
    try:
        return args.func(args)
    except InputError as exc:
        print(f"tuning-advisor {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`
        return 0
    except KeyboardInterrupt:
        print(f"tuning-advisor {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        print(f"tuning-advisor {args.command}: internal error ({type(exc).__name__}): {exc} "
              "(please report it with the command you ran)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
