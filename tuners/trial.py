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
import resource
import signal
import statistics
import sys
import time
import traceback
from pathlib import Path

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


def _rss_bytes() -> int:
    from tuners.hardware import proc_bytes

    return proc_bytes("/proc/self/status", "VmRSS:") or 0


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
    elif h["cpu_offload"] and (world == 1 or not runtime.sharded(h["sharding"])):
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


def execute(run_id: str, run_dir: Path, request: dict, emit: Events) -> dict:
    import torch

    from tuners import data as data_mod
    from tuners import distributed, methods, models
    from tuners.export import write_project
    from tuners.memtrack import LiveTensorTracker

    # --- validate: the plan, the steps, the data --------------------------------------------------
    started = time.time()
    timeout = request.get("timeout")
    steps = int(request.get("steps") or 20)
    if steps < 3:
        raise InputError("a trial needs at least 3 steps (one warm-up, one measured, one timed): raise --steps")
    plan = Plan.from_json(request["plan"])
    data_path = request.get("data") or plan.data.get("path")
    if not data_path:
        raise InputError("the plan has no data file: give --data FILE (JSONL, CSV or Parquet)")
    rank, local_rank, world = runtime.distributed()
    device = "cuda" if torch.cuda.is_available() and not request.get("cpu") else "cpu"
    if world > 1:
        torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
    scale = bool(request.get("scale_down"))
    trial_plan, adaptations = adapt(plan, device, scale, world)
    setup = trial_plan.setup(device)
    s = trial_plan.settings
    device_name = f"cuda:{local_rank} {torch.cuda.get_device_name(local_rank)}" if device == "cuda" else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if rank == 0:
        store.try_update(run_id, device=device_name + (f" ×{world}" if world > 1 else ""))
    baseline_rss = _rss_bytes()

    # --- set up: data, tokenizer, model, method ---------------------------------------------------
    sample = data_mod.load_sample(data_path)  # what the steps need, and a bounded sample for the report
    examples = sample.usable
    # Several ranks: rank 0 writes the random-weight copy and the tokenizer, the others then read them.
    later = world > 1 and rank != 0
    if later:
        torch.distributed.barrier()
    source = models.materialize(plan.model, run_dir, scale, reuse=later)
    tokenizer = models.tokenizer_for(source, [e.prompt + e.completion for e in examples], run_dir, reuse=later)
    teacher_source = None
    if s.get("teacher"):
        teacher_source = models.materialize(s["teacher"], run_dir / "teacher", scale, seed=1, reuse=later)
    if world > 1 and rank == 0:
        torch.distributed.barrier()
    report, examples = data_mod.validate(sample, tokenizer, setup.seq_len)
    emit("data", report=report.to_dict(), model=source.description)
    if not (setup.examples and setup.tokens_per_example):  # whole-run figures for the file itself
        mean = sum(min(n, setup.seq_len) for n in report.token_lengths) / len(report.token_lengths)
        trial_plan = trial_plan.edit(data={"num_examples": report.usable_in_file,
                                           "tokens_per_example": max(1, round(mean))})
        setup = trial_plan.setup(device)
    spec = spec_from_config(source.config, model_id=plan.model)
    recipe = methods.recipe(trial_plan, spec)
    teacher_spec = teacher = None
    if recipe.get("teacher"):
        teacher_spec = spec_from_config(teacher_source.config, model_id=s["teacher"])
        if not tokenizers_compatible(load_model(s["teacher"]), load_model(plan.model)):  # family, not vocab size
            raise InputError(f"teacher {s['teacher']} and student {plan.model} use different tokenizers: "
                             "distillation needs a shared tokenizer (C6.7)")
        recipe["teacher"]["model"] = str(teacher_source.folder)

    if device.startswith("cuda"):
        gpu = catalog_gpu_for(device_name)
    else:
        from tuners.hardware import cpu_device

        gpu = cpu_device()  # measured matmul peak, so CPU trials get a throughput estimate too
    calibration = store.calibration_for(gpu.id if gpu else None, setup.method, setup.precision)
    est = estimate(spec, setup, gpu, teacher_spec, price_per_hour=plan.hardware.get("price_per_hour"),
                   calibration=calibration)
    if rank == 0:
        (run_dir / "estimate.json").write_text(json.dumps(est.to_json(), indent=2))
        store.try_update(run_id, estimate=est.to_json())

    try:
        model = runtime.load_model(source.folder, recipe, s, device,
                                   trust_remote_code=bool(request.get("trust_remote_code")))
    except ValueError as exc:
        raise InputError(str(exc).splitlines()[0]) from None
    tokenizer_path = run_dir / "tokenizer" if (run_dir / "tokenizer").exists() else source.folder
    model = runtime.prepare(model, recipe, s, tokenizer_path=tokenizer_path)
    model.train()
    if recipe.get("teacher"):
        teacher = runtime.load_model(recipe["teacher"]["model"], {"quantization": recipe["teacher"]["quantization"]},
                                     s, device).eval()
        teacher.requires_grad_(False)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    autocast = (device.split(":")[0], runtime.torch_dtype(s["precision"])) if s["mixed_precision"] else None
    if world > 1:  # DDP or FSDP2 as the plan shards (torch.distributed's engines)
        fsdp = runtime.sharded(setup.sharding)
        model = runtime.wrap_distributed(model, setup.sharding, device, autocast[1] if autocast and fsdp else None,
                                         cpu_offload=setup.cpu_offload and fsdp)
        autocast = None if fsdp else autocast
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = runtime.make_optimizer(s["optimizer"], trainable, float(s["lr"]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()} \
        if request.get("record_changes") and world == 1 else None
    if not setup.packing:  # only what the steps take (longest first); packing lays out every example
        examples = data_mod.for_steps(examples, report.token_lengths, steps * setup.batch_size * world)
    encoded = data_mod.encode(examples, tokenizer, setup.seq_len)
    if setup.packing:
        encoded = runtime.pack(encoded, setup.seq_len)
    if world > 1 and len(encoded) >= world:
        encoded = encoded[rank::world]  # each rank its own share of the data, as a real data-parallel run
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    loss = runtime.loss_fn(recipe, teacher, fused=setup.fused_cross_entropy)

    def one_step(batch, tracker=None):
        return float(runtime.train_step(model, optimizer, batch, tracker.set_phase if tracker else (lambda name: None),
                                        loss=loss, autocast=autocast))

    # --- train: a few real steps, measured -------------------------------------------------------
    emit("setup", trainable_params=n_trainable, total_params=n_total, device=device_name, lr=s["lr"], pid=os.getpid(),
         random_weights=source.random_weights, scaled_down=source.scaled_down, adaptations=adaptations)
    losses, timed, peak_tracked, peak_phase = [], [], None, None
    tokens_per_step = setup.batch_size * setup.tokens_per_sequence  # processed tokens (prompt tuning's included)
    for step, batch in enumerate(data_mod.batches(encoded, setup.batch_size, setup.seq_len, pad, steps), 1):
        if int(batch["attention_mask"].min()) == 1:
            del batch["attention_mask"]  # no padding: let SDPA use its mask-free kernel
        batch = {k: v.to(device) for k, v in batch.items()}
        if os.environ.get("TUNING_ADVISOR_SIMULATE_OOM") == str(step):
            raise OutOfMemory(f"simulated out-of-memory at step {step}")
        if timeout and time.time() - started > float(timeout):
            raise TimeoutError(f"timed out after {timeout} s at step {step} of {steps}")
        # CPU memory: the live tensors of step 2. With several ranks the tracker starts at step 1, so what
        # the first step creates and keeps (DDP's gradient buckets, FSDP's buffers) is counted too.
        tracker = None
        if device == "cpu" and step == (1 if world > 1 else 2):
            kept = LiveTensorTracker()
            kept.track(model, optimizer, *([teacher] if teacher is not None else []))
        if device == "cpu" and step in ((1, 2) if world > 1 else (2,)):
            tracker = kept
            tracker.track(batch)
            if step == 2:
                tracker.reset_peak()
        if step == 2 and device != "cpu":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            if tracker is not None:
                with tracker:
                    value = one_step(batch, tracker)
                if step == 2:
                    peak_tracked, peak_phase = tracker.peak, tracker.peak_phase
            else:
                value = one_step(batch)
            if device != "cpu":
                torch.cuda.synchronize()
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
        memory = (torch.cuda.max_memory_allocated() if device != "cpu" else peak_tracked)
        emit("step", step=step, steps=steps, loss=value, seconds=seconds, tokens=tokens_per_step, memory=memory)

    # --- report: measured beside estimated, the artifact and the project -------------------------
    step_seconds = statistics.median(timed)  # robust to a busy machine's stalls (the steps are alike)
    if device != "cpu":
        free, total = torch.cuda.mem_get_info()
        peak_alloc, peak_device = torch.cuda.max_memory_allocated(), total - free
        extra_measured = {"peak_reserved": torch.cuda.max_memory_reserved()}
    else:
        peak_alloc = peak_tracked
        peak_device = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline_rss
        extra_measured = {"peak_phase": peak_phase, "peak_rss_above_baseline": peak_device}
    mine = {"rank": rank, "peak_allocated": peak_alloc, "peak_device": peak_device, "step_seconds": step_seconds,
            "parameter_bytes": distributed.local_parameter_bytes(model)}
    per_rank = distributed.gather(mine, world)
    slowest = max(r["step_seconds"] for r in per_rank)
    tps = tokens_per_step * world / slowest  # all ranks together, at the slowest rank's pace
    peak_alloc = max(r["peak_allocated"] for r in per_rank)
    measured = {"peak_allocated": peak_alloc, "peak_device": max(r["peak_device"] for r in per_rank),
                "step_seconds": slowest, "tokens_per_second": tps, "losses": losses, "trainable_params": n_trainable,
                "total_params": n_total, "per_rank": per_rank, **extra_measured}
    total_tokens = setup.examples * (setup.tokens_per_example + setup.m.virtual_tokens(setup)) * setup.epochs
    estimated_tps = est.time.tokens_per_second
    if est.time.seconds and estimated_tps:  # the estimate's run (its padding or packing) at the measured pace
        seconds = est.time.seconds * estimated_tps / tps
        assumption = ("the estimated whole run (its padding or packing, steps and optimizer) scaled by the measured "
                      "over the estimated tokens/s at this trial's shape")
    else:
        seconds = total_tokens / tps
        assumption = "whole run at the measured tokens/s of this device (padded batches of seq_len)"
    price = plan.hardware.get("price_per_hour")
    if price is None and gpu is not None and device != "cpu":
        price = gpu.price_per_hour_usd
    extrapolated = {"tokens": int(total_tokens), "seconds": seconds,
                    "cost_usd": None if price is None else round(seconds / 3600 * price, 4), "assumption": assumption}
    if gpu is not None and world == 1:  # several ranks add communication: not a device's own efficiency
        calibrate(run_id, setup, gpu, est, slowest, measured if device != "cpu" else None)
    ej = est.to_json()
    ratios = {"peak_allocated": peak_alloc / ej["memory"]["peak_allocated"] if peak_alloc else None}
    if ej["throughput"]["tokens_per_second"]:
        ratios["tokens_per_second"] = tps / ej["throughput"]["tokens_per_second"]
    artifact = None
    if get(plan.method).artifact == "adapter":  # a whole model is gigabytes: the exported project trains and saves it
        state = runtime.full_state_dict(model) if world > 1 else None  # every rank takes part in gathering it
        if rank == 0:
            artifact = runtime.save_artifact(getattr(model, "module", model), run_dir / "adapter", recipe,
                                             state_dict=state)
    if rank != 0:
        return {"rank": rank}
    project = write_project(plan, run_dir / "project")
    if before is not None:  # test hook: which parameters moved, and outputs to compare a reloaded adapter with
        changed = {n: not torch.equal(before[n].to(p.device), p.detach()) for n, p in model.named_parameters()}
        (run_dir / "changed.json").write_text(json.dumps(changed))
        model.eval()
        probe = torch.tensor([encoded[0]["input_ids"][:16]], device=device)
        with torch.no_grad():
            torch.save({"input_ids": probe.cpu(), "logits": model(input_ids=probe).logits.float().cpu()},
                       run_dir / "probe.pt")
    notes = [source.description]
    if source.random_weights:
        notes.append("random weights: memory and speed are meaningful, the loss is not")
    return {"measured": measured, "extrapolated": extrapolated, "ratios": ratios, "estimate": ej,
            "device": device_name, "artifact": str(artifact) if artifact else None, "project": str(project),
            "script": str(project / "train.py"), "settings": dict(s), "adaptations": adaptations,
            "plan": trial_plan.to_json(), "data": report.to_dict(), "notes": notes,
            "trainable_params": n_trainable, "total_params": n_total}


def calibrate(run_id: str, setup: TrainSetup, gpu, est, step_seconds: float, cuda_measured: dict | None) -> None:
    """Records what this device achieved so later estimates on it use it (estimators.calibration).

    The stored efficiency is the base efficiency that makes the step-time model (estimators/steptime.py)
    reproduce this trial's measured step: one micro-batch padded to ``seq_len`` and its optimizer step,
    so passed back to ``estimate`` it predicts other batches, lengths and methods on this device."""
    import dataclasses

    from estimators.steptime import efficiency_for
    from estimators.throughput import flops_per_token

    one = dataclasses.replace(setup, grad_accum=1)  # a trial step: one micro-batch, then the optimizer

    def per_token(length):
        return flops_per_token(est.spec, one, est.teacher, length)

    efficiency = efficiency_for(est.spec, one, gpu, one.tokens_per_sequence, per_token, step_seconds)
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
        result.update(execute(run_id, run_dir, request, emit))
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
