"""Sharded and offloaded estimates against public multi-GPU measurements, memory and time per rank:
FSDP QLoRA/LoRA with and without CPU offload on 2× RTX 3090/4090 up to 70B and on 2-8 A100/H100
(Answer.AI fsdp_qlora), PEFT's FSDP and ZeRO-3 70B runs, litgpt FSDP full tuning, torchtitan FSDP2 on
64 A100.

    python bench/multigpu_accuracy.py [--markdown]

Reads bench/data/multigpu-measurements.json (each record with its source and conditions). Memory:
measured "reserved" is compared with peak allocated + allocator slack, "allocated" with peak allocated,
anything else (nvidia-smi, screenshots) with the total. Time: a published wall time of ``examples``
samples (``run_time_s``) with the estimated whole-run seconds (every sample full length, as the dummy
data was), a published tokens/s per GPU (``tokens_per_s_per_gpu``) with the estimate's. Uncalibrated
defaults throughout (no trial of those machines). Records whose model family the estimators cannot
count yet (phi, gpt_neox, gemma v1) are listed as not estimable.
"""
import argparse
import dataclasses
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from estimators.catalog import gpu_by_id, model_by_id  # noqa: E402
from estimators.errors import InputError  # noqa: E402
from estimators.memory import ALLOCATOR_SLACK, estimate_memory  # noqa: E402
from estimators.throughput import estimate_time  # noqa: E402
from estimators.setup import TrainSetup  # noqa: E402
from estimators.spec import spec_from_config  # noqa: E402

# Configs of the measured models, transcribed from their public config.json (Hugging Face model repos
# named in each record's hf_id); parameter counts checked against the model cards (6.74B, 68.98B, 34.39B, 7.24B).
CONFIGS = {
    "llama-2-7b": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                   "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32000,
                   "max_position_embeddings": 4096, "tie_word_embeddings": False},
    "llama-2-70b": {"model_type": "llama", "hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64,
                    "num_key_value_heads": 8, "intermediate_size": 28672, "vocab_size": 32000,
                    "max_position_embeddings": 4096, "tie_word_embeddings": False},
    "yi-34b": {"model_type": "llama", "hidden_size": 7168, "num_hidden_layers": 60, "num_attention_heads": 56,
               "num_key_value_heads": 8, "intermediate_size": 20480, "vocab_size": 64000,
               "max_position_embeddings": 4096, "tie_word_embeddings": False},
    "llama-2-13b": {"model_type": "llama", "hidden_size": 5120, "num_hidden_layers": 40, "num_attention_heads": 40,
                    "num_key_value_heads": 40, "intermediate_size": 13824, "vocab_size": 32000,
                    "max_position_embeddings": 4096, "tie_word_embeddings": False},
    "mistral-7b-v0.2": {"model_type": "mistral", "hidden_size": 4096, "num_hidden_layers": 32,
                        "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
                        "vocab_size": 32000, "max_position_embeddings": 32768, "tie_word_embeddings": False},
}
UNIT = {"GiB": 1024**3, "GB": 1e9}


def setup_for(r: dict) -> TrainSetup:
    mp = r.get("method_params") or {}
    targets = mp.get("target_modules") or "all-linear"
    targets = targets if isinstance(targets, str) else ",".join(targets)
    sharding = r.get("sharding") or ""
    shard = ("none" if "NO_SHARD" in sharding else "zero3" if "ZeRO-3" in sharding else
             "zero2" if "ZeRO-2" in sharding else "fsdp")
    # amp_bf16 with a frozen base (PEFT's examples load the base in bf16; adapters stay fp32) is our pure
    # bf16 with PEFT's fp32 adapters; only full tuning keeps fp32 masters under AMP.
    amp = str(r.get("dtype_mode", "")).startswith("amp") and r["method"] in ("full", "distillation")
    examples = r.get("examples") or (1024 if r.get("run_time_s") else 6400 if r.get("throughput_relative") else None)
    # (fsdp_qlora runs: 1,024 samples; relative throughputs: any count, only ratios are compared)
    return TrainSetup(method=r["method"], batch_size=r["batch"], seq_len=r["seq"],
                      precision="bf16", mixed_precision=amp,
                      gradient_checkpointing=bool(r.get("grad_ckpt")), lora_rank=mp.get("lora_r") or 16,
                      adapters_16bit=bool(mp.get("adapters_16bit")),  # PEFT before v0.11: the base's dtype
                      lora_targets=targets, quant_bits=mp.get("quant_bits") or 4, num_gpus=r["num_gpus"],
                      sharding=shard, cpu_offload="offload" in sharding.lower()
                      and not any(w in sharding.lower() for w in ("no offload", "no cpu offload")),
                      grad_accum=r.get("grad_accum") or 1, examples=examples,
                      tokens_per_example=r["seq"] if examples else None, packing=bool(examples))


def gpu_for(r: dict):
    """The catalog GPU a record ran on (the fsdp_qlora case studies name it in the id)."""
    if r.get("gpu"):
        gpu = gpu_by_id(r["gpu"])
        return dataclasses.replace(gpu, link_gbs=r["link_gbs"]) if r.get("link_gbs") else gpu
    for key, gid in (("/3090/", "rtx-3090"), ("/4090/", "rtx-4090")):
        if key in r["id"]:
            return gpu_by_id(gid)
    return None


def spec_for(r: dict):
    cfg = CONFIGS.get(r["model_id"])
    if cfg is not None:
        return spec_from_config(cfg, r["model_id"])
    try:
        return model_by_id(r["model_id"])
    except InputError:
        return None


def machine(r: dict) -> str | None:
    """The fsdp_qlora case-study machines (one box each), which publish a DDP run to calibrate on."""
    return next((m for m in ("/3090/", "/4090/") if m in r["id"]), None)


def calibrate(records: list[dict]) -> dict:
    """Per machine, the compute efficiency that makes its DDP runs' estimates match (geometric mean of
    each DDP record's solution, by bisection): what a trial calibrates in the product, here so that the
    sharding and offload terms are judged apart from the single-GPU speed of the box."""
    out = {}
    for m in ("/3090/", "/4090/"):
        solved = []
        for r in records:
            if machine(r) == m and "NO_SHARD" in (r.get("sharding") or "") and r.get("run_time_s"):
                spec, gpu, setup = spec_for(r), gpu_for(r), setup_for(r)
                lo, hi = 0.02, 1.0
                for _ in range(40):
                    mid = (lo * hi) ** 0.5
                    secs = estimate_time(spec, setup, dataclasses.replace(gpu, efficiency=mid)).seconds
                    lo, hi = (mid, hi) if secs > r["run_time_s"] else (lo, mid)
                solved.append((lo * hi) ** 0.5)
        if solved:
            out[m] = math.exp(sum(math.log(e) for e in solved) / len(solved))
    return out


def compare_time(r: dict, efficiency: dict | None = None) -> dict | None:
    """Estimated against published time per rank (None when the record publishes none); ``efficiency``
    per machine replaces the GPU's default (``calibrate``)."""
    if not (r.get("run_time_s") or r.get("tokens_per_s_per_gpu")):
        return None
    spec, gpu = spec_for(r), gpu_for(r)
    if efficiency and machine(r) in efficiency and gpu is not None:
        gpu = dataclasses.replace(gpu, efficiency=efficiency[machine(r)])
    row = {"id": r["id"], "kind": "time"}
    if spec is None or gpu is None:
        return {**row, "status": f"not estimable: {r['model_id']} or its GPU is not known"}
    setup = setup_for(r)
    t = estimate_time(spec, setup, gpu)
    step = t.step.to_dict() if t.step else {}
    moved = {k: round(step.get(k, 0), 3) for k in ("communication", "offload", "cpu_optimizer")}
    if r.get("run_time_s"):
        return {**row, "status": "ok", "measured": r["run_time_s"], "estimated": round(t.seconds), "unit": "s",
                "error": t.seconds / r["run_time_s"] - 1, "moved": moved}
    per_gpu = t.tokens_per_second / setup.num_gpus
    # slower means more seconds: the error is measured/estimated throughput - 1, as for run times
    return {**row, "status": "ok", "measured": r["tokens_per_s_per_gpu"], "estimated": round(per_gpu), "unit": "tok/s/GPU",
            "error": r["tokens_per_s_per_gpu"] / per_gpu - 1, "moved": moved}


def compare(r: dict) -> dict:
    row = {"id": r["id"], "quantity": r.get("quantity_type"), "measured": r["value"], "unit": r["unit"]}
    if r["value"] is None:
        return {**row, "status": "no value published"}
    spec = spec_for(r)
    if spec is None:
        return {**row, "status": f"not estimable: {r['model_id']}'s family is not counted yet"}
    try:
        m = estimate_memory(spec, setup_for(r))
    except InputError as exc:
        return {**row, "status": f"not estimable: {exc}"}
    quantity = r.get("quantity_type")
    est = (m.peak_allocated * (1 + ALLOCATOR_SLACK) if quantity == "reserved" else
           m.peak_allocated if quantity == "allocated" else m.total)
    est_unit = est / UNIT[r["unit"]]
    return {**row, "status": "ok", "estimated": round(est_unit, 2), "error": est_unit / r["value"] - 1,
            "cpu_ram_gib": round(m.detail.get("cpu_ram", 0) / 1024**3, 1)}


def compare_ratios(records: list[dict]) -> list[dict]:
    """Offload against no offload on the same machine: the published throughput ratio against the ratio of
    estimated seconds (each offload row with its stage's checkpointed, unoffloaded row at the smallest batch)."""
    rel = [r for r in records if r.get("throughput_relative")]
    out = []
    for r in rel:
        if "(no offload)" in r["sharding"]:
            continue
        stage = r["sharding"].split(" (")[0]
        base = min((b for b in rel if b["sharding"] == f"{stage} (no offload)" and b["grad_ckpt"] == r["grad_ckpt"]),
                   key=lambda b: abs(b["batch"] - r["batch"]), default=None)
        if base is None:
            continue
        secs = [estimate_time(spec_for(x), setup_for(x), gpu_for(x)).seconds for x in (r, base)]
        measured = base["throughput_relative"] / r["throughput_relative"]
        estimated = secs[0] / secs[1]
        out.append({"id": r["id"], "versus": base["id"], "measured": round(measured, 2), "estimated": round(estimated, 2),
                    "error": estimated / measured - 1})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markdown", action="store_true", help="print tables for docs/accuracy.md")
    args = ap.parse_args()
    records = json.loads((ROOT / "bench" / "data" / "multigpu-measurements.json").read_text())["records"]
    rows = [compare(r) for r in records if r["value"] is not None
            or not (r.get("run_time_s") or r.get("tokens_per_s_per_gpu"))]
    times = [t for r in records if (t := compare_time(r)) is not None]
    efficiency = calibrate(records)
    calibrated = {t["id"]: t for r in records if (t := compare_time(r, efficiency)) is not None}
    print("Memory per rank" + ("\n\n| record | measured | estimated | error |\n|---|---|---|---|" if args.markdown else ""))
    for r in rows:
        if r["status"] != "ok":
            print(f"| {r['id']} | {r['measured']} {r['unit']} | — | {r['status']} |" if args.markdown else
                  f"{r['id']:<72} {r['status']}")
        elif args.markdown:
            print(f"| {r['id']} | {r['measured']} {r['unit']} ({r['quantity']}) | {r['estimated']} {r['unit']} | "
                  f"{r['error']:+.0%} |")
        else:
            print(f"{r['id']:<72} measured {r['measured']:>7} {r['unit']:<3} estimated {r['estimated']:>7} "
                  f"({r['error']:+.0%})")
    print("\nTime per rank (error > 0: the estimate is slower than measured; 'calibrated': the box's compute "
          "efficiency fitted on its own DDP run, " + ", ".join(f"{k.strip('/')} {v:.2f}" for k, v in efficiency.items())
          + ")" + ("\n\n| record | measured | estimated | error | calibrated | exposed comm / offload / CPU optimizer "
                   "s per step |\n|---|---|---|---|---|---|" if args.markdown else ""))
    for t in times:
        if t["status"] != "ok":
            print(f"| {t['id']} | — | — | {t['status']} | |" if args.markdown else f"{t['id']:<72} {t['status']}")
            continue
        moved = " / ".join(f"{v:g}" for v in t["moved"].values())
        cal = calibrated[t["id"]]
        cal_text = "—" if t["id"] == cal["id"] and machine({"id": t["id"]}) is None else f"{cal['error']:+.0%}"
        if args.markdown:
            print(f"| {t['id']} | {t['measured']:,} {t['unit']} | {t['estimated']:,} {t['unit']} | {t['error']:+.0%} | "
                  f"{cal_text} | {moved} |")
        else:
            print(f"{t['id']:<72} measured {t['measured']:>7,} {t['unit']:<9} estimated {t['estimated']:>7,} "
                  f"({t['error']:+.0%}; calibrated {cal_text})  moved {moved}")
    ratios = compare_ratios(records)
    print("\nOffload slowdown against the same run without offload (published throughput ratio vs estimated "
          "seconds ratio)" + ("\n\n| record | versus | measured | estimated | error |\n|---|---|---|---|---|"
                             if args.markdown else ""))
    for q in ratios:
        print(f"| {q['id']} | {q['versus']} | {q['measured']}x | {q['estimated']}x | {q['error']:+.0%} |" if args.markdown
              else f"{q['id']:<72} {q['measured']:.2f}x slower measured, {q['estimated']:.2f}x estimated ({q['error']:+.0%})")
    ok_times = [t for t in times if t["status"] == "ok"]
    for label, found in (("memory", [r for r in rows if r["status"] == "ok"]), ("time", ok_times),
                         ("time, the 3090/4090 boxes calibrated on their DDP runs (others as above; DDP runs left out)", [calibrated[t["id"]] for t in ok_times
                                                                     if "NO_SHARD" not in _sharding(records, t["id"])])):
        errors = [abs(r["error"]) for r in found]
        total = len(rows) if label == "memory" else len(found) if "calibrated" in label else len(times)
        print(f"\n{label}: {len(found)} of {total} records estimated: median |error| {statistics.median(errors):.0%}, "
              f"worst {max(errors):.0%}")


def _sharding(records: list[dict], record_id: str) -> str:
    return next(r.get("sharding") or "" for r in records if r["id"] == record_id)


if __name__ == "__main__":
    main()
