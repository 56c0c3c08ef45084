"""Recommendation panel and charts."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from advisor.criteria import explain
from advisor.explore import memory_rows, time_cost_curve, what_if
from estimators.catalog import load_model
from estimators.errors import InputError

GIB = 1024**3


def fmt_bytes(n) -> str:
    if n is None:
        return "—"
    return f"{n / GIB:,.2f} GiB" if n >= GIB / 4 else f"{n / 1024**2:,.1f} MiB"


def fmt_hours(s) -> str:
    if s is None:
        return "—"
    return f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def verdict(a: dict) -> str:
    if not a["fits"]:
        return "does not fit"
    return "fits" if a["within_budget"] else "over budget"


def render_recommendation(rec: dict) -> None:
    if rec["dont_tune"]:
        with st.container(border=True):
            st.warning("**Don't tune — use retrieval (RAG).** Tuning barely improves factual recall (C5.1). "
                       "Index your documents and give the model the relevant passages at inference time. "
                       "The methods below only matter if you also need to shape the answers' format.")
    st.info(rec["summary"])
    table = pd.DataFrame([{"rank": i + 1, "method": a["method"], "score": a["score"], "verdict": verdict(a),
                           "memory / GPU": fmt_bytes((a["estimate"] or {}).get("memory", {}).get("total")),
                           "time": fmt_hours(((a["estimate"] or {}).get("time") or {}).get("seconds")),
                           "cost (USD)": (a["estimate"] or {}).get("cost_usd")}
                          for i, a in enumerate(rec["recommendations"])])
    st.dataframe(table, hide_index=True, width="stretch", key="rec_table")
    for a in rec["recommendations"]:
        with st.container(border=True):
            icon = {"fits": "✅", "over budget": "💸", "does not fit": "⛔"}[verdict(a)]
            st.markdown(f"#### {icon} {a['method']} · score {a['score']:.2f} · {verdict(a)}"
                        + (f" · student {a['model']}" if a["method"] == "distillation" else ""))
            if a["settings"]:
                st.caption("Settings: " + ", ".join(f"{k}={v}" for k, v in a["settings"].items()))
            if (a["estimate"] or {}).get("calibrated"):
                st.caption(f"⚙️ Estimate {a['estimate']['calibrated']}.")
            for r in a["reasons"]:
                with st.expander(f"{'➕' if r['effect'] == '+' else '➖'} [{r['criterion']}] {r['text']}"):
                    st.markdown(explain(r["criterion"]))
            for c in a["caveats"]:
                st.markdown(f"⚠️ {c}")


def render_charts(answers: dict, rec: dict, gpu) -> None:
    ranked = [a for a in rec["recommendations"] if a["estimate"]]
    if not ranked:
        st.error("No method could be estimated for this model.")
        return
    st.markdown("**Memory per GPU at each method's chosen settings** (dashed: the GPU's memory)")
    parts = [row for a in ranked for row in memory_rows(a["method"], a["estimate"])]
    fig = px.bar(pd.DataFrame(parts), x="method", y="GiB", color="component")
    fig.add_hline(y=gpu.memory_bytes / GIB, line_dash="dash", annotation_text=f"{gpu.name}")
    st.plotly_chart(fig, key="memory_chart")

    st.markdown("**Time and cost against data size**")
    epochs = st.slider("Epochs", 1, 10, int(answers.get("epochs", 2)), key="chart_epochs")
    base_n = answers["num_examples"]
    sizes = sorted({max(1, int(base_n * f)) for f in (0.25, 0.5, 1, 2, 4, 8)})
    spec = load_model(answers["model"])
    rows = []
    for a in ranked:
        if a["method"] == "distillation":
            continue  # its student differs: shown in the table above
        rows += time_cost_curve(spec, a["method"], a["settings"], gpu, sizes, epochs, answers["avg_tokens_per_example"])
    frame = pd.DataFrame(rows)
    left, right = st.columns(2)
    left.plotly_chart(px.line(frame, x="examples", y="hours", color="method", markers=True, log_x=True),
                      key="time_chart")
    if frame["cost_usd"].notna().any():
        right.plotly_chart(px.line(frame, x="examples", y="cost_usd", color="method", markers=True, log_x=True),
                           key="cost_chart")

    st.markdown("**What if?** Change one method's settings and see memory, time and cost move.")
    methods = [a["method"] for a in ranked if a["method"] != "distillation"]
    method = st.selectbox("Method", methods, key="whatif_method")
    base = next(a for a in ranked if a["method"] == method)["settings"]
    c1, c2, c3 = st.columns(3)
    def choices(values, current):  # the current setting is always one of the slider's stops
        return sorted(set(values) | {current})

    changes = {
        "batch_size": int(c1.select_slider("Micro-batch", choices([1, 2, 4, 8, 16, 32, 64], base["batch_size"]),
                                           value=base["batch_size"], key="wi_batch")),
        "seq_len": int(c2.select_slider("Sequence length", choices([128, 256, 512, 1024, 2048, 4096, 8192, 16384],
                                                                   base["seq_len"]),
                                        value=base["seq_len"], key="wi_seq")),
        "gradient_checkpointing": c3.checkbox("Gradient checkpointing", base["gradient_checkpointing"], key="wi_ckpt"),
        "precision": c1.radio("Precision", ("bf16", "fp16", "fp32"), horizontal=True, key="wi_precision",
                              index=("bf16", "fp16", "fp32").index(base["precision"])),
        "num_gpus": int(c2.number_input("GPUs", 1, 1024, base["num_gpus"], key="wi_gpus")),
    }
    if method in ("lora", "qlora"):
        changes["lora_rank"] = int(c3.select_slider("LoRA rank", choices([4, 8, 16, 32, 64, 128, 256],
                                                                         base.get("lora_rank", 16)),
                                                    value=base.get("lora_rank", 16), key="wi_rank"))
    if changes["num_gpus"] > 1:
        changes["sharding"] = c3.selectbox("Sharding", ("none", "zero1", "zero2", "zero3", "fsdp"), key="wi_shard")
    if method == "qlora" and changes["precision"] == "fp32":
        st.error("QLoRA computes in 16 bits: choose bf16 or fp16.")
        return
    try:
        est = what_if(spec, method, base, gpu, **changes)
    except InputError as exc:
        st.error(str(exc))
        return
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Memory / GPU", fmt_bytes(est["memory"]["total"]), "fits" if est["fits"] else "does not fit",
              delta_color="normal" if est["fits"] else "inverse")
    m2.metric("Peak at", est["memory"]["peak_phase"].replace("_", " "))
    m3.metric("Time", fmt_hours(est["time"]["seconds"]))
    m4.metric("Cost", "—" if est["cost_usd"] is None else f"${est['cost_usd']:,.2f}")
    st.caption(f"⚙️ Estimate {est['calibrated']}." if est.get("calibrated") else
               "Default efficiency: run a trial on this GPU to calibrate time and overhead.")
    fig = px.bar(pd.DataFrame(memory_rows(method, est)), x="component", y="GiB")
    fig.add_hline(y=gpu.memory_bytes / GIB, line_dash="dash")
    st.plotly_chart(fig, key="whatif_chart")
    exact_check(spec, method, est)


def exact_check(spec, method: str, est: dict) -> None:
    """Runs one real training step of these settings on fake tensors (no memory used) on request."""
    from tuners.dryrun import SUPPORTED

    if method not in SUPPORTED:
        st.caption(f"The exact check covers {', '.join(SUPPORTED)}; for {method} launch a trial run.")
        return
    if not st.button("Exact check: run one step on fake tensors", key="exact_check",
                     help="Builds the real model and runs a real step without allocating memory; seconds to a "
                          "minute for billions of parameters."):
        return
    from estimators.setup import TrainSetup
    from tuners.dryrun import dry_run  # imports torch: only now

    setup = TrainSetup(**{k: v for k, v in est["setup"].items() if k in TrainSetup.__dataclass_fields__})
    try:
        with st.spinner("Running one step on fake tensors…"):
            d = dry_run(spec.config, setup)
    except InputError as exc:
        st.error(str(exc))
        return
    diff = est["memory"]["peak_allocated"] / d["peak_allocated"] - 1
    st.success(f"Exact peak allocated: {fmt_bytes(d['peak_allocated'])} at {d['peak_phase']} "
               f"({d['seconds']:.1f} s). The estimate above differs by {diff:+.1%}.")
