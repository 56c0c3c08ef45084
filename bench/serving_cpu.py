"""One real serving measurement here: a small random Llama's ``generate()`` on this CPU — decode
tokens/s and the KV cache's bytes — against the serving model (estimators/serving.py).

    python bench/serving_cpu.py [--layers 8 --hidden 1024 --batch 1 4 --new 48 --repeats 3]

The CPU model is the serving model's decode step on a "device" described by this machine's own
figures, measured here first: the read bandwidth torch's matrix-vector product reaches over a 256 MB
weight and fp32 matmul FLOP/s, with η = 1 on that measured bandwidth, and per-layer host dispatch of an eager forward taken
as a third of the training step's fitted ``cpu_dispatch_seconds_per_layer`` (forward ≈ 1/3 of
forward + backward; estimators/data/time_model.json). The KV cache is compared byte for byte with
``kv_cache(spec, "fp32", layout="transformers")``. CPU timings on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from estimators.catalog import GPU  # noqa: E402
from estimators.kvcache import kv_cache  # noqa: E402
from estimators.serving import constants, served, step_seconds  # noqa: E402
from estimators.setup import TrainSetup  # noqa: E402
from estimators.spec import spec_from_config  # noqa: E402
from estimators.steptime import constants as time_constants  # noqa: E402


def machine() -> tuple[float, float]:
    """(read GB/s, fp32 matmul FLOP/s) of this CPU as decode meets them: torch's matrix-vector product
    over a 256 MB weight in nn.Linear's layout (what a decode step does per layer) and a 1024² matmul; medians of 5."""
    import torch

    w, v = torch.randn(16384, 4096), torch.randn(1, 4096)
    reads = []
    for _ in range(5):
        t = time.perf_counter()
        torch.nn.functional.linear(v, w)  # nn.Linear's layout: x · Wᵀ
        reads.append(w.numel() * 4 / (time.perf_counter() - t))
    x = torch.randn(1024, 1024)
    flops = []
    for _ in range(5):
        t = time.perf_counter()
        x @ x
        flops.append(2 * 1024**3 / (time.perf_counter() - t))
    return statistics.median(reads) / 1e9, statistics.median(flops)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared, loaded machine a second thread waits for the OS at every op)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = {"model_type": "llama", "hidden_size": args.hidden, "intermediate_size": args.hidden * 11 // 4,
           "num_hidden_layers": args.layers, "num_attention_heads": args.hidden // 64,
           "num_key_value_heads": args.hidden // 256, "vocab_size": 32000, "max_position_embeddings": 4096,
           "tie_word_embeddings": False}
    spec = spec_from_config(cfg, "bench-llama")
    model = LlamaForCausalLM(LlamaConfig(**cfg)).eval()
    assert sum(p.numel() for p in model.parameters()) == spec.total_params
    bw, flops = machine()
    print(f"model: {spec.total_params / 1e6:.1f}M parameters fp32 ({args.layers} layers, hidden {args.hidden}, "
          f"{cfg['num_key_value_heads']} KV heads); torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"this CPU: read {bw:.1f} GB/s, fp32 matmul {flops / 1e9:.0f} GFLOP/s")
    cpu = GPU(id="cpu", name="this CPU", memory_bytes=8 * 2**30, tflops={"bf16": flops / 1e12, "fp16": None,
                                                                         "fp32": flops / 1e12}, bandwidth_gbs=bw)
    c = constants()
    c.update(bandwidth_efficiency=1.0, decode_mfu=1.0, step_overhead_seconds=0.0,
             layer_overhead_seconds=time_constants()["cpu_dispatch_seconds_per_layer"] / 3)
    s = replace(served(spec, TrainSetup(method="lora"), 1), bytes_per_param=4.0)  # fp32 weights on the CPU
    kv = kv_cache(spec, "fp32", layout="transformers")
    print(f"\n{'batch':>5}{'measured tok/s':>16}{'estimated':>11}{'error':>8}{'KV bytes':>14}{'estimated':>14}")
    for b in args.batch:
        ids = torch.randint(0, 32000, (b, args.prompt))
        times = {}
        with torch.no_grad():
            model.generate(ids, max_new_tokens=2, do_sample=False)  # warm-up
            for n in (1, args.new + 1):
                runs = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                         min_new_tokens=n, do_sample=False,
                                         return_dict_in_generate=True, use_cache=True, pad_token_id=0)
                    runs.append(time.perf_counter() - t)
                times[n] = statistics.median(runs)
        per_token = (times[args.new + 1] - times[1]) / args.new  # decode steps only: prefill cancels out
        measured = b / per_token
        cache = out.past_key_values
        cached = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
        tokens = cache.get_seq_length()
        estimated_kv = b * kv.bytes_for(tokens)
        bw_now, _ = machine()  # the machine's speed drifts under shared load: re-measured per batch
        cpu = replace(cpu, bandwidth_gbs=bw_now)
        est = b / step_seconds(spec, s, cpu, 1, b, args.prompt + args.new / 2, kv)
        print(f"{b:>5}{measured:>16.2f}{est:>11.2f}{est / measured - 1:>8.1%}{cached:>14,}{estimated_kv:>14,}"
              f"  ({tokens} cached tokens per sequence; GEMV read {bw_now:.1f} GB/s)")


if __name__ == "__main__":
    main()
