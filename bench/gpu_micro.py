"""GPU micro-benchmarks behind the step-time model's constants (estimators/steptime.py), measured on the
GPU you run it on, so each constant's range has a measurement beside its citation:

- dense bf16 matmul rate at the shapes a tuning step runs (a big square product for the ceiling, the 8B's
  projections at 512 to 8,192 tokens, and the thin LoRA products at rank 16), as a fraction of that ceiling;
- elementwise bandwidth of a bf16 ``add_`` (read two tensors, write one) on activation-sized tensors,
  *hot* (the same tensors again and again: they stay in L2 when they fit) and *cold* (cycling through
  enough distinct tensors that none is still in L2), so the hot/cold ratio is the L2 gain at that size;
- the launch floor: back-to-back kernels on one-element tensors, per kernel, eager and from a CUDA graph.

    python bench/gpu_micro.py                  # on a CUDA machine; prints a table, --out FILE writes JSON
    python bench/gpu_micro.py --device cpu --quick   # the same code on the CPU, small sizes (a smoke run)

Each figure is the median of timed repeats after warm-ups; on a GPU the repeats are replays of a CUDA graph
timed with CUDA events, so dispatch does not hide a short kernel's own time. Budget: well under a minute.
"""
import argparse
import json
import statistics
import sys
import time

import torch


def timer(device: str, graphs: bool = True):
    """Seconds per call of ``fn``. On CUDA the ``reps`` calls are captured once in a CUDA graph and the
    replay is timed with events, so a short kernel's time is the GPU's, not eager PyTorch's dispatch
    (``graphs=False`` times eager calls: the dispatch floor)."""
    if device == "cuda":
        def run(fn, reps: int) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            if graphs:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    fn()
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    for _ in range(reps):
                        fn()
                graph.replay()
                start.record()
                graph.replay()
            else:
                start.record()
                for _ in range(reps):
                    fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3 / reps
    else:
        def run(fn, reps: int) -> float:
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - t0) / reps
    return run


def median_seconds(run, fn, reps: int, repeats: int = 5, warm: int = 3) -> float:
    for _ in range(warm):
        fn()
    return statistics.median(run(fn, reps) for _ in range(repeats))


def gemm_rates(device: str, dtype, shapes, run) -> list[dict]:
    out = []
    for m, k, n, what in shapes:
        a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
        reps = max(3, min(200, int(2e12 / (2 * m * k * n))))
        s = median_seconds(run, lambda a=a, b=b: a @ b, reps)
        out.append({"m": m, "k": k, "n": n, "what": what, "seconds": s, "tflops": 2 * m * k * n / s / 1e12})
    return out


def elementwise(device: str, dtype, numels, run, cold_bytes: int) -> list[dict]:
    out = []
    for numel, what in numels:
        nbytes = numel * torch.finfo(dtype).bits // 8
        moved = 3 * nbytes  # x.add_(y): read x, read y, write x
        hot = [torch.randn(numel, device=device, dtype=dtype) for _ in range(2)]
        reps = max(5, min(500, int(2e10 / moved)))
        s_hot = median_seconds(run, lambda x=hot[0], y=hot[1]: x.add_(y), reps)
        pairs = max(2, -(-cold_bytes // (2 * nbytes)))
        cold = [(torch.randn(numel, device=device, dtype=dtype), torch.randn(numel, device=device, dtype=dtype))
                for _ in range(pairs)]
        order = iter(range(1 << 62))

        def step(cold=cold, order=order, pairs=pairs):
            x, y = cold[next(order) % pairs]
            x.add_(y)
        s_cold = median_seconds(run, step, max(pairs, reps))
        out.append({"numel": numel, "what": what, "tensor_mb": nbytes / 1e6, "hot_gbs": moved / s_hot / 1e9,
                    "cold_gbs": moved / s_cold / 1e9, "hot_over_cold": s_cold / s_hot, "cold_pairs": pairs})
        del hot, cold, step
    return out


def launch_floor(device: str, dtype) -> dict:
    """Back-to-back one-element kernels: eagerly (what PyTorch's dispatch allows) and replayed from a CUDA
    graph (the GPU's own cost per kernel)."""
    x, y = torch.zeros(1, device=device, dtype=dtype), torch.zeros(1, device=device, dtype=dtype)
    eager = median_seconds(timer(device, graphs=False), lambda: x.add_(y), 2000)
    graph = median_seconds(timer(device), lambda: x.add_(y), 2000) if device == "cuda" else None
    return {"eager_us": eager * 1e6, "graph_us": None if graph is None else graph * 1e6}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run on any machine)")
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --device cpu --quick for a smoke run", file=sys.stderr)
        return 2
    device, dtype, run = args.device, torch.bfloat16 if args.device == "cuda" else torch.float32, timer(args.device)
    h, ffn, r = (4096, 14336, 16) if not args.quick else (256, 512, 8)
    tokens = (512, 840, 2048, 4096, 8192) if not args.quick else (64, 128)
    big = 8192 if not args.quick else 512
    shapes = [(big, big, big, "ceiling")]
    for t in tokens:
        shapes += [(t, h, h, "q_proj"), (t, h, ffn, "mlp_up"), (t, ffn, h, "mlp_down"), (t, h, r, "lora_A"),
                   (t, r, h, "lora_B"), (h, t, h, "weight_grad q_proj")]
    numels = [(t * h, f"{t} tokens x {h}") for t in tokens] + [(t * ffn, f"{t} tokens x {ffn}") for t in tokens[:3]]
    cold = (1 << 30) if not args.quick else (64 << 20)
    gemms = gemm_rates(device, dtype, shapes, run)
    ceiling = gemms[0]["tflops"]
    for g in gemms:
        g["of_ceiling"] = g["tflops"] / ceiling
    res = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "dtype": str(dtype),
           "torch": torch.__version__, "l2_bytes": getattr(torch.cuda.get_device_properties(0), "L2_cache_size", None)
           if device == "cuda" else None, "gemm": gemms,
           "elementwise": elementwise(device, dtype, numels, run, cold), "launch": launch_floor(device, dtype)}
    print(f"{res['device']} ({res['dtype']}, torch {res['torch']}, L2 {res['l2_bytes']})")
    print(f"{'matmul':<20} {'m':>6} {'k':>6} {'n':>6} {'TFLOP/s':>9} {'of ceiling':>10}")
    for g in gemms:
        print(f"{g['what']:<20} {g['m']:>6} {g['k']:>6} {g['n']:>6} {g['tflops']:>9.1f} {g['of_ceiling']:>10.3f}")
    print(f"{'add_ (bf16)':<22} {'MB':>7} {'hot GB/s':>9} {'cold GB/s':>9} {'hot/cold':>8}")
    for e in res["elementwise"]:
        print(f"{e['what']:<22} {e['tensor_mb']:>7.1f} {e['hot_gbs']:>9.0f} {e['cold_gbs']:>9.0f} {e['hot_over_cold']:>8.2f}")
    g = res["launch"]["graph_us"]
    print(f"launch floor, one-element add_: {res['launch']['eager_us']:.2f} µs per kernel eager"
          + ("" if g is None else f", {g:.2f} µs replayed from a CUDA graph"))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
