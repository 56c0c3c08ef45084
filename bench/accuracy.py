"""Estimate accuracy, measured. Two matrices:

* trial runs on this machine (real steps through the runner, random-weight Llama-style models of
  tens to a few hundred million parameters): estimated vs measured peak live tensor bytes, and
  estimated vs measured tokens/s (uncalibrated: each case starts from a fresh data folder);
* exact checks (one step on fake tensors, nothing allocated) of real catalog architectures up to
  ~3B parameters: analytic estimate vs the exact peak.

Prints every case and a summary (median and worst absolute error per method), writes the JSON to
bench/results/ (device, library versions, date) and, with --write-docs, the summary into
docs/accuracy.md between its markers.

    python bench/accuracy.py --quick          # a few minutes on a 2-core CPU
    python bench/accuracy.py                  # the full matrix (tens of minutes)
"""
import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Llama-style shapes for real trial runs (random weights): ~60M and ~200M parameters.
TRIAL_MODELS = {
    "llama-60m": {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 512,
                  "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 2,
                  "intermediate_size": 1408, "vocab_size": 32000, "max_position_embeddings": 2048,
                  "tie_word_embeddings": False},
    "qwen-like-200m": {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 768,
                       "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 2,
                       "intermediate_size": 2048, "vocab_size": 65536, "max_position_embeddings": 2048,
                       "tie_word_embeddings": True},
}
DRY_MODELS = ["qwen2.5-0.5b", "llama-3.2-1b", "gemma-2-2b", "llama-3.2-3b"]
# GPT-2, T5, an encoder, MoE and the 2025–26 families (catalog models), each with a smaller matrix.
DRY_FAMILIES = ["gpt2", "flan-t5-base", "bert-base-uncased", "qwen3-1.7b", "gemma-3-1b", "smollm3-3b", "phi-4",
                "qwen3-30b-a3b", "gpt-oss-20b", "phi-shape", "gpt-neox-shape", "olmo2-shape"]
# Families with hand-written arithmetic but no catalog model: transformers' own default config of the
# family (PhiConfig: Phi-1.5's shape; GPTNeoXConfig: GPT-NeoX-20B's; Olmo2Config: OLMo-2 7B's).
SHAPES = {"phi-shape": "phi", "gpt-neox-shape": "gpt_neox", "olmo2-shape": "olmo2"}


def long_shapes(model: str) -> tuple:
    """4,096 tokens in sequences as long as the model's learned positions allow (BERT 512, GPT-2 1024,
    else 2048; T5's positions are relative), without and with checkpointing."""
    cfg = dry_config(model)
    learned = cfg.get("max_position_embeddings") or (cfg.get("n_positions") if cfg.get("model_type") == "gpt2" else None)
    seq = min(2048, learned or 2048)
    return ((4096 // seq, seq, False), (4096 // seq, seq, True))


def dry_config(model: str) -> dict:
    """A catalog model's config, or the default config transformers gives a family (SHAPES)."""
    if model not in SHAPES:
        from estimators.catalog import model_configs

        return model_configs()[model]
    import transformers

    cfg = transformers.AutoConfig.for_model(SHAPES[model]).to_dict()
    return {**cfg, "model_type": SHAPES[model], "architectures": [transformers.AutoModelForCausalLM._model_mapping[
        type(transformers.AutoConfig.for_model(SHAPES[model]))].__name__]}


def versions() -> dict:
    import peft
    import torch
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "peft": peft.__version__}
    try:
        import bitsandbytes

        out["bitsandbytes"] = bitsandbytes.__version__
    except Exception:
        pass
    return out


def data_file(folder: Path) -> Path:
    rows = [{"text": " ".join(f"token{(i * 7 + j * 13) % 997}" for j in range(1200))} for i in range(32)]
    path = folder / "long.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def trial_case(folder: Path, model: str, method: str, batch: int, seq: int, ckpt: bool, precision: str,
               sharding: str | None = None) -> dict:
    from tuners import launch

    home = folder / f"home-{model}-{method}-{batch}-{seq}-{int(ckpt)}-{precision}-{sharding}"
    os.environ["TUNING_ADVISOR_HOME"] = str(home)  # fresh: no calibration from earlier cases
    home.mkdir(parents=True, exist_ok=True)
    shared_peak = folder / "cpu_peak.json"  # ... but one measured CPU peak for all of them
    if shared_peak.exists():
        shutil.copy(shared_peak, home / "cpu_peak.json")
    cfg = folder / f"{model}.json"
    cfg.write_text(json.dumps(TRIAL_MODELS[model]))
    from estimators.plan import Plan

    settings = {"batch_size": batch, "seq_len": seq, "precision": precision, "gradient_checkpointing": ckpt}
    if method in ("lora", "qlora", "dora"):
        settings["lora_rank"] = 16
    hardware = {"num_gpus": 2, "sharding": sharding} if sharding else {}
    plan = Plan.create(str(cfg), method, settings, hardware, data={"path": str(data_file(folder))})
    run_id, _ = launch.start({"plan": plan.to_json(), "steps": 5, "nproc": 2 if sharding else 1})
    res = launch.follow(run_id)
    if not shared_peak.exists() and (home / "cpu_peak.json").exists():
        shutil.copy(home / "cpu_peak.json", shared_peak)
    row = {"kind": "sharded" if sharding else "trial", "model": model,
           "method": f"{method}/{sharding}" if sharding else method, "batch": batch, "seq": seq, "ckpt": ckpt,
           "precision": precision, "status": res["status"], "error": res["error"]}
    if res["status"] == "completed":
        e, m = res["estimate"], res["measured"]
        row.update(est_peak=e["memory"]["peak_allocated"], meas_peak=m["peak_allocated"],
                   est_tps=e["throughput"]["tokens_per_second"], meas_tps=m["tokens_per_second"],
                   est_phase=e["memory"]["peak_phase"], meas_phase=m.get("peak_phase"),
                   params=e["params"]["total"])
    return row


# transformers 5 has no SDPA path for Gemma 2 (soft-capping): real runs use eager attention.
EAGER_ONLY = {"gemma-2-2b", "gemma-2-9b", "gemma-2-27b", "gpt-oss-20b"}


def dry_case(model: str, method: str, batch: int, seq: int, ckpt: bool) -> dict:
    from estimators.memory import estimate_memory
    from estimators.spec import spec_from_config
    from estimators.plan import Plan
    from estimators.setup import TrainSetup
    from tuners.dryrun import dry_run

    setup = TrainSetup(method=method, batch_size=batch, seq_len=seq, gradient_checkpointing=ckpt, device="cuda",
                       attention="eager" if model in EAGER_ONLY else "sdpa")
    cfg = dry_config(model)
    spec = spec_from_config(cfg, model)
    ref = model if model not in SHAPES else _shape_file(model, cfg)
    exact = dry_run(cfg, Plan.from_setup(ref, setup))
    est = estimate_memory(spec, setup)
    return {"kind": "dry-run", "model": model, "family": spec.family, "method": method, "batch": batch, "seq": seq,
            "ckpt": ckpt,
            "precision": "bf16", "attention": setup.attention, "status": "completed", "est_peak": est.peak_allocated,
            "meas_peak": exact["peak_allocated"], "est_phase": est.peak_phase, "meas_phase": exact["peak_phase"],
            "seconds": round(exact["seconds"], 1), "params": spec.total_params}


def _shape_file(model: str, cfg: dict) -> str:
    """A family shape as a config.json a plan can name."""
    path = Path(tempfile.gettempdir()) / f"accuracy-{model}.json"
    path.write_text(json.dumps(cfg, default=str))
    return str(path)


def err(est, meas):
    return None if not est or not meas else est / meas - 1


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for (kind, method), group in itertools.groupby(sorted(rows, key=lambda r: (r["kind"], r["method"])),
                                                   key=lambda r: (r["kind"], r["method"])):
        group = [r for r in group if r["status"] == "completed"]
        mem = [abs(err(r["est_peak"], r["meas_peak"])) for r in group]
        tps = [abs(err(r.get("est_tps"), r.get("meas_tps"))) for r in group if r.get("est_tps")]
        out.append({"kind": kind, "method": method, "cases": len(group),
                    "memory_median": statistics.median(mem) if mem else None, "memory_worst": max(mem) if mem else None,
                    "tps_median": statistics.median(tps) if tps else None, "tps_worst": max(tps) if tps else None})
    return out


def summarise_families(rows: list[dict]) -> list[dict]:
    """Exact checks by model family, all methods and shapes together."""
    dry = sorted((r for r in rows if r["status"] == "completed" and r.get("family")), key=lambda r: r["family"])
    out = []
    for family, group in itertools.groupby(dry, key=lambda r: r["family"]):
        errs = [abs(err(r["est_peak"], r["meas_peak"])) for r in group]
        out.append({"family": family, "cases": len(errs), "memory_median": statistics.median(errs),
                    "memory_worst": max(errs)})
    return out


def pct(x):
    return "—" if x is None else f"{x:.1%}"


def markdown(summary: list[dict], rows: list[dict], meta: dict) -> str:
    lines = [f"Run `{meta['command']}` on {meta['device']} ({meta['date']}; torch {meta['versions']['torch']}, "
             f"transformers {meta['versions']['transformers']}, peft {meta['versions']['peft']}).", "",
             "| kind | method | cases | peak memory: median abs error | worst | tokens/s: median abs error | worst |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for s in summary:
        lines.append(f"| {s['kind']} | {s['method']} | {s['cases']} | {pct(s['memory_median'])} | "
                     f"{pct(s['memory_worst'])} | {pct(s['tps_median'])} | {pct(s['tps_worst'])} |")
    families = summarise_families(rows)
    if families:
        lines += ["", "| exact checks by family | cases | peak memory: median abs error | worst |", "|---|---:|---:|---:|"]
        lines += [f"| {f['family']} | {f['cases']} | {pct(f['memory_median'])} | {pct(f['memory_worst'])} |"
                  for f in families]
    failed = [r for r in rows if r["status"] != "completed"]
    if failed:
        lines += ["", f"{len(failed)} case(s) did not complete: " + "; ".join(
            f"{r['model']} {r['method']}: {r['error']}" for r in failed)]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a small matrix (a few minutes on 2 CPU cores)")
    ap.add_argument("--write-docs", action="store_true", help="put the summary into docs/accuracy.md")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--only", choices=("trial", "dry", "sharded"),
                    help="run one part of the matrix (sharded: 2 CPU ranks through torchrun, DDP/FSDP2)")
    ap.add_argument("--from-json", action="append", metavar="RESULTS",
                    help="do not run: write docs/accuracy.md from saved results (repeatable)")
    args = ap.parse_args()
    if args.from_json:
        write_docs([json.loads(Path(p).read_text()) for p in args.from_json])
        return
    folder = Path(tempfile.mkdtemp(prefix="accuracy-"))
    methods = ["full", "lora", "prompt_tuning", "adapters"]
    if args.quick:
        trials = [("llama-60m", m, 2, 256, c, "fp32") for m in methods for c in (False, True)]
        trials += [("llama-60m", "qlora", 2, 128, False, "bf16")]
        drys = [(mid, m, 1, 512, c) for mid in DRY_MODELS[:2] for m in methods[:3] for c in (False, True)]
    else:
        trials = [(mid, m, b, s, c, "fp32") for mid in TRIAL_MODELS for m in methods for b, s in ((1, 512), (4, 128))
                  for c in (False, True)]
        trials += [("llama-60m", m, 2, 128, False, "bf16") for m in ("lora", "qlora")]  # bf16 is slow on CPUs
        drys = [(mid, m, b, s, c) for mid in DRY_MODELS for m in methods for b, s in ((1, 512), (2, 2048))
                for c in (False, True)]
        drys += [(mid, m, b, s, c) for mid in DRY_FAMILIES for m in methods[:3] if m != "prompt_tuning" or mid != "bert-base-uncased"
                 for b, s, c in ((1, 512, False),) + long_shapes(mid)]
    rows, t0 = [], time.time()
    header = (f"{'kind':8} {'model':16} {'method':14} {'b':>2} {'seq':>5} {'ckpt':5} {'prec':5} "
              f"{'est MiB':>9} {'meas MiB':>9} {'err':>7}   {'est tok/s':>9} {'meas tok/s':>10} {'err':>7}")
    print(header)
    shardeds = [("llama-60m", m, 2, 256, False, "fp32", sh) for m in ("full", "lora") for sh in ("none", "fsdp", "zero2")]
    cases = [("trial",) + t for t in trials if args.only in (None, "trial")]
    cases += [("sharded",) + t for t in shardeds if args.only in (None, "sharded")]
    cases += [("dry",) + d for d in drys if args.only in (None, "dry")]
    partial = Path(args.out) / "accuracy-partial.jsonl"  # every finished case, in case the run is cut short
    partial.parent.mkdir(parents=True, exist_ok=True)
    for case in cases:
        try:
            r = trial_case(folder, *case[1:]) if case[0] in ("trial", "sharded") else dry_case(*case[1:])
        except Exception as exc:  # one broken case must not lose the others
            r = {"kind": case[0], "model": case[1], "method": case[2], "status": "failed",
                 "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        rows.append(r)
        with partial.open("a") as f:
            f.write(json.dumps(r) + "\n")
        if r["status"] != "completed":
            print(f"{r['kind']:8} {r['model']:16} {r['method']:14} FAILED: {r['error']}", flush=True)
            continue
        print(f"{r['kind']:8} {r['model']:16} {r['method']:14} {r['batch']:>2} {r['seq']:>5} {str(r['ckpt']):5} "
              f"{r['precision']:5} {r['est_peak'] / 2**20:9.1f} {r['meas_peak'] / 2**20:9.1f} "
              f"{pct(err(r['est_peak'], r['meas_peak'])):>7}   "
              f"{(r.get('est_tps') or 0):9.0f} {(r.get('meas_tps') or 0):10.0f} "
              f"{pct(err(r.get('est_tps'), r.get('meas_tps'))):>7}", flush=True)
    summary = summarise(rows)
    for f in summarise_families(rows):
        print(f"  family {f['family']:14} cases {f['cases']:>3}  memory median {pct(f['memory_median']):>6} "
              f"worst {pct(f['memory_worst']):>6}")
    print("\nsummary (absolute relative error)")
    for s in summary:
        print(f"  {s['kind']:8} {s['method']:14} cases {s['cases']:>2}  memory median {pct(s['memory_median']):>6} "
              f"worst {pct(s['memory_worst']):>6}   tokens/s median {pct(s['tps_median']):>6} worst {pct(s['tps_worst']):>6}")
    from tuners.hardware import cpu_name

    meta = {"command": "python bench/accuracy.py" + (" --quick" if args.quick else "")
            + (f" --only {args.only}" if args.only else ""), "date": time.strftime("%Y-%m-%d"),
            "device": f"CPU: {cpu_name()}, {os.cpu_count()} cores", "versions": versions(),
            "seconds": round(time.time() - t0)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    part = f"-{args.only}" if args.only else ""
    path = out / f"accuracy-{'quick' if args.quick else 'full'}{part}-cpu-{meta['date']}.json"
    path.write_text(json.dumps({"meta": meta, "summary": summary, "cases": rows}, indent=2))
    print(f"\nwrote {path} ({meta['seconds']} s)")
    if args.write_docs:
        write_docs([{"meta": meta, "summary": summary, "cases": rows}])


def write_docs(results: list[dict]) -> None:
    doc = ROOT / "docs" / "accuracy.md"
    text = doc.read_text()
    start, end = "<!-- summary:start -->", "<!-- summary:end -->"
    body = "\n\n".join(markdown(r["summary"], r["cases"], r["meta"]) for r in results)
    doc.write_text(text[:text.index(start) + len(start)] + "\n" + body + "\n" + text[text.index(end):])
    print(f"updated {doc}")


if __name__ == "__main__":
    main()
