"""Does a trial's time estimate hold on this machine? Runs the app's default trial (the 8B catalog model
scaled down, its plan's bf16, the app's batch 4 x 384 unless given) for LoRA, QLoRA and full tuning through the CLI,
each on a fresh run store (no calibration carried in), and prints measured / estimated tokens/s with the
adaptations the trial listed (issue 21: goal 0.7-1.4x). CPU timings on a shared machine are noisy: the
load average is printed beside them.

    python bench/trial_time_check.py [--steps 8] [--model llama-3.1-8b] [--data FILE] [--batch-size 4] [--seq-len 384]

Prints, per method, the estimated and measured step at the trial's own shape (the estimate's tokens/s is
rows x seq_len over its step there), the CPU threads the trial ran on, and the 1-minute load average.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sample_data(path: Path) -> Path:
    rows = [{"input": f"Question {i}: " + "explain the idea briefly " * (2 + i % 9),
             "output": "Answer: " + "a short sentence about it " * (6 + i % 23)} for i in range(96)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--data")
    ap.add_argument("--methods", default="lora,qlora,full")
    ap.add_argument("--batch-size", default="4")
    ap.add_argument("--seq-len", default="384")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="trial-time-"))
    data = Path(args.data) if args.data else sample_data(root / "train.jsonl")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'method':8} {'estimated':>10} {'measured':>10} {'ratio':>7} {'est step':>9} {'meas step':>9} {'load':>5}  "
          "adaptations")
    for method in args.methods.split(","):
        env = {**os.environ, "TUNING_ADVISOR_HOME": str(root / f"home-{method}")}
        cmd = [sys.executable, "-m", "advisor", "trial", "--model", args.model, "--method", method, "--data", str(data),
               "--scale-down", "--steps", str(args.steps), "--batch-size", args.batch_size, "--seq-len", args.seq_len, "--json"]
        load = os.getloadavg()[0]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        if r.returncode:
            print(f"{method:8} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            continue
        res = json.loads(r.stdout)
        est = res["estimate"]["throughput"]["tokens_per_second"]
        got = res["measured"]["tokens_per_second"]
        notes = "; ".join(a.split(":")[0] for a in res.get("adaptations", []) if not a.startswith("settings."))
        tokens = res["measured"]["tokens_per_second"] * res["measured"]["step_seconds"]
        print(f"{method:8} {est:10.0f} {got:10.0f} {got / est:6.2f}x {tokens / est:8.3f}s "
              f"{res['measured']['step_seconds']:8.3f}s {load:5.1f}  {notes}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
