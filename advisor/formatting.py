"""Text output of the CLI: tables, the estimate, the recommendation, trial progress and results."""
from __future__ import annotations

import sys

from estimators.estimate import Estimate

GIB = 1024**3


def gib(n: float | None) -> str:
    if n is None:
        return "—"
    return f"{n / GIB:,.2f} GiB" if abs(n) >= GIB / 4 else f"{n / 1024**2:,.1f} MiB"


def human_count(n: int) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def human_seconds(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def time_range(t: dict) -> str:
    """The estimate JSON's ``time`` block as ``value (low–high)``."""
    if t.get("seconds_low") is None:
        return human_seconds(t.get("seconds"))
    return f"{human_seconds(t['seconds'])} ({human_seconds(t['seconds_low'])}–{human_seconds(t['seconds_high'])})"


def cost_range(j: dict) -> str:
    """The estimate JSON's cost as ``$value ($low–$high)``."""
    if j.get("cost_usd") is None:
        return "—"
    if j.get("cost_usd_low") is None:
        return f"${j['cost_usd']:,.2f}"
    return f"${j['cost_usd']:,.2f} (${j['cost_usd_low']:,.2f}–${j['cost_usd_high']:,.2f})"


def format_estimate(e: Estimate) -> str:
    j = e.to_json()
    mem = j["memory"]
    lines = [f"{e.spec.id} · {e.setup.method} · {human_count(j['params']['total'])} params, "
             f"{human_count(j['params']['trainable'])} trainable ({j['params']['trainable'] / j['params']['total']:.3%})",
             "", "Memory per GPU"]
    for key in ("weights", "gradients", "optimizer", "activations", "other"):
        lines.append(f"  {key:<16}{gib(mem[key]):>14}")
    lines += [f"  {'peak allocated':<16}{gib(mem['peak_allocated']):>14}   at {mem['peak_phase'].replace('_', ' ')}",
              f"  {'overhead':<16}{gib(mem['overhead']):>14}",
              f"  {'total':<16}{gib(mem['total']):>14}"]
    if e.gpu is not None:
        verdict = "fits" if j["fits"] else "does NOT fit"
        lines.append(f"  → {verdict} on {e.setup.num_gpus}× {e.gpu.name} ({gib(e.gpu.memory_bytes)} each)")
        host = j.get("host") or {}
        if host.get("memory_bytes"):
            word = "fits" if host["fits"] else "does NOT fit"
            lines.append(f"  host RAM {gib(host['needed_bytes'])} per node: {word} the host's "
                         f"{gib(host['memory_bytes'])}" + ("" if host["given"] else " (typical; --host-memory-gib)"))
    lines += ["", "Time and cost"]
    tps = j["throughput"]["tokens_per_second"]
    lines.append(f"  throughput      {'—' if tps is None else f'{tps:,.0f} tokens/s'}")
    if j["time"]["tokens"] is not None:
        lines.append(f"  tokens          {j['time']['tokens']:,}")
        lines.append(f"  time            {time_range(j['time'])}")
        lines.append(f"  cost            {cost_range(j)}")
        if j["time"].get("range_basis"):
            lines.append(f"  range           {j['time']['range_basis']}")
    else:
        lines.append("  (give --examples and --tokens-per-example for whole-run time and cost)")
    size = j["artifact_bytes"]
    lines += ["", f"Artifact        {gib(size) if size > GIB else f'{size / 1e6:,.2f} MB'}",
              f"Serving {j['serving']['tasks']} task(s): {gib(j['serving']['bytes'])} of weights"
              + _serving_line(j["serving"]), "", "Assumptions"]
    lines += [f"  - {a}" for a in j["assumptions"]]
    return "\n".join(lines)


def _serving_line(s: dict) -> str:
    """KV cache per token and one replica's single-stream decode speed (estimators/serving.py)."""
    out = f"; KV cache {s['kv_bytes_per_token'] / 1024:,.0f} KiB per token" if s.get("kv_bytes_per_token") else ""
    g = s.get("gpus")
    if g and s.get("decode_tokens_per_second"):
        out += (f"; {s['decode_tokens_per_second']:,.0f} tokens/s single-stream decode on {g['count']}× {g['type']} "
                "(give traffic to recommend --answers to price hosting)")
    return out


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    widths = [max(len(title), *(len(str(r[key])) for r in rows)) for key, title in columns]
    out = ["  ".join(title.ljust(w) for (_, title), w in zip(columns, widths))]
    out += ["  ".join(str(r[key]).ljust(w) for (key, _), w in zip(columns, widths)) for r in rows]
    return "\n".join(out)


def fit_label(fits: bool, within_budget: bool, memory_fit: str | None) -> str:
    """One word for memory and budget together: fits, tight, over budget, does not fit (or — unestimated)."""
    if memory_fit is None:
        return "—"
    if not fits:
        return "does not fit"
    return memory_fit if within_budget else "over budget"


_HOSTING_COLUMNS = ("serving GPUs", "ms/token", "hosting/month", "total")


def _hosting_cells(a) -> dict:
    """The hosting columns of a method's row (issue 24): GPUs × type, time per output token, $/month, total."""
    s, t = (a.estimate or {}).get("serving") or {}, a.total_cost or {}
    g = s.get("gpus") or {}
    return {"serving GPUs": f"{g['count']:,}× {g['type']}" if g else "—",
            "ms/token": f"{s['tpot_ms']:.1f}" if s.get("tpot_ms") is not None else "—",
            "hosting/month": f"${t['usd_per_month']:,.0f}" if t else "—", "total": f"${t['usd']:,.0f}" if t else "—"}


def format_recommendation(rec) -> str:
    lines = [rec.summary, ""]
    if rec.dont_tune:
        lines += ["DON'T TUNE — use retrieval (RAG) for factual recall (C5.1). Methods below are for format only.", ""]
    elif rec.hybrid:
        lines += [f"HYBRID — retrieval (RAG) for the facts, {rec.hybrid['label']} for the rest (C5.1).", ""]
    rows = []
    for i, a in enumerate(rec.recommendations, 1):
        e = a.estimate or {}
        mem = e.get("memory", {}).get("total")
        secs = (e.get("time") or {}).get("seconds")
        rows.append({"rank": i, "method": a.method, "score": f"{a.score:.2f}", "verdict": a.verdict,
                     "fit": fit_label(a.fits, a.within_budget, a.memory_fit), "memory/GPU": gib(mem),
                     "route": a.route or "—", "epochs": f"{a.training['epochs']:g}" if a.training else "—",
                     "steps/epoch": f"{a.training['steps_per_epoch']:,}" if a.training else "—",
                     "time": human_seconds(secs), "cost": "—" if e.get("cost_usd") is None else f"${e['cost_usd']:,.2f}",
                     **_hosting_cells(a)})
    priced = bool((rec.hosting or {}).get("priced"))
    lines.append(_table(rows, [(k, k) for k in ("rank", "method", "score", "verdict", "fit", "memory/GPU", "route",
                                                 "epochs", "steps/epoch", "time", "cost")
                               + (_HOSTING_COLUMNS if priced else ())]))
    for a in rec.recommendations:
        lines += ["", f"{a.method} ({a.model})"]
        if a.settings:
            lines.append("  settings: " + ", ".join(f"{k}={v}" for k, v in a.settings.items()))
        if a.budget_fit:
            lines.append(f"  budget: {a.budget_fit['text']}")
        if a.all_tasks:
            lines.append(f"  all tasks: {a.all_tasks['text']}")
        lines += [f"  [{r['criterion']}] {r['effect']} {r['text']}" for r in a.reasons]
        lines += [f"  caveat: {c}" for c in a.caveats]
    return "\n".join(lines)


_LINE_OPEN = [False]
"""Whether the last progress line was left open (``\r`` updates, no newline yet)."""


def end_progress_line() -> None:
    """Ends an open progress line, so what is printed next (a result, an error) starts on its own line."""
    if _LINE_OPEN[0]:
        print(file=sys.stderr, flush=True)
        _LINE_OPEN[0] = False


def _progress(event: dict) -> None:
    kind = event["event"]
    if kind != "step":
        end_progress_line()
    if kind == "data":
        r = event["report"]
        print(f"data: {r['usable_rows']} usable rows ({r['format']}), mean {r['mean_tokens']} tokens, "
              f"{r['truncated_share']:.0%} truncated; model: {event['model']}", file=sys.stderr)
        for problem in r["problems"] + ([r["sample_note"]] if r.get("sample_note") else []):
            print(f"  note: {problem}", file=sys.stderr)
    elif kind == "setup":
        print(f"{event['trainable_params']:,} of {event['total_params']:,} parameters train on {event['device']}",
              file=sys.stderr)
    elif kind == "step":
        done = event["step"] / event["steps"]
        bar = "#" * int(done * 30)
        print(f"\r  step {event['step']:>3}/{event['steps']} [{bar:<30}] loss {event['loss']:.4f} "
              f"{event['seconds']:.2f} s/step", end="" if event["step"] < event["steps"] else "\n",
              file=sys.stderr, flush=True)
        _LINE_OPEN[0] = event["step"] < event["steps"]


def format_trial(res: dict) -> str:
    end_progress_line()
    if res["status"] != "completed":
        return f"run {res['run_id']} {res['status']}: {res['error']}"
    m, e, x = res["measured"], res["estimate"], res["extrapolated"]
    est_tps = e["throughput"]["tokens_per_second"]
    rows = [("peak allocated", gib(e["memory"]["peak_allocated"]), gib(m["peak_allocated"])),
            ("tokens/s", "—" if est_tps is None else f"{est_tps:,.0f}", f"{m['tokens_per_second']:,.0f}"),
            ("whole run", human_seconds(e["time"]["seconds"]), human_seconds(x["seconds"])),
            ("cost", "—" if e["cost_usd"] is None else f"${e['cost_usd']:,.2f}",
             "—" if x["cost_usd"] is None else f"${x['cost_usd']:,.2f}")]
    ratio = res.get("ratios", {}).get("peak_allocated")
    lines = [f"run {res['run_id']} completed on {res['device']}", "",
             f"  {'':<16}{'estimated':>14}{'measured':>14}"]
    lines += [f"  {name:<16}{a:>14}{b:>14}" for name, a, b in rows]
    if ratio:
        lines.append(f"  measured / estimated peak: {ratio:.2f}")
    lines += ["", f"  losses: {', '.join(f'{v:.3f}' for v in m['losses'])}"]
    if res.get("artifact"):
        lines.append(f"  adapter: {res['artifact']}")
    if res.get("project"):
        lines.append(f"  the plan as a runnable project: {res['project']} (train.py, launch.sh, ...)")
    lines += [f"  adapted for this machine: {a}" for a in res.get("adaptations", [])]
    lines += [f"  note: {n}" for n in res.get("notes", [])]
    return "\n".join(lines)


def format_min_gpus(m: dict) -> str:
    """How many GPUs: per sharding on the plan's GPU, then the cheapest catalog options."""
    lines = [f"What would fit: {m['answer']}" if m.get("answer") else "What would fit: nothing up to 128 GPUs",
             "", f"How many {m['gpu']} GPUs"]
    for label, found in m["by_sharding"].items():
        if found is None:
            lines.append(f"  {label:<14} does not fit on up to 128")
        else:
            cost = "" if found["cost_usd"] is None else f", ${found['cost_usd']:,.2f} for the run"
            lines.append(f"  {label:<14} {found['num_gpus']:>4} × {gib(found['memory_per_gpu'])} per GPU, host RAM "
                         f"{gib(found['cpu_ram'])}{cost}")
    if m["cheapest"]:
        lines.append("Cheapest that fit" + (" the budget" if any(m["budget"].values()) else "") + ":")
        for o in m["cheapest"]:
            lines.append(f"  {o['text']}, ${o['usd_per_hour']:,.2f}/h")
    else:
        lines.append("No catalog GPU type and count up to 128 fits" + (" the budget." if any(m["budget"].values()) else "."))
    return "\n".join(lines)
