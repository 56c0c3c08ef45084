"""``models`` and ``gpus``: the catalogs (and, with ``models --local``, the models on this machine)."""
from __future__ import annotations

import dataclasses
import json
import sys

from estimators.catalog import catalog_rows, gpus
from estimators.errors import InputError
from advisor.formatting import _table, gib, human_count


def add(sub) -> None:
    p = sub.add_parser("models", help="list the model catalog (or, with --local, the models on this machine)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--local", action="store_true",
                   help="list models in the Hugging Face cache (HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub)")
    p.add_argument("--folder", action="append", metavar="DIR",
                   help="with --local: also look in this folder (a model folder or a folder of them; repeatable)")
    p.set_defaults(func=run_models)
    p = sub.add_parser("gpus", help="list the GPU catalog")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_gpus)


def run_local_models(args) -> int:
    """`models --local`: models in the Hugging Face cache and the given folders (nothing downloaded)."""
    from tuners.localmodels import hub_cache_dir, scan  # files only: no torch

    rows = [m.to_dict() for m in scan(args.folder or ())]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in [r for r in rows if r["error"] and not r["model_type"]]:  # a folder we cannot read: a note, not a row
        print(f"tuning-advisor models: skipped {r['path']}: {r['error']}", file=sys.stderr)
        rows.remove(r)
    if not rows:
        print(f"no models found in {hub_cache_dir()}" + (f" or {', '.join(args.folder)}" if args.folder else ""))
        return 0
    shown = [{**r, "params": human_count(r["params"]) if r["params"] else "?", "size": gib(r["size_bytes"]),
              "tokenizer": "yes" if r["tokenizer"] else "no", "weights": "yes" if r["weights"] else "no",
              "model_type": r["model_type"] or r["error"] or "?"} for r in rows]
    print(_table(shown, [("id", "id"), ("model_type", "family"), ("params", "params"), ("size", "on disk"),
                         ("weights", "weights"), ("tokenizer", "tokenizer"), ("path", "path (for --model)")]))
    return 0


def run_models(args) -> int:
    if args.folder and not args.local:
        raise InputError("--folder lists models on this machine: add --local (models --local --folder DIR)")
    if args.local:
        return run_local_models(args)
    rows = catalog_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    shown = [{**r, "params": human_count(r["params"]),
              "active_params": human_count(r["active_params"]) if r["active_params"] != r["params"] else ""} for r in rows]
    print(_table(shown, [("id", "id"), ("family", "family"), ("kind", "kind"), ("params", "params"),
                         ("active_params", "active"), ("layers", "layers"), ("hidden", "hidden"), ("vocab", "vocab")]))
    return 0


def run_gpus(args) -> int:
    from estimators.transfer import host_for

    rows = [{**g.to_dict(), "host": dataclasses.asdict(host_for(g.id))} for g in gpus().values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    shown = [{**r, "bf16_tflops": r["bf16_tflops"] or "—", "price": f"${r['price_per_hour_usd']:.2f}/h"} for r in rows]
    print(_table(shown, [("id", "id"), ("name", "name"), ("memory_gib", "GiB"), ("bf16_tflops", "bf16 TFLOP/s"),
                         ("fp16_tflops", "fp16"), ("fp32_tflops", "fp32"), ("bandwidth_gbs", "GB/s"), ("price", "price")]))
    return 0
