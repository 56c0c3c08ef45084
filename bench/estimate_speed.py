"""How fast is an estimate? Prints the in-process time to estimate all six methods for one model
(goal: under 5 ms in total) and the CLI's cold start (a fresh `python -m advisor estimate`).

    python bench/estimate_speed.py [--model llama-3.1-8b] [--gpu a100-80gb] [--repeat 200]
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from estimators.catalog import gpu_by_id, model_by_id  # noqa: E402
from estimators.estimate import estimate  # noqa: E402
from estimators.methods import REGISTRY  # noqa: E402
from estimators.plan import Plan  # noqa: E402
from estimators.setup import METHODS, TrainSetup  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--teacher", default="llama-3.1-70b")
    ap.add_argument("--gpu", default="a100-80gb")
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--cold-runs", type=int, default=5)
    args = ap.parse_args()

    spec, teacher, gpu = model_by_id(args.model), model_by_id(args.teacher), gpu_by_id(args.gpu)
    setups = [TrainSetup(method=m, examples=5000, tokens_per_example=400) for m in METHODS]

    def all_methods():
        for s in setups:
            estimate(spec, s, gpu, teacher if REGISTRY[s.method].needs_teacher else None).to_json()

    plans = [Plan.create(args.model, m, {"teacher": args.teacher} if REGISTRY[m].needs_teacher else {},
                         {"gpu": args.gpu}, {"num_examples": 5000, "tokens_per_example": 400}) for m in METHODS]

    def all_plans():
        for p in plans:
            p.estimated()

    for name, work in (("estimate()", all_methods), ("Plan.estimated() (validation + estimate)", all_plans)):
        work()  # warm the catalog caches
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            work()
            times.append(time.perf_counter() - t0)
        print(f"in-process {name}: all {len(METHODS)} methods for {args.model} on {args.gpu}: "
              f"median {statistics.median(times) * 1e3:.3f} ms, p95 {sorted(times)[int(0.95 * len(times))] * 1e3:.3f} "
              f"ms (goal < 5 ms; {args.repeat} repeats; no I/O: calibration is passed in)")

    cmd = [sys.executable, "-m", "advisor", "estimate", "--model", args.model, "--method", "lora", "--gpu", args.gpu,
           "--json"]
    cold = []
    for _ in range(args.cold_runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        cold.append(time.perf_counter() - t0)
    print(f"CLI cold start (`python -m advisor estimate ... --json`): median {statistics.median(cold) * 1e3:.0f} ms, "
          f"min {min(cold) * 1e3:.0f} ms over {args.cold_runs} runs")


if __name__ == "__main__":
    main()
