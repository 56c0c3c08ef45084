"""Hosting in the app (issue 24): the optional traffic questions, and the chart of cumulative cost
(tuning plus hosting) over the months per method, with each method's serving GPUs and latency."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from advisor.hosting import NOT_PRICED
from estimators.catalog import gpus
from estimators.methods import label
from ui.runstate import initial

APP_NOT_PRICED = ("Hosting was not priced: fill in \"Hosting (optional)\" in the sidebar (requests per day, prompt "
                  "and generated tokens) to rank by tuning plus hosting cost.")
"""The advisor's sentence in the app's words (it names the answer keys the CLI and API take)."""


def in_app_words(text: str) -> str:
    return text.replace(NOT_PRICED, APP_NOT_PRICED)


ANSWER_KEYS = ("requests_per_day", "tokens_in", "tokens_out", "peak_concurrency", "p50_tpot_ms", "serving_gpu",
               "horizon_months", "retunes")


def render_inputs(sb) -> dict:
    """The traffic questions in a sidebar expander; all None until a daily request count is given."""
    out = dict.fromkeys(ANSWER_KEYS)
    with sb.expander("Hosting (optional): traffic and horizon"):
        rpd = st.number_input("Requests per day, all tasks (0 = don't price hosting)", 0.0, 1e12, float(initial("requests_per_day", 0.0)), step=1000.0,
                              key="requests_per_day")
        if not rpd:
            return out
        out["requests_per_day"] = rpd
        out["tokens_in"] = int(st.number_input("Prompt tokens per request", 1, 10_000_000, int(initial("tokens_in", 500)), key="tokens_in"))
        out["tokens_out"] = int(st.number_input("Generated tokens per request", 1, 10_000_000, int(initial("tokens_out", 200)), key="tokens_out"))
        ids = ["(the tuning GPU)"] + list(gpus())
        chosen = initial("serving_gpu", ids[0])
        choice = st.selectbox("Serving GPU", ids, key="serving_gpu", index=ids.index(chosen) if chosen in ids else 0)
        out["serving_gpu"] = None if choice == ids[0] else choice
        tpot = st.number_input("Target ms per output token, median (0 = none)", 0.0, 60_000.0, float(initial("p50_tpot_ms", 0.0)), key="p50_tpot_ms")
        out["p50_tpot_ms"] = tpot or None
        out["horizon_months"] = float(st.number_input("Months of hosting", 1, 600, int(initial("horizon_months", 12)), key="horizon_months"))
        out["retunes"] = int(st.number_input("Tuning runs per task over that time", 1, 10_000, int(initial("retunes", 1)), key="retunes"))
    return out


def render_chart(rec: dict) -> None:
    """Cumulative tuning + hosting cost per method over the horizon, and the serving layout behind it."""
    st.subheader("Tuning plus hosting over time")
    hosting = rec.get("hosting") or {}
    if not hosting.get("priced"):
        st.caption(in_app_words(hosting.get("text") or NOT_PRICED))
        return
    rows, layout = [], []
    for a in rec["recommendations"]:
        t, s = a.get("total_cost"), ((a.get("estimate") or {}).get("serving") or {})
        if not t:
            continue
        rows += [{"month": m, "cumulative cost (USD)": usd, "method": label(a["method"])}
                 for m, usd in enumerate(t["cumulative_usd"])]
        g = s.get("gpus") or {}
        pay = t.get("payoff")
        layout.append({"method": label(a["method"]), "model served": a["model"],
                       "serving GPUs": f"{g.get('count', 0):,} × {g.get('name', '—')}"
                       + (f" (TP {g['tensor_parallel']})" if g.get("tensor_parallel", 1) > 1 else ""),
                       "ms / output token": s.get("tpot_ms"), "$ / month": t["usd_per_month"],
                       "tuning (all tasks, all runs)": t["tuning_usd"], "total": t["usd"],
                       "cheaper from month": None if not pay else pay["month"]})
    small = hosting.get("smaller_base")
    if small:  # C4.1: the smaller model, prompt-tuned, beside the ranked methods
        name = f"{label(small['method'])} ({small['model']})"
        rows += [{"month": m, "cumulative cost (USD)": usd, "method": name}
                 for m, usd in enumerate(small["total_cost"]["cumulative_usd"])]
        g = small["serving"]["gpus"]
        layout.append({"method": name, "model served": small["model"],
                       "serving GPUs": f"{g['count']:,} × {g['name']}", "ms / output token": small["serving"]["tpot_ms"],
                       "$ / month": small["total_cost"]["usd_per_month"],
                       "tuning (all tasks, all runs)": small["total_cost"]["tuning_usd"],
                       "total": small["total_cost"]["usd"], "cheaper from month": None})
    if not rows:
        st.caption(hosting.get("text") or "Hosting could not be priced.")
        return
    st.caption(hosting["text"])
    fig = px.line(pd.DataFrame(rows), x="month", y="cumulative cost (USD)", color="method", markers=True,
                  log_y=True)
    st.plotly_chart(fig, key="hosting_chart")
    st.dataframe(pd.DataFrame(layout), hide_index=True, width="stretch", key="hosting_table",
                 column_config={c: st.column_config.NumberColumn(format="$%.0f")
                                for c in ("$ / month", "tuning (all tasks, all runs)", "total")})
