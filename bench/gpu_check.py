"""GPU check: real trials at full size (random weights, built from catalog configs; nothing downloaded)
and exact checks (one step on fake tensors) of the same plans, estimated beside measured.

    python bench/gpu_check.py --list          # the case matrix (any machine)
    python bench/gpu_check.py                 # on a CUDA machine: run it, write bench/results/gpu-<device>-<date>.json
    python bench/gpu_check.py --only 1b-lora  # some cases (substring of the case id)

Cases: LoRA, QLoRA and full fine-tuning on Llama-3.1-8B at two shapes (b1 x 512, and b4 x 1024 with
checkpointing), then all seven methods on Llama-3.2-1B (b4 x 512). Each trial runs in a fresh data folder (no
calibration from an earlier case) through the CLI (`tuning-advisor trial --json`), so it measures what a
user's trial measures: peak allocated and reserved memory (torch.cuda.max_memory_*), device memory in use,
and tokens/s over the timed steps. The exact check (`estimate --dry-run`) runs beside the trials on the
CPU cores. Budget: about 8 minutes on one H100/H200; a case that would start after --budget-s is recorded
as skipped, so the file is always written.
"""
import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

METHODS = ("prompt_tuning", "lora", "qlora", "full", "adapters", "distillation", "dora")


def cases() -> list[dict]:
    out = []
    for method in ("lora", "qlora", "full"):  # the 8B first: the shapes a user's estimate most often rests on
        for batch, seq, ckpt in ((1, 512, False), (4, 1024, True)):
            case = {"id": f"8b-{method}-b{batch}x{seq}{'-ckpt' if ckpt else ''}", "model": "llama-3.1-8b",
                    "method": method, "batch": batch, "seq": seq, "ckpt": ckpt, "options": []}
            if method == "full":  # bf16 weights + grads + 8-bit AdamW states: fits an 80 GB card
                case["options"] = ["--optimizer", "adamw_8bit"]
            out.append(case)
    for method in METHODS:
        case = {"id": f"1b-{method}-b4x512", "model": "llama-3.2-1b", "method": method, "batch": 4, "seq": 512,
                "ckpt": False, "options": []}
        if method == "distillation":
            case["options"] = ["--teacher", "llama-3.2-3b"]
        out.append(case)
    return out


def setup_args(case: dict, folders: dict | None = None) -> list[str]:
    """CLI options of a case; with ``folders``, catalog ids replaced by the random-weight model folders."""
    name = (folders or {}).get
    options = [name(o, o) for o in case["options"]]
    args = ["--model", name(case["model"], case["model"]), "--method", case["method"], "--batch-size",
            str(case["batch"]), "--seq-len", str(case["seq"]), "--precision", "bf16"] + options
    return args + (["--gradient-checkpointing"] if case["ckpt"] else [])


def model_folder(model_id: str, work: Path) -> Path:
    """A model folder with random bf16 weights of a catalog model, built on the GPU and saved once, so the
    trials of one model load it (transformers' loading code, as a user's folder) instead of each building
    an fp32 copy on the CPU. No tokenizer files: the trial trains one on the data, as for any such folder."""
    import torch
    import transformers

    from estimators.catalog import model_configs
    from estimators.spec import clean_config
    from tuners.models import auto_class

    folder = work / model_id
    cfg = clean_config(model_configs()[model_id])
    for key in ("torch_dtype", "dtype"):
        cfg.pop(key, None)
    conf = transformers.AutoConfig.for_model(**cfg)
    with torch.device("cuda"):
        model = auto_class(cfg).from_config(conf, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


def cli(args: list[str], home: Path, timeout: float) -> tuple[dict | None, str]:
    env = {**os.environ, "TUNING_ADVISOR_HOME": str(home)}
    try:
        proc = subprocess.run([sys.executable, "-m", "advisor", *args, "--json"], capture_output=True, text=True,
                              env=env, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    try:
        return json.loads(proc.stdout), proc.stderr.strip().splitlines()[-1] if proc.returncode else ""
    except json.JSONDecodeError:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return None, lines[-1] if lines else f"exit {proc.returncode}"


def data_file(folder: Path) -> Path:
    """Long rows of varied words, so every micro-batch fills the sequence length."""
    path = folder / "train.jsonl"
    rows = [{"text": " ".join(f"w{(i * 31 + j * 17) % 4093}" for j in range(3000))} for i in range(64)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def row_from(case: dict, trial: dict | None, trial_error: str, dry: dict | None, dry_error: str) -> dict:
    """One result row: estimate beside measurement, ratios measured/estimated."""
    from estimators.memory import ALLOCATOR_SLACK

    row = {"id": case["id"], "model": case["model"], "method": case["method"], "batch": case["batch"],
           "seq": case["seq"], "ckpt": case["ckpt"], "options": case["options"]}
    if trial is None or trial.get("status") != "completed":
        row.update(status=(trial or {}).get("status", "failed"), error=(trial or {}).get("error") or trial_error)
    else:
        est, meas = trial["estimate"], trial["measured"]
        est_alloc = est["memory"]["peak_allocated"]
        row.update(status="completed", error=None, device=trial["device"],
                   est_peak_allocated=est_alloc, meas_peak_allocated=meas["peak_allocated"],
                   est_peak_reserved=int(est_alloc * (1 + ALLOCATOR_SLACK)), meas_peak_reserved=meas.get("peak_reserved"),
                   est_total=est["memory"]["total"], meas_device=meas.get("peak_device"),
                   est_tokens_per_second=est["throughput"]["tokens_per_second"],
                   meas_tokens_per_second=meas["tokens_per_second"], step_seconds=meas["step_seconds"],
                   est_setup=est.get("setup"))  # the trial's own setup, to recompute the step's terms offline
    if dry is not None and "dry_run" in dry:
        row.update(dry_peak_allocated=dry["dry_run"]["peak_allocated"], dry_seconds=dry["dry_run"].get("seconds"))
    else:
        row.update(dry_peak_allocated=None, dry_error=dry_error or None)
    return row


def ratio(a, b) -> str:
    return "—" if not a or not b else f"{a / b:.3f}"


def table(rows: list[dict]) -> str:
    """Measured/estimated per case (1.000 = exact); the exact check's peak against the measured peak."""
    head = (f"{'case':<28} {'status':<10} {'alloc m/e':>9} {'resv m/e':>9} {'dry/meas':>9} {'tok/s m/e':>9} "
            f"{'meas tok/s':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        tps = r.get("meas_tokens_per_second")
        lines.append(f"{r['id']:<28} {r['status']:<10} {ratio(r.get('meas_peak_allocated'), r.get('est_peak_allocated')):>9} "
                     f"{ratio(r.get('meas_peak_reserved'), r.get('est_peak_reserved')):>9} "
                     f"{ratio(r.get('dry_peak_allocated'), r.get('meas_peak_allocated')):>9} "
                     f"{ratio(tps, r.get('est_tokens_per_second')):>9} {f'{tps:,.0f}' if tps else '—':>10}")
        if r.get("error"):
            lines.append(f"    {r['error'][:110]}")
    return "\n".join(lines)


def result_path(device: str, date: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-") or "device"
    return ROOT / "bench" / "results" / f"gpu-{slug}-{date}.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="print the case matrix and exit (no GPU needed)")
    p.add_argument("--only", action="append", default=[], help="run the cases whose id contains this text")
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per trial (default 8; timed from step 3)")
    p.add_argument("--budget-s", type=float, default=450, help="start no trial after this many seconds (default 450)")
    p.add_argument("--out", help="write the results here (default bench/results/gpu-<device>-<date>.json), "
                                 "rewritten after every case so a cut-off run keeps what it measured")
    args = p.parse_args(argv)
    todo = [c for c in cases() if not args.only or any(o in c["id"] for o in args.only)]
    if args.list:
        print(f"{'case':<28} {'model':<14} {'method':<14} shape")
        for c in todo:
            print(f"{c['id']:<28} {c['model']:<14} {c['method']:<14} b{c['batch']} x {c['seq']}"
                  f"{' ckpt' if c['ckpt'] else ''} {' '.join(c['options'])}")
        print(f"{len(todo)} cases; trials and exact checks (the exact check skips methods it does not support)")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA device here; `--list` shows the matrix, and the check runs on a GPU machine", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name(0)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    data = data_file(work)
    t0, rows = time.monotonic(), []
    needed = sorted({c["model"] for c in todo} | {o for c in todo for o in c["options"] if "llama" in o})
    folders = {m: str(model_folder(m, work)) for m in needed}
    print(f"[{time.monotonic() - t0:5.0f} s] random-weight folders ready: {', '.join(needed)}", file=sys.stderr)
    from tuners.dryrun import SUPPORTED

    with ThreadPoolExecutor(max_workers=3) as pool:  # exact checks on the CPU beside the GPU trials
        dry = {c["id"]: pool.submit(cli, ["estimate", *setup_args(c), "--dry-run"], work / f"dry-{c['id']}", 600)
               for c in todo if c["method"] in SUPPORTED}
        for c in todo:
            if time.monotonic() - t0 > args.budget_s:
                rows.append({**row_from(c, None, "skipped: over the time budget", None, "skipped"), "status": "skipped"})
                continue
            print(f"[{time.monotonic() - t0:5.0f} s] {c['id']} …", file=sys.stderr, flush=True)
            trial, err = cli(["trial", *setup_args(c, folders), "--data", str(data), "--steps", str(args.steps), "--timeout", "150"],
                             work / f"home-{c['id']}", 180)
            d, derr = dry[c["id"]].result() if c["id"] in dry else (None, "the exact check does not cover this method")
            rows.append(row_from(c, trial, err, d, derr))
            if args.out:
                write(Path(args.out), device, args.steps, t0, rows)
    path = Path(args.out) if args.out else result_path(device, dt.date.today().isoformat())
    write(path, device, args.steps, t0, rows)
    print(table(rows))
    print(f"wrote {path} ({time.monotonic() - t0:.0f} s)")
    return 0


def write(path: Path, device: str, steps: int, t0: float, rows: list[dict]) -> None:
    import torch

    versions = {"torch": torch.__version__, "cuda": torch.version.cuda}
    for name in ("transformers", "peft", "bitsandbytes"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 — a missing library is recorded as absent
            versions[name] = None
    out = {"device": device, "date": dt.date.today().isoformat(), "versions": versions, "steps": steps,
           "seconds": round(time.monotonic() - t0, 1), "rows": rows}
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
