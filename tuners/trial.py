"""The trial runner: ``python -m tuners.trial --run-id ID``, in a process (and process group) of its own.

Reads the run's ``request.json``, then: validate → set up (data, tokenizer, model, method,
optimizer) → a few real optimizer steps → report. It appends JSON-line events to ``events.jsonl``
(``started``, ``data``, ``step`` with loss/time/memory, then ``finished``, ``failed`` or ``cancelled``),
writes ``result.json`` (the ``trial --json`` contract) and records the run in the store. Whatever
goes wrong — bad input, out of memory, a crash, a cancel (SIGTERM), a timeout — ends as a
``failed``/``cancelled`` record with a clear error; nothing else is lost.

Step 1 is a warm-up on the longest batch (an out-of-memory shows there, and optimizer states come
into being). Memory: on CUDA the allocator's peaks over the remaining steps; on CPU the peak of
live tensor bytes of step 2 (``LiveTensorTracker``) and the process's peak RSS above its baseline.
Speed: the mean of the un-instrumented steps after that.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from estimators.axes import sharding
from estimators.catalog import gpus, load_model
from estimators.errors import InputError
from estimators.estimate import estimate
from estimators.methods import get
from estimators.plan import Plan
from estimators.setup import TrainSetup
from estimators.spec import spec_from_config
from estimators.tokenizers import tokenizers_compatible
from tuners import runtime, store

# torch.cuda.get_device_name() fragments -> GPU catalog ids, to estimate time on the device we run on.
_DEVICE_NAMES = (("H200", "h200"), ("H100 PCIe", "h100-pcie"), ("H100", "h100-sxm"), ("A100-SXM4-40GB", "a100-40gb"),
                 ("A100", "a100-80gb"), ("L40S", "l40s"), ("L4", "l4"), ("A10G", "a10g"), ("T4", "t4"),
                 ("V100", "v100-32gb"), ("4090", "rtx-4090"), ("3090", "rtx-3090"), ("A6000", "a6000"), ("B200", "b200"))


class Cancelled(BaseException):
    """SIGTERM from a cancel. A BaseException, so no ``except Exception`` on the way (model building,
    data loading, library code) can swallow it into another error: a cancel is always ``cancelled``."""


class OutOfMemory(Exception):
    pass


class TimedOut(BaseException):
    """The run's ``--timeout`` passed (SIGALRM): during data loading and model building as much as in a
    step. A BaseException for the same reason as ``Cancelled``: nothing on the way may swallow it."""


_INTERRUPTED: list[BaseException] = []
"""The Cancelled/TimedOut a signal raised in this process: a library that catches everything and raises
its own error (an import wrapper, a loader) cannot turn a cancel or a timeout into a 'crash'."""


def _on_alarm(signum, frame):
    _INTERRUPTED.append(TimedOut("timed out: the run took longer than its --timeout"))
    raise _INTERRUPTED[-1]


class Events:
    """Appends JSON-line events to the run's ``events.jsonl``; ranks of a sharded run tag theirs."""

    def __init__(self, run_dir: Path, rank: int | None = None):
        self.path = run_dir / "events.jsonl"
        self.rank = rank

    def __call__(self, event: str, **data) -> None:
        tag = {} if self.rank is None else {"rank": self.rank}
        with self.path.open("a") as f:  # one short O_APPEND write per line: ranks do not interleave lines
            f.write(json.dumps({"event": event, "time": time.time(), **tag, **data}) + "\n")


def _is_oom(exc: BaseException) -> bool:
    import torch

    text = str(exc).lower()
    # CUDA: torch.OutOfMemoryError; CPU: the allocator's "can't allocate memory" RuntimeError.
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in text \
        or "can't allocate memory" in text


def catalog_gpu_for(device_name: str):
    for fragment, gpu_id in _DEVICE_NAMES:
        if fragment.lower() in device_name.lower():
            return gpus()[gpu_id]
    return None


def adapt(plan: Plan, device: str, scale_down: bool, world: int = 1) -> tuple[Plan, list[str]]:
    """The plan as this machine runs it, and every change that took (DESIGN.md: ``adaptations``)."""
    notes, hardware = [], {}
    h = plan.hardware
    if device == "cpu":
        notes.append("no CUDA device: the steps run on this machine's CPU (memory is the peak of live tensor "
                     "bytes; speed is the CPU's)" + (f"; {world} CPU processes over gloo stand in for {world} GPUs"
                                                     if world > 1 else ""))
    if world > 1 and h["num_gpus"] != world:
        hardware["num_gpus"] = world
        notes.append(f"{world} processes instead of the plan's {h['num_gpus']} GPU(s), sharding {h['sharding']}")
    elif world == 1 and h["num_gpus"] > 1:
        hardware.update(num_gpus=1, sharding="none")
        notes.append(f"one process instead of {h['num_gpus']} GPUs ({h['sharding']}): use --nproc to run sharded")
    if h["cpu_offload"] and device == "cpu":
        hardware["cpu_offload"] = False
        notes.append("CPU offload needs GPUs to offload from: on CPU ranks everything is in host memory already")
    elif h["cpu_offload"] and (world == 1 or sharding(h["sharding"]).engine != "fully_shard"):
        hardware["cpu_offload"] = False
        notes.append("CPU offload runs only with FSDP on several ranks (--nproc N --sharding fsdp): not in this trial")
    if scale_down:
        notes.append("scaled down: a small copy of the architecture (same family, fewer and narrower layers)")
    settings = {}
    if plan.settings.get("teacher_logits") == "precomputed":  # issue 25: the pre-pass is not part of a trial
        settings["teacher_logits"] = "online"
        notes.append("teacher logits computed online: a trial does not run the precomputing pass, so the teacher is "
                     "on the device and in the estimate")
    # Speed settings the trial does not run (issue 21): it measures the plan without them, and says so.
    off = [k for k in ("compile", "optimizer_in_backward", "activation_offloading") if plan.settings.get(k)]
    settings.update(dict.fromkeys(off, False))
    for name in off:
        notes.append(f"{name} off: the trial runs without it (compilation would outlast a trial's steps; the "
                     "other two are not implemented by the runner) — the exported train.py honours compile")
    if (device == "cpu" and plan.settings["precision"] != "fp32" and not plan.settings.get("mixed_precision")
            and not get(plan.method).compute_16bit):
        # A CPU runs 16-bit training far slower than fp32 (most elementwise kernels convert per element), so
        # a bf16 step here measures the CPU's emulation, not the plan: run fp32 and estimate fp32 (issue 21).
        settings["precision"] = "fp32"
        notes.append(f"fp32 on this CPU instead of the plan's {plan.settings['precision']}: CPUs run 16-bit training "
                     "far slower than fp32, so the trial measures (and estimates) fp32 here (QLoRA and mixed precision "
                     "keep their dtypes)")
    if settings:
        plan = plan.edit(settings=settings)
    return (plan.edit(hardware=hardware) if hardware else plan), notes


def with_trial_settings(plan: Plan, overrides: dict | None, notes: list[str]) -> tuple[Plan, list[str]]:
    """The app's "Adjust for this machine" (``trial_settings``, e.g. a smaller micro-batch): applied to
    the run, listed in ``adaptations``; the exported project keeps the plan as chosen."""
    changed = {k: v for k, v in (overrides or {}).items() if plan.settings.get(k) != v}
    if not changed:
        return plan, notes
    said = ", ".join(f"{k.replace('_', ' ')} {v} instead of the plan's {plan.settings.get(k)}" for k, v in changed.items())
    return plan.edit(settings=changed), notes + [f"adjusted for this machine: {said}"]


@dataclass(frozen=True)
class TrialOptions:
    """How to run a plan as a trial (the request's keys besides the plan)."""

    steps: int = 20
    """Optimizer steps: one warm-up, one measured for memory, the rest timed."""
    data: str | None = None
    """The data file (default: the plan's data path)."""
    scale_down: bool = False
    timeout: float | None = None
    cpu: bool = False
    """Run on the CPU even when a GPU is present."""
    trust_remote_code: bool = False
    record_changes: bool = False
    """Write which parameters moved and a probe of outputs (tests check the right weights trained)."""
    keep_model: bool = False
    nproc: int = 1
    trial_settings: dict | None = None
    """Settings this machine runs differently (the app's "Adjust for this machine"): an adaptation."""

    @classmethod
    def read(cls, request: dict) -> tuple[Plan, TrialOptions]:
        """The plan and the options of a stored request, validated (one clear line on bad input)."""
        plan = Plan.from_json(request["plan"])
        keys = {f.name for f in fields(cls)}
        options = cls(**{k: v for k, v in request.items() if k in keys and v is not None})
        options = replace(options, steps=int(options.steps), nproc=int(options.nproc),
                          data=options.data or plan.data.get("path"))
        if options.steps < 3:
            raise InputError("a trial needs at least 3 steps (one warm-up, one measured, one timed): raise --steps")
        if not options.data:
            raise InputError("the plan has no data file: give --data FILE (JSONL, CSV or Parquet)")
        return plan, options


def _nothing(*args) -> None:
    return None


@dataclass
class Hooks:
    """What the recipe calls out to: progress, fault injection and test probes are passed in, not read
    from the environment inside the loop."""

    emit: Callable
    before_step: Callable = _nothing
    """``before_step(step)`` before each optimizer step (fault injection raises here)."""
    on_built: Callable = _nothing
    """``on_built(trial)`` once the model and optimizer exist."""
    after_train: Callable = _nothing
    """``after_train(trial)`` after the last step."""


@dataclass
class Trial:
    """What ``setup`` made: everything ``train`` and ``report`` read."""

    run_id: str
    run_dir: Path
    plan: Plan
    """The plan as the user gave it (the exported project trains this)."""
    options: TrialOptions
    run_plan: Plan
    """The plan as this machine runs it; ``adaptations`` says how it differs."""
    adaptations: list
    device: str
    device_name: str
    rank: int
    world: int
    started: float
    meter: object = None
    source: object = None
    sample: object = None
    """The rows read from the data file (all of a small file; a bounded sample of a big one)."""
    data_report: object = None
    recipe: dict | None = None
    gpu: object = None
    est: object = None
    built: runtime.Built | None = None
    rows: list | None = None
    pad_id: int = 0

    @property
    def setup(self) -> TrainSetup:
        return self.run_plan.setup(self.device.split(":")[0])


def _place(options: TrialOptions) -> tuple[str, str, int, int]:
    """(device, its name, rank, world): a CUDA device when there is one (unless asked for the CPU)."""
    import torch

    rank, local_rank, world = runtime.distributed()
    device = "cuda" if torch.cuda.is_available() and not options.cpu else "cpu"
    if world > 1:
        torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
    if device == "cpu":
        return "cpu", "cpu", rank, world
    torch.cuda.set_device(f"cuda:{local_rank}")
    return f"cuda:{local_rank}", f"cuda:{local_rank} {torch.cuda.get_device_name(local_rank)}", rank, world


def _sources(t: Trial):
    """The model (and teacher) folders and the tokenizer. Several ranks: rank 0 writes the random-weight
    copies and the tokenizer, the others then read them."""
    import torch

    from tuners import data as data_mod
    from tuners import models

    t.sample = data_mod.load_sample(t.options.data)  # what the steps need, and a bounded sample for the report
    examples = t.sample.usable
    later = t.world > 1 and t.rank != 0
    if later:
        torch.distributed.barrier()
    scale, teacher = t.options.scale_down, t.plan.settings.get("teacher")
    t.source = models.materialize(t.plan.model, t.run_dir, scale, reuse=later)
    tokenizer = models.tokenizer_for(t.source, [e.prompt + e.completion for e in examples], t.run_dir, reuse=later)
    teacher_source = models.materialize(teacher, t.run_dir / "teacher", scale, seed=1, reuse=later) if teacher else None
    if t.world > 1 and t.rank == 0:
        torch.distributed.barrier()
    return tokenizer, teacher_source


def _estimate(t: Trial, teacher_source) -> None:
    """The method's recipe for this architecture, and the estimate for exactly this run on this device."""
    from tuners import methods

    setup, s = t.setup, t.run_plan.settings
    spec = spec_from_config(t.source.config, model_id=t.plan.model)
    t.recipe = methods.recipe(t.run_plan, spec)
    teacher_spec = None
    if t.recipe.get("teacher"):
        teacher_spec = spec_from_config(teacher_source.config, model_id=s["teacher"])
        if not tokenizers_compatible(load_model(s["teacher"]), load_model(t.plan.model)):  # family, not vocab size
            raise InputError(f"teacher {s['teacher']} and student {t.plan.model} use different tokenizers: "
                             "distillation needs a shared tokenizer (C6.7)")
        t.recipe["teacher"]["model"] = str(teacher_source.folder)
    if t.device.startswith("cuda"):
        t.gpu = catalog_gpu_for(t.device_name)
    else:
        import torch

        from tuners.hardware import cpu_device, trial_threads

        threads, why = trial_threads()  # on the cores other processes leave idle (OpenMP barrier stalls)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        if why:
            t.adaptations.append(why)
        t.gpu = cpu_device(fresh=True)  # matmul peak measured now, at these threads: the estimate the steps check
    calibration = store.calibration_for(t.gpu.id if t.gpu else None, setup.method, setup.precision)
    t.est = estimate(spec, setup, t.gpu, teacher_spec, price_per_hour=t.plan.hardware.get("price_per_hour"),
                     calibration=calibration)
    if t.rank == 0:
        (t.run_dir / "estimate.json").write_text(json.dumps(t.est.to_json(), indent=2))
        store.try_update(t.run_id, estimate=t.est.to_json())


def setup(run_id: str, run_dir: Path, plan: Plan, options: TrialOptions, hooks: Hooks) -> Trial:
    """Places the run, adapts the plan to this machine, reads and validates the data, estimates, and
    builds the model, optimizer and data through the runtime's one builder."""
    from tuners import data as data_mod
    from tuners.measure import CpuMeter, CudaMeter

    started = time.time()
    device, device_name, rank, world = _place(options)
    run_plan, adaptations = adapt(plan, device, options.scale_down, world)
    run_plan, adaptations = with_trial_settings(run_plan, options.trial_settings, adaptations)
    t = Trial(run_id, run_dir, plan, options, run_plan, adaptations, device, device_name, rank, world, started)
    if rank == 0:
        store.try_update(run_id, device=device_name + (f" ×{world}" if world > 1 else ""))
    t.meter = CpuMeter(world) if device == "cpu" else CudaMeter()
    tokenizer, teacher_source = _sources(t)
    t.data_report, examples = data_mod.validate(t.sample, tokenizer, t.setup.seq_len)
    hooks.emit("data", report=t.data_report.to_dict(), model=t.source.description)
    if not (t.setup.examples and t.setup.tokens_per_example):  # whole-run figures for the file itself
        lengths = t.data_report.token_lengths
        mean = sum(min(n, t.setup.seq_len) for n in lengths) / len(lengths)
        t.run_plan = t.run_plan.edit(data={"num_examples": t.data_report.usable_in_file,
                                           "tokens_per_example": max(1, round(mean))})
    _estimate(t, teacher_source)
    tokenizer_path = run_dir / "tokenizer" if (run_dir / "tokenizer").exists() else t.source.folder
    from tuners.export import needs_bitsandbytes

    if not (needs_bitsandbytes(t.recipe, t.run_plan.settings) or "quantization_config" in t.source.config):
        # PEFT imports bitsandbytes whenever it is installed, and bitsandbytes calls torch.compile on
        # import (~1.7 s of every trial, more under load): marked absent, PEFT skips it (issue 27).
        sys.modules.setdefault("bitsandbytes", None)
    try:
        t.built = runtime.build({**t.run_plan.to_json(), "recipe": t.recipe}, t.source.folder, device,
                                tokenizer_path=tokenizer_path, trust_remote_code=options.trust_remote_code,
                                world=world)
    except ValueError as exc:
        raise InputError(str(exc).splitlines()[0]) from None
    if not t.setup.packing:  # only what the steps take (longest first); packing lays out every example
        needed = options.steps * t.setup.batch_size * max(1, t.setup.grad_accum) * world
        examples = data_mod.for_steps(examples, t.data_report.token_lengths, needed)
    t.rows = runtime.training_rows(examples, tokenizer, t.run_plan.settings, rank, world)
    t.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    hooks.on_built(t)
    return t


def _on_device(batch: dict, device: str) -> dict:
    if int(batch["attention_mask"].min()) == 1:
        del batch["attention_mask"]  # no padding: let SDPA use its mask-free kernel
    return {k: v.to(device) for k, v in batch.items()}


def train(t: Trial, hooks: Hooks) -> dict:
    """The steps: longest rows first, each step the plan's ``grad_accum`` micro-batches padded to
    ``seq_len``, measured by the trial's meter. Returns losses and the timed steps' seconds."""
    built, setup, options = t.built, t.setup, t.options
    n = sum(p.numel() for p in built.model.parameters())
    hooks.emit("setup", trainable_params=built.report()["trainable_params"], total_params=n, device=t.device_name,
               lr=t.run_plan.settings["lr"], pid=os.getpid(), random_weights=t.source.random_weights,
               scaled_down=t.source.scaled_down, adaptations=t.adaptations)
    # processed tokens per optimizer step (prompt tuning's virtual tokens included), e.g. 4 × 4 × 128 = 2,048
    tokens = setup.batch_size * setup.grad_accum * setup.tokens_per_sequence
    losses, timed = [], []
    groups = runtime.loader(t.rows, t.run_plan.settings, t.pad_id, order="longest_first", steps=options.steps,
                            pad_to=setup.seq_len)
    for step, group in enumerate(groups, 1):
        group = [_on_device(b, t.device) for b in group]
        hooks.before_step(step)
        if options.timeout and time.time() - t.started > float(options.timeout):
            raise TimeoutError(f"timed out after {options.timeout} s at step {step} of {options.steps}")
        t0 = time.perf_counter()
        try:
            with t.meter.step(step, built, group) as on_phase:
                value = float(built.step(group, on_phase))
        except Exception as exc:
            if _is_oom(exc):
                raise OutOfMemory(f"out of memory at step {step} (batch {setup.batch_size} × {setup.seq_len} tokens): "
                                  "try gradient checkpointing, a smaller batch or sequence length, or qlora") from exc
            raise
        seconds = time.perf_counter() - t0
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} at step {step}: lower the learning rate or check the data")
        losses.append(value)
        if step >= 3:
            timed.append(seconds)
        hooks.emit("step", step=step, steps=options.steps, loss=value, seconds=seconds, tokens=tokens,
                   memory=t.meter.current())
    hooks.after_train(t)
    return {"losses": losses, "timed": timed, "tokens_per_step": tokens, "total_params": n}


def _measured(t: Trial, trained: dict) -> dict:
    """This rank's memory and pace, gathered over the ranks: peaks are the largest rank's, the pace the
    slowest rank's (all ranks together)."""
    from tuners import distributed

    mine = {"rank": t.rank, "step_seconds": statistics.median(trained["timed"]),  # robust to a busy machine's stalls
            "parameter_bytes": distributed.local_parameter_bytes(t.built.model), **t.meter.measured()}
    extra = {k: mine.pop(k) for k in ("peak_phase", "peak_rss_above_baseline", "peak_reserved") if k in mine}
    per_rank = distributed.gather(mine, t.world)
    slowest = max(r["step_seconds"] for r in per_rank)
    return {"peak_allocated": max(r["peak_allocated"] for r in per_rank),
            "peak_device": max(r["peak_device"] for r in per_rank), "step_seconds": slowest,
            "tokens_per_second": trained["tokens_per_step"] * t.world / slowest, "losses": trained["losses"],
            "trainable_params": t.built.report()["trainable_params"], "total_params": trained["total_params"],
            "per_rank": per_rank, **extra}


def _extrapolated(t: Trial, tps: float) -> dict:
    """The whole run (the plan's data and epochs) at the measured pace."""
    setup, est = t.setup, t.est
    total_tokens = setup.examples * (setup.tokens_per_example + setup.m.virtual_tokens(setup)) * setup.epochs
    if est.time.seconds and est.time.tokens_per_second:  # the estimate's run (its padding or packing) at this pace
        seconds = est.time.seconds * est.time.tokens_per_second / tps
        assumption = ("the estimated whole run (its padding or packing, steps and optimizer) scaled by the measured "
                      "over the estimated tokens/s at this trial's shape")
    else:
        seconds = total_tokens / tps
        assumption = "whole run at the measured tokens/s of this device (padded batches of seq_len)"
    price = t.plan.hardware.get("price_per_hour")
    if price is None and t.gpu is not None and t.device != "cpu":
        price = t.gpu.price_per_hour_usd
    return {"tokens": int(total_tokens), "seconds": seconds,
            "cost_usd": None if price is None else round(seconds / 3600 * price, 4), "assumption": assumption}


def _differences(t: Trial, built: dict) -> list[str]:
    """What the run did differently from the plan, field by field (beside ``adapt``'s reasons)."""
    notes = []
    for part in ("settings", "hardware"):
        before, after = getattr(t.plan, part), getattr(t.run_plan, part)
        notes += [f"{part}.{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in sorted(set(before) | set(after))
                  if before.get(k) != after.get(k)]
    if built["micro_batches_per_step"] != t.setup.grad_accum:
        notes.append(f"{built['micro_batches_per_step']} micro-batches per optimizer step ran, the plan has "
                     f"grad_accum {t.setup.grad_accum}")
    if t.est.trainable != built["trainable_params"]:
        notes.append(f"{built['trainable_params']:,} trainable parameters were built, the estimate counts "
                     f"{t.est.trainable:,}")
    return notes


def report(t: Trial, trained: dict) -> dict:
    """Measured beside estimated, the whole run extrapolated, this device calibrated, the artifact and
    the project saved; the ``trial --json`` result (rank 0; other ranks only take part)."""
    measured, built = _measured(t, trained), t.built.report()
    extrapolated = _extrapolated(t, measured["tokens_per_second"])
    if t.gpu is not None and t.world == 1:  # several ranks add communication: not a device's own efficiency
        calibrate(t.run_id, t.setup, t.gpu, t.est, measured["step_seconds"], measured if t.device != "cpu" else None)
    ej = t.est.to_json()
    ratios = {"peak_allocated": measured["peak_allocated"] / ej["memory"]["peak_allocated"]
              if measured["peak_allocated"] else None}
    if ej["throughput"]["tokens_per_second"]:
        ratios["tokens_per_second"] = measured["tokens_per_second"] / ej["throughput"]["tokens_per_second"]
    artifact = None
    if get(t.plan.method).artifact == "adapter":  # a whole model is gigabytes: the exported project saves it
        state = runtime.full_state_dict(t.built.model) if t.world > 1 else None  # every rank takes part
        if t.rank == 0:
            model = getattr(t.built.model, "module", t.built.model)
            artifact = runtime.save_artifact(model, t.run_dir / "adapter", t.recipe, state_dict=state)
    if t.rank != 0:
        return {"rank": t.rank}
    from tuners.export import write_project

    project = write_project(t.plan, t.run_dir / "project")
    notes = [t.source.description] + (["random weights: memory and speed are meaningful, the loss is not"]
                                      if t.source.random_weights else [])
    return {"measured": measured, "extrapolated": extrapolated, "ratios": ratios, "estimate": ej,
            "device": t.device_name, "artifact": str(artifact) if artifact else None, "project": str(project),
            "script": str(project / "train.py"), "settings": dict(t.run_plan.settings),
            "adaptations": t.adaptations + _differences(t, built), "plan": t.run_plan.to_json(),
            "data": t.data_report.to_dict(), "notes": notes, "build": built,
            "trainable_params": built["trainable_params"], "total_params": trained["total_params"]}


def execute(run_id: str, run_dir: Path, request: dict, hooks: Hooks) -> dict:
    """The recipe: setup -> train -> report (``finish`` is the cleanup)."""
    plan, options = TrialOptions.read(request)
    trial = setup(run_id, run_dir, plan, options, hooks)
    return report(trial, train(trial, hooks))


def change_recorder(run_dir: Path) -> tuple[Callable, Callable]:
    """(on_built, after_train) hooks that write which parameters moved (``changed.json``) and a probe of
    the trained model's outputs (``probe.pt``), for tests to check the right weights trained."""
    import torch

    before = {}

    def on_built(t: Trial) -> None:
        if t.world == 1:
            before.update({n: p.detach().clone() for n, p in t.built.model.named_parameters()})

    def after_train(t: Trial) -> None:
        if not before:
            return
        model = t.built.model
        changed = {n: not torch.equal(before[n].to(p.device), p.detach()) for n, p in model.named_parameters()}
        (run_dir / "changed.json").write_text(json.dumps(changed))
        model.eval()
        probe = torch.tensor([t.rows[0]["input_ids"][:16]], device=t.device)
        with torch.no_grad():
            torch.save({"input_ids": probe.cpu(), "logits": model(input_ids=probe).logits.float().cpu()},
                       run_dir / "probe.pt")
        model.train()

    return on_built, after_train


def simulated_oom(step_number: str | None) -> Callable:
    """A ``before_step`` hook that fails like an out-of-memory at that step (tests of the OOM path)."""
    def before_step(step: int) -> None:
        if step_number is not None and str(step) == step_number:
            raise OutOfMemory(f"simulated out-of-memory at step {step}")
    return before_step


def hooks_for(request: dict, emit: Events, run_dir: Path) -> Hooks:
    """The hooks a stored request asks for; the fault-injection switch is read here, once, at start."""
    hooks = Hooks(emit, before_step=simulated_oom(os.environ.get("TUNING_ADVISOR_SIMULATE_OOM")))
    if request.get("record_changes"):
        hooks.on_built, hooks.after_train = change_recorder(run_dir)
    return hooks


def calibrate(run_id: str, setup: TrainSetup, gpu, est, step_seconds: float, cuda_measured: dict | None) -> None:
    """Records what this device achieved so later estimates on it use it (estimators.calibration).

    The stored efficiency is the base efficiency that makes the step-time model (estimators/steptime.py)
    reproduce this trial's measured step: ``grad_accum`` micro-batches padded to ``seq_len`` and the update,
    so passed back to ``estimate`` it predicts other batches, lengths and methods on this device."""
    from estimators.steptime import efficiency_for
    from estimators.throughput import flops_per_token

    def per_token(length):
        return flops_per_token(est.spec, setup, est.teacher, length)

    # a trial step is the plan's optimizer step: grad_accum micro-batches padded to seq_len, then the update
    efficiency = efficiency_for(est.spec, setup, gpu, setup.tokens_per_sequence, per_token, step_seconds)
    if efficiency is None:  # faster than the terms that do not scale with efficiency: nothing to learn
        return
    overhead = slack = None
    if cuda_measured:
        overhead = cuda_measured["peak_device"] - cuda_measured["peak_reserved"]
        slack = (cuda_measured["peak_reserved"] - cuda_measured["peak_allocated"]) / cuda_measured["peak_allocated"]
    store.record_calibration(gpu.id, setup.method, setup.precision, efficiency, run_id, overhead, slack)


def blank_result(run_id: str) -> dict:
    """A run's result before anything is known: failed until proven otherwise (the trial --json shape)."""
    return {"run_id": run_id, "status": "failed", "device": None, "estimate": None, "measured": None,
            "extrapolated": None, "error": None}


def outcome(run_id: str, run_dir: Path, request: dict, emit: Events) -> dict:
    """Runs ``execute`` and turns whatever happens into a result dict (status, error, error_kind)."""
    result = blank_result(run_id)
    try:
        result.update(execute(run_id, run_dir, request, hooks_for(request, emit, run_dir)))
        result["status"] = "completed"
    except Cancelled as exc:
        result.update(status="cancelled", error=str(exc), error_kind="cancelled")
    except TimedOut as exc:
        result.update(error=str(exc), error_kind="timeout")
    except (InputError, OutOfMemory, TimeoutError, FloatingPointError) as exc:
        result["error"] = str(exc)
        result["error_kind"] = {InputError: "input", OutOfMemory: "oom", TimeoutError: "timeout"}.get(type(exc), "loss")
    except Exception as exc:  # a crash: one line for the user, the traceback in the run folder
        name = "traceback.txt" if emit.rank is None else f"traceback-rank{emit.rank}.txt"
        try:
            (run_dir / name).write_text(traceback.format_exc())
        except OSError:  # a full disk: the one-line error still goes to the store
            pass
        if _INTERRUPTED:  # a signal's cancel or timeout, re-raised by a library as its own error
            cause = _INTERRUPTED[0]
            cancelled = isinstance(cause, Cancelled)
            result.update(status="cancelled" if cancelled else "failed", error=str(cause),
                          error_kind="cancelled" if cancelled else "timeout")
            return result
        full = store.full_disk_message(exc)
        if full:
            result.update(error=full, error_kind="disk")
            return result
        oom = False
        try:
            oom = _is_oom(exc)
        except Exception:
            pass
        result["error_kind"] = "oom" if oom else "crash"
        result["error"] = ("out of memory: " if oom else f"crashed ({type(exc).__name__}): ") + \
            str(exc).splitlines()[0][:300] + f" (details in {run_dir / name})"
    return result


def finish(run_id: str, run_dir: Path, result: dict, emit: Events, keep_model: bool = False) -> int:
    """Records a run's end once: result.json, the store row, the last event. The random-weight model
    copies the run wrote (gigabytes for a real architecture) are deleted unless asked to keep them."""
    if not keep_model:
        import shutil

        for folder in (run_dir / "model", run_dir / "teacher" / "model"):
            shutil.rmtree(folder, ignore_errors=True)
    if result["estimate"] is None and (run_dir / "estimate.json").exists():
        result["estimate"] = json.loads((run_dir / "estimate.json").read_text())  # OOM is recorded beside it
    if result["device"] is None:
        result["device"] = (store.get(run_id) or {}).get("device")
    store.record_result(run_id, run_dir, result)  # result.json and the row, retried while the disk is full
    try:
        emit({"completed": "finished"}.get(result["status"], result["status"]), status=result["status"],
             error=result["error"])
    except OSError:  # a full disk: the result is recorded (or is taken from result.json later)
        pass
    return 0 if result["status"] == "completed" else 1


def _on_term(signum, frame):
    _INTERRUPTED.append(Cancelled(store.CANCEL_REQUESTED))
    raise _INTERRUPTED[-1]


def run(run_id: str, worker: bool = False) -> int:
    """One run: in this process, or (``nproc`` > 1) supervised over torchrun ranks; ``worker``: one rank."""
    row = store.get(run_id)
    if row is None:
        print(f"unknown run {run_id}", file=sys.stderr)
        return 2
    run_dir = Path(row["run_dir"])
    request = row["request"]
    signal.signal(signal.SIGTERM, _on_term)
    if worker:  # a rank under torchrun: the supervisor records the run
        from tuners.distributed import finish_rank

        rank = runtime.distributed()[0]
        result = outcome(run_id, run_dir, request, Events(run_dir, rank))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return finish_rank(run_dir, rank, result)
    emit = Events(run_dir)
    store.try_update(run_id, status="running", pid=os.getpid(), pid_start=store.process_start(os.getpid()))
    emit("started", run_id=run_id, pid=os.getpid())
    if int(request.get("nproc") or 1) > 1:
        from tuners.distributed import supervise

        result = supervise(run_id, run_dir, request, emit)  # its own deadline ends every rank
    else:
        if request.get("timeout"):  # the whole run: data, tokenizer, model build and steps
            signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, float(request["timeout"]))
        result = outcome(run_id, run_dir, request, emit)
        signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return finish(run_id, run_dir, result, emit, keep_model=bool(request.get("keep_model")))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tuners.trial", description="Run one trial recorded in the store.")
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--worker", action="store_true", help="one rank of a sharded run (started by torchrun)")
    args = ap.parse_args(argv)
    from tuners import metaspec

    metaspec.install()  # any architecture transformers builds
    return run(args.run_id, args.worker)


if __name__ == "__main__":
    sys.exit(main())
