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
import dataclasses
import json
import math
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

from estimators.catalog import gpus
from estimators.errors import InputError
from estimators.estimate import estimate
from estimators.setup import TrainSetup
from estimators.spec import spec_from_config
from tuners import store

DEFAULT_LR = {"full": 1e-4, "distillation": 1e-4, "lora": 2e-4, "qlora": 2e-4, "adapters": 1e-3, "prompt_tuning": 3e-2}
SETUP_KEYS = ("method", "batch_size", "seq_len", "precision", "mixed_precision", "optimizer", "gradient_checkpointing",
              "attention", "lora_rank", "lora_targets", "quant_bits", "double_quant", "num_virtual_tokens",
              "adapter_size", "teacher_quant_bits", "grad_accum", "examples", "tokens_per_example", "epochs")
# torch.cuda.get_device_name() fragments -> GPU catalog ids, to estimate time on the device we run on.
_DEVICE_NAMES = (("H200", "h200"), ("H100 PCIe", "h100-pcie"), ("H100", "h100-sxm"), ("A100-SXM4-40GB", "a100-40gb"),
                 ("A100", "a100-80gb"), ("L40S", "l40s"), ("L4", "l4"), ("A10G", "a10g"), ("T4", "t4"),
                 ("V100", "v100-32gb"), ("4090", "rtx-4090"), ("3090", "rtx-3090"), ("A6000", "a6000"), ("B200", "b200"))


class Cancelled(Exception):
    pass


class OutOfMemory(Exception):
    pass


class Events:
    def __init__(self, run_dir: Path):
        self.path = run_dir / "events.jsonl"

    def __call__(self, event: str, **data) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"event": event, "time": time.time(), **data}) + "\n")


def _rss_bytes() -> int:
    from tuners.hardware import proc_bytes

    return proc_bytes("/proc/self/status", "VmRSS:") or 0


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def catalog_gpu_for(device_name: str):
    for fragment, gpu_id in _DEVICE_NAMES:
        if fragment.lower() in device_name.lower():
            return gpus()[gpu_id]
    return None


def build_setup(request: dict, device: str) -> TrainSetup:
    kwargs = {k: request[k] for k in SETUP_KEYS if request.get(k) is not None}
    return TrainSetup(device=device, **kwargs)


def make_optimizer(name: str, params, lr: float, foreach: bool | None = None):
    """``foreach=None`` lets torch choose (foreach on CUDA, per tensor on CPU); True forces CUDA's choice."""
    import torch

    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, foreach=foreach)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, foreach=foreach)
    if name == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=lr)
    from transformers.optimization import Adafactor

    return Adafactor(params, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)


def execute(run_id: str, run_dir: Path, request: dict, emit: Events) -> dict:
    import torch

    from tuners import data as data_mod
    from tuners import models
    from tuners.export import write_script
    from tuners.measure import train_step
    from tuners.memtrack import LiveTensorTracker
    from tuners.methods import METHODS

    started = time.time()
    timeout = request.get("timeout")
    steps = int(request.get("steps") or 20)
    if steps < 3:
        raise InputError("a trial needs at least 3 steps (one warm-up, one measured, one timed): raise --steps")
    device = "cuda" if torch.cuda.is_available() and not request.get("cpu") else "cpu"
    setup = build_setup(request, device)
    method = METHODS[setup.method]
    options = dict(request.get("options") or {})
    device_name = f"cuda:0 {torch.cuda.get_device_name(0)}" if device == "cuda" else "cpu"
    store.update(run_id, device=device_name)
    baseline_rss = _rss_bytes()

    # --- data, tokenizer, model ---------------------------------------------------------------
    examples, fmt, _, _ = data_mod.load_examples(request["data"])
    source = models.materialize(request["model"], run_dir, bool(request.get("scale_down")))
    tokenizer = models.tokenizer_for(source, [e.prompt + e.completion for e in examples], run_dir)
    report, examples = data_mod.validate(request["data"], tokenizer, setup.seq_len)
    emit("data", report=report.to_dict(), model=source.description)
    if not (setup.examples and setup.tokens_per_example):  # whole-run figures for the file itself
        mean = sum(min(n, setup.seq_len) for n in report.token_lengths) / len(report.token_lengths)
        setup = dataclasses.replace(setup, examples=len(examples), tokens_per_example=max(1, round(mean)))
    spec = spec_from_config(source.config, model_id=request["model"])
    teacher_source = teacher_spec = teacher = None
    if setup.method == "distillation":
        if not request.get("teacher"):
            raise InputError("distillation needs a teacher: give --teacher M (a larger model with the same tokenizer)")
        teacher_source = models.materialize(request["teacher"], run_dir / "teacher", bool(request.get("scale_down")), seed=1)
        teacher_spec = spec_from_config(teacher_source.config, model_id=request["teacher"])
        if teacher_spec.vocab != spec.vocab:
            raise InputError(f"teacher vocab {teacher_spec.vocab} differs from student vocab {spec.vocab}: "
                             "distillation needs a shared tokenizer (C6.7)")

    if device == "cuda":
        gpu = catalog_gpu_for(device_name)
    else:
        from tuners.hardware import cpu_device

        gpu = cpu_device()  # measured matmul peak, so CPU trials get a throughput estimate too
    if request.get("gpu") and device == "cuda":
        gpu = gpus().get(request["gpu"], gpu)
    est = estimate(spec, setup, gpu, teacher_spec, price_per_hour=request.get("price_per_hour"))
    (run_dir / "estimate.json").write_text(json.dumps(est.to_json(), indent=2))
    store.update(run_id, estimate=est.to_json())

    load_dtype = "fp32" if setup.mixed_precision else setup.precision
    extra = method.load_kwargs(setup)
    if extra.get("quantization_config") is not None and device == "cuda":
        extra["device_map"] = {"": 0}
    model = models.load(source, load_dtype, setup.attention, extra.get("quantization_config"),
                        trust_remote_code=bool(request.get("trust_remote_code")))
    if device == "cuda" and "device_map" not in extra:
        model.to("cuda")
    options.setdefault("tokenizer_path", str(run_dir / "tokenizer") if (run_dir / "tokenizer").exists()
                       else str(source.folder))
    model = method.prepare(model, setup, options)
    if setup.gradient_checkpointing and setup.method != "qlora":
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        if setup.frozen_base:
            model.enable_input_require_grads()
    model.train()
    state = {"setup": setup, "options": options}
    if teacher_source is not None:
        teacher = models.load(teacher_source, load_dtype, setup.attention).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        state["teacher"] = teacher
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable, n_total = sum(p.numel() for p in trainable), sum(p.numel() for p in model.parameters())
    lr = float(options.get("lr") or DEFAULT_LR[setup.method])
    optimizer = make_optimizer(setup.optimizer, trainable, lr)
    before = {n: p.detach().clone() for n, p in model.named_parameters()} if request.get("record_changes") else None

    encoded = data_mod.encode(examples, tokenizer, setup.seq_len)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(setup.precision)

    def one_step(batch, tracker=None):
        return float(train_step(model, optimizer, batch, tracker.set_phase if tracker else (lambda name: None),
                                loss_fn=lambda m, b: method.loss(m, b, state),
                                autocast=(device, autocast_dtype) if setup.mixed_precision else None))

    # --- the loop ------------------------------------------------------------------------------
    emit("setup", trainable_params=n_trainable, total_params=n_total, device=device_name, lr=lr,
         random_weights=source.random_weights, scaled_down=source.scaled_down)
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
        tracker = None
        if step == 2 and device == "cpu":
            tracker = LiveTensorTracker()
            tracker.track(model, optimizer, batch, *([teacher] if teacher is not None else []))
        if step == 2 and device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            if tracker is not None:
                with tracker:
                    value = one_step(batch, tracker)
                peak_tracked, peak_phase = tracker.peak, tracker.peak_phase
            else:
                value = one_step(batch)
            if device == "cuda":
                torch.cuda.synchronize()
        except Exception as exc:
            if _is_oom(exc):
                raise OutOfMemory(f"out of memory at step {step} (batch {setup.batch_size} × {setup.seq_len} tokens): "
                                  "try --gradient-checkpointing, a smaller --batch-size or --seq-len, or qlora") from exc
            raise
        seconds = time.perf_counter() - t0
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} at step {step}: lower the learning rate or check the data")
        losses.append(value)
        if step >= 3:
            timed.append(seconds)
        memory = (torch.cuda.max_memory_allocated() if device == "cuda" else peak_tracked)
        emit("step", step=step, steps=steps, loss=value, seconds=seconds, tokens=tokens_per_step, memory=memory)

    # --- report --------------------------------------------------------------------------------
    step_seconds = sum(timed) / len(timed)
    if device == "cuda":
        free, total = torch.cuda.mem_get_info()
        peak_alloc, peak_device = torch.cuda.max_memory_allocated(), total - free
        extra_measured = {"peak_reserved": torch.cuda.max_memory_reserved()}
    else:
        peak_alloc = peak_tracked
        peak_device = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline_rss
        extra_measured = {"peak_phase": peak_phase, "peak_rss_above_baseline": peak_device}
    tps = tokens_per_step / step_seconds
    measured = {"peak_allocated": peak_alloc, "peak_device": peak_device, "step_seconds": step_seconds,
                "tokens_per_second": tps, "losses": losses, "trainable_params": n_trainable,
                "total_params": n_total, **extra_measured}
    per_example = setup.tokens_per_example + (setup.num_virtual_tokens if setup.method == "prompt_tuning" else 0)
    total_tokens = setup.examples * per_example * setup.epochs
    seconds = total_tokens / tps
    price = request.get("price_per_hour")
    if price is None and gpu is not None and device == "cuda":
        price = gpu.price_per_hour_usd
    extrapolated = {"tokens": int(total_tokens), "seconds": seconds,
                    "cost_usd": None if price is None else round(seconds / 3600 * price, 4),
                    "assumption": "whole run at the measured tokens/s of this device (padded batches of seq_len)"}
    if gpu is not None:
        calibrate(run_id, setup, gpu, est, tps, measured if device == "cuda" else None)
    ej = est.to_json()
    ratios = {"peak_allocated": peak_alloc / ej["memory"]["peak_allocated"] if peak_alloc else None}
    if ej["throughput"]["tokens_per_second"]:
        ratios["tokens_per_second"] = tps / ej["throughput"]["tokens_per_second"]
    artifact = method.save(model, run_dir / "adapter", state)
    script = write_script(run_dir / "train.py", request, setup, options)
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
            "device": device_name, "artifact": str(artifact) if artifact else None, "script": str(script),
            "data": report.to_dict(), "notes": notes, "trainable_params": n_trainable, "total_params": n_total}


def calibrate(run_id: str, setup: TrainSetup, gpu, est, tokens_per_second: float, cuda_measured: dict | None) -> None:
    """Records what this device achieved so later estimates on it use it (estimators.calibration).

    The stored efficiency is normalised like the GPU catalog's default: passed back to ``estimate``
    it reproduces the measured tokens/s for this method and precision."""
    from estimators.throughput import method_efficiency

    achieved = tokens_per_second * est.time.flops_per_token
    peak = setup.num_gpus * gpu.peak_flops(setup.precision)
    if not peak:
        return
    efficiency = achieved / (peak * method_efficiency(setup))
    overhead = slack = None
    if cuda_measured:
        overhead = cuda_measured["peak_device"] - cuda_measured["peak_reserved"]
        slack = (cuda_measured["peak_reserved"] - cuda_measured["peak_allocated"]) / cuda_measured["peak_allocated"]
    store.record_calibration(gpu.id, setup.method, setup.precision, efficiency, run_id, overhead, slack)


def run(run_id: str) -> int:
    row = store.get(run_id)
    if row is None:
        print(f"unknown run {run_id}", file=sys.stderr)
        return 2
    run_dir = Path(row["run_dir"])
    request = row["request"]
    emit = Events(run_dir)

    def on_term(signum, frame):
        raise Cancelled("cancelled by the user")

    signal.signal(signal.SIGTERM, on_term)
    store.update(run_id, status="running", pid=os.getpid())
    emit("started", run_id=run_id, pid=os.getpid())
    result = {"run_id": run_id, "status": "failed", "device": None, "estimate": None, "measured": None,
              "extrapolated": None, "error": None}
    try:
        result.update(execute(run_id, run_dir, request, emit))
        result["status"] = "completed"
    except Cancelled as exc:
        result.update(status="cancelled", error=str(exc), error_kind="cancelled")
    except (InputError, OutOfMemory, TimeoutError, FloatingPointError) as exc:
        result["error"] = str(exc)
        result["error_kind"] = {InputError: "input", OutOfMemory: "oom", TimeoutError: "timeout"}.get(type(exc), "loss")
    except Exception as exc:  # a crash: one line for the user, the traceback in the run folder
        (run_dir / "traceback.txt").write_text(traceback.format_exc())
        oom = False
        try:
            oom = _is_oom(exc)
        except Exception:
            pass
        result["error_kind"] = "oom" if oom else "crash"
        result["error"] = ("out of memory: " if oom else f"crashed ({type(exc).__name__}): ") + \
            str(exc).splitlines()[0][:300] + f" (details in {run_dir / 'traceback.txt'})"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if result["estimate"] is None and (run_dir / "estimate.json").exists():
        result["estimate"] = json.loads((run_dir / "estimate.json").read_text())  # OOM is recorded beside it
    if result["device"] is None:
        result["device"] = (store.get(run_id) or {}).get("device")
    (run_dir / "result.json").write_text(json.dumps(result, indent=2))
    store.update(run_id, status=result["status"], estimate=result["estimate"], measured=result["measured"],
                 extrapolated=result["extrapolated"], error=result["error"])
    emit({"completed": "finished"}.get(result["status"], result["status"]), status=result["status"],
         error=result["error"])
    return 0 if result["status"] == "completed" else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tuners.trial", description="Run one trial recorded in the store.")
    ap.add_argument("--run-id", required=True)
    args = ap.parse_args(argv)
    return run(args.run_id)


if __name__ == "__main__":
    sys.exit(main())
