"""How long a 3-step trial of a tiny model takes to start and finish on a 1,000-row and a
1,000,000-row data file (the runner reads a bounded sample, tuners/data.py ``load_sample``): the
wall time of ``tuning-advisor trial`` end to end, and the runner's own time to its first step.

    python bench/trial_big_data.py [--rows 1000000] [--repeat 3] [--out bench/results/trial-big-data-<date>.txt]

Prints figures (each trial with the 1-minute load average before it, as ``uptime`` shows it, and the
median of the repeats); asserts nothing (a benchmark, not a test). CPU timings move with the load.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
            vocab_size=512, max_position_embeddings=512, tie_word_embeddings=False)


def write_data(path: Path, rows: int) -> None:
    colours = ["red", "green", "blue", "gold"]
    with open(path, "w") as f:
        for i in range(rows):  # ~40 bytes a row: 1,000,000 rows ≈ 40 MB
            f.write(json.dumps({"input": f"Q{i}?", "output": colours[i % 4]}) + "\n")


def trial(model: Path, data: Path, home: Path) -> tuple[float, float | None, dict]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "advisor", "trial", "--model", str(model), "--method", "lora",
                        "--data", str(data), "--steps", "3", "--batch-size", "2", "--seq-len", "32",
                        "--precision", "fp32", "--json", "--timeout", "600"], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "TUNING_ADVISOR_HOME": str(home)})
    wall = time.perf_counter() - t0
    res = json.loads(r.stdout) if r.stdout.strip() else {"status": "no output", "error": r.stderr[-300:]}
    first = None
    run_dir = Path(res.get("project") or "").parent if res.get("project") else None
    if run_dir and (run_dir / "events.jsonl").exists():
        events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
        start = next(e["time"] for e in events if e["event"] == "started")
        first = next(e["time"] for e in events if e["event"] == "step") - start
    return wall, first, res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1, help="trials per file (alternating files); the median is shown")
    ap.add_argument("--out", help="also write the figures to this file")
    args = ap.parse_args()
    import torch
    import transformers

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY)).save_pretrained(tmp / "model")
        files = {}
        for rows in (1000, args.rows):
            files[rows] = tmp / f"data-{rows}.jsonl"
            write_data(files[rows], rows)
        walls = {rows: [] for rows in files}
        for attempt in range(args.repeat):
            for rows, data in files.items():
                load = os.getloadavg()[0]
                wall, first, res = trial(tmp / "model", data, tmp / f"home-{rows}-{attempt}")
                walls[rows].append(wall)
                report = res.get("data") or {}
                lines.append(f"{rows:>9,} rows ({data.stat().st_size / 1e6:6.1f} MB): {res['status']}, wall {wall:5.1f} s "
                             f"(CLI start to result), runner start to first step "
                             f"{first if first is None else round(first, 1)} s; rows read {report.get('rows_read')} of "
                             f"{report.get('rows')}; load average before {load:.2f}"
                             + (f"; error: {res.get('error')}" if res.get("error") else ""))
                print(lines[-1], flush=True)
        for rows, ws in walls.items():
            lines.append(f"{rows:>9,} rows: median wall {statistics.median(ws):5.1f} s of {len(ws)}")
            print(lines[-1], flush=True)
    header = (f"# bench/trial_big_data.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPU "
              f"cores, torch {torch.__version__}; tiny Llama (2 layers, hidden 64), lora, 3 steps, batch 2 x 32 tokens, "
              "fp32; the machine was shared with other jobs (timings are noisy)")
    if args.out:
        Path(args.out).write_text(header + "\n" + "\n".join(lines) + "\n")
    print(header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
