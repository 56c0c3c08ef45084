"""What a CPU training step of a tiny model is made of: times forward, backward and the optimizer step
of the calibrated-repeat model (bench/time_accuracy.py ``tiny_model``) for several methods and
batch × length shapes, with the trial's own loading, method and optimizer code (tuners.runtime), and
prints the medians beside the step-time model's FLOPs. Evidence for the CPU terms of
estimators/steptime.py; not used by the estimator.

    python bench/cpu_step_sweep.py [--steps 8] [--methods full,lora,adapters] [--shapes 1x32,2x64,...]
    python bench/cpu_step_sweep.py --fit bench/results/cpu-step-sweep-2026-11-23.txt

``--fit`` reads saved sweep tables and fits the CPU terms of the step-time model by least squares in
relative error: forward + backward = layers × dispatch per layer + inserted modules × dispatch per
module + their elementwise bytes × passes / bandwidth + FLOPs / (peak × efficiency); the optimizer
column minus its modelled bytes / bandwidth and first-touch pages = trainable tensors × seconds per tensor.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(model_dir: Path, method: str, seq_len: int):
    from estimators.plan import Plan
    from estimators.spec import spec_from_config
    from tuners import methods, runtime

    plan = Plan.create(str(model_dir), method, {"precision": "fp32", "batch_size": 1, "seq_len": seq_len})
    config = json.loads((model_dir / "config.json").read_text())
    spec = spec_from_config(config, model_id=str(model_dir))
    recipe = methods.recipe(plan, spec)
    built = runtime.build({**plan.to_json(), "recipe": recipe}, model_dir, "cpu")  # the trial's one builder
    return built.model, built.optimizer, plan, spec


def batches(model_dir: Path, data: Path, workdir: Path, batch: int, length: int, steps: int) -> list[dict]:
    """The trial's batches (tuners.trial.execute): its tokenizer, padding to ``seq_len`` and the
    attention mask dropped only when nothing is padded."""
    from tuners import data as data_mod
    from tuners import models

    examples, _, _, _ = data_mod.load_examples(data)
    source = models.materialize(str(model_dir), workdir, False)
    tokenizer = models.tokenizer_for(source, [e.prompt + e.completion for e in examples], workdir)
    encoded = data_mod.encode(examples, tokenizer, length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    for b in data_mod.batches(encoded, batch, length, pad, steps):
        if int(b["attention_mask"].min()) == 1:
            del b["attention_mask"]
        out.append(b)
    return out


def time_shape(model, optimizer, data: list[dict], steps: int) -> dict:
    phases = {"forward": [], "backward": [], "optimizer": [], "step": []}
    for i, batch in enumerate(data[:steps + 2]):
        t0 = time.perf_counter()
        loss = model(**batch).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if i >= 2:  # two warm-ups
            for k, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                phases[k].append(v)
    out = {k: statistics.median(v) for k, v in phases.items()}
    q = statistics.quantiles(phases["step"], n=4)
    out["scatter"] = q[2] / q[0]
    return out


def fit(files: list[str], hidden: int = 256, layers: int = 4) -> dict:
    import numpy as np

    from bench.time_accuracy import tiny_model
    from estimators.plan import Plan
    from estimators.spec import spec_from_config
    from estimators.steptime import _optimizer_bytes_per_param, constants, module_features, trainable_tensors
    from estimators.methods import trainable_params
    from estimators.throughput import flops_per_token

    model_dir, _ = tiny_model(Path(tempfile.mkdtemp(prefix="cpu-fit-")), hidden=hidden, layers=layers)
    spec = spec_from_config(json.loads((model_dir / "config.json").read_text()), model_id=str(model_dir))
    rows_fb, y_fb, rows_opt, y_opt = [], [], [], []
    for name in files:
        peak = bw = None
        for line in Path(name).read_text().splitlines():
            if "matmul peak" in line:
                peak = float(line.split("peak ")[1].split()[0]) * 1e9
                bw = float(line.split("copy ")[1].split()[0]) * 1e9
                continue
            f = line.split()
            if not f or f[0] not in ("full", "lora", "adapters") or len(f) > 11:
                continue  # the malloc A/B lines (tagged) measure the first-touch term, not these
            b, length = int(f[1]), int(f[2])
            setup = Plan.create(str(model_dir), f[0], {"precision": "fp32", "batch_size": b,
                                                        "seq_len": length}).setup("cpu")
            tokens = b * length
            rows_fb.append([spec.layers, setup.m.added_modules(spec, setup),
                            tokens * module_features(spec, setup) * 4 / bw,
                            tokens * flops_per_token(spec, setup, None, length) / peak])
            y_fb.append((float(f[4]) + float(f[5])) / 1e3)
            n = trainable_params(spec, setup)
            opt_bytes = n * _optimizer_bytes_per_param(setup) / bw + n * 4 * constants()["cpu_first_touch_seconds_per_byte"]
            rows_opt.append([trainable_tensors(spec, setup)])
            y_opt.append(float(f[6]) / 1e3 - opt_bytes)
    x, y = np.array(rows_fb), np.array(y_fb)
    coef = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)[0]
    err = x @ coef / y - 1
    xo, yo = np.array(rows_opt), np.array(y_opt)
    per_tensor = float(np.linalg.lstsq(xo, yo, rcond=None)[0][0])
    return {"cpu_dispatch_seconds_per_layer": float(coef[0]), "cpu_dispatch_seconds_per_module": float(coef[1]),
            "cpu_module_passes": float(coef[2]), "efficiency": float(1 / coef[3]),
            "cpu_optimizer_seconds_per_tensor": per_tensor, "points": len(y),
            "forward_backward_error": {"rms": float(np.sqrt((err**2).mean())), "worst": float(abs(err).max())}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--methods", default="full,lora,adapters")
    ap.add_argument("--shapes", default="1x32,2x64,4x64,2x128,4x128,8x128")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--fit", nargs="+", metavar="FILE", help="fit the CPU terms on saved sweep tables")
    args = ap.parse_args()
    if args.fit:
        print(json.dumps(fit(args.fit, args.hidden, args.layers), indent=2))
        return
    import dataclasses

    from bench.time_accuracy import tiny_model
    from estimators.throughput import flops_per_token
    from tuners.hardware import cpu_device

    root = Path(tempfile.mkdtemp(prefix="cpu-sweep-"))
    model_dir, data_file = tiny_model(root, hidden=args.hidden, layers=args.layers)
    gpu = cpu_device()
    peak = gpu.peak_flops("fp32")
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    print(f"# {gpu.name}; fp32 matmul peak {peak / 1e9:.0f} GFLOP/s, copy {gpu.bandwidth_gbs:.1f} GB/s")
    print(f"{'method':9} {'B':>2} {'L':>4} {'tokens':>6} {'fwd ms':>7} {'bwd ms':>7} {'opt ms':>7} {'step ms':>8} "
          f"{'GFLOP':>7} {'eff':>6} {'scatter':>7}")
    for method in args.methods.split(","):
        model, optimizer, plan, spec = build(model_dir, method, max(s[1] for s in shapes))
        for b, length in shapes:
            setup = dataclasses.replace(plan.edit(settings={"batch_size": b, "seq_len": length}).setup("cpu"))
            flops = b * length * flops_per_token(spec, setup, None, length)
            data = batches(model_dir, data_file, root / f"{b}x{length}", b, length, args.steps + 2)
            r = time_shape(model, optimizer, data, args.steps)
            print(f"{method:9} {b:2d} {length:4d} {b * length:6d} {r['forward'] * 1e3:7.2f} {r['backward'] * 1e3:7.2f} "
                  f"{r['optimizer'] * 1e3:7.2f} {r['step'] * 1e3:8.2f} {flops / 1e9:7.3f} "
                  f"{flops / r['step'] / peak:6.3f} {r['scatter']:7.2f}", flush=True)


if __name__ == "__main__":
    main()
