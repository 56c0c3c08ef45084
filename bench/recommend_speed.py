"""Time one full recommendation (rules + feasibility search over every method), in process.
Goal: under 50 ms.

    python bench/recommend_speed.py [--repeat 50]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from advisor.answers import Answers  # noqa: E402
from advisor.recommend import recommend  # noqa: E402

CASES = {
    "8B chat on one RTX 4090": {"task": "chat", "goals": ["style"], "num_examples": 2000, "domain_distance": "moderate",
                                "model": "llama-3.1-8b", "gpu": "rtx-4090"},
    "70B on one RTX 4090 (nothing fits: hints searched)": {"task": "chat", "goals": ["style"], "num_examples": 2000,
                                                           "domain_distance": "moderate", "model": "llama-3.1-70b",
                                                           "gpu": "rtx-4090"},
    "8B far domain on 8x H100 with budget": {"task": "generation", "goals": ["domain_knowledge"],
                                             "num_examples": 2_000_000, "domain_distance": "far",
                                             "model": "llama-3.1-8b", "gpu": "h100-sxm", "num_gpus": 8,
                                             "max_cost_usd": 300},
    "8B, 1B tokens, 1-hour budget on one A100 (every method over: budget search)": {
        "task": "generation", "goals": ["domain_knowledge"], "num_examples": 2_000_000, "avg_tokens_per_example": 512,
        "domain_distance": "far", "model": "llama-3.1-8b", "gpu": "a100-80gb", "max_hours": 1},
    "8B, 300M tokens, $20 on 8x A100 (budget search)": {
        "task": "generation", "goals": ["specialization"], "num_examples": 1_000_000, "domain_distance": "moderate",
        "model": "llama-3.1-8b", "gpu": "a100-80gb", "num_gpus": 8, "max_cost_usd": 20},
    "405B, 1-hour and $500 budget on 8x H100": {
        "task": "chat", "goals": ["style"], "num_examples": 50_000, "domain_distance": "moderate",
        "model": "llama-3.1-405b", "gpu": "h100-sxm", "num_gpus": 8, "max_hours": 1, "max_cost_usd": 500},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    for name, data in CASES.items():
        answers = Answers.from_dict(data)
        recommend(answers)  # warm catalog caches
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            recommend(answers).to_json()
            times.append(time.perf_counter() - t0)
        print(f"{name}: median {statistics.median(times) * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms "
              f"(goal < 50 ms; {args.repeat} repeats)")


if __name__ == "__main__":
    main()
