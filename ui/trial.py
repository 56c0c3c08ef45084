"""Trial runs (launch, live progress, cancel, estimated vs measured, downloads) and the run history."""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from estimators.errors import InputError
from estimators.plan import Plan
from tuners import launch, store
from ui.results import fmt_bytes, fmt_hours, fmt_usd, label, plans

HAS_GPU = shutil.which("nvidia-smi") is not None  # a cheap hint; the runner decides for itself
SAMPLE_ROWS = [{"input": f"Rewrite in our brand voice: order {i} has shipped.",
                "output": f"Great news! Your order #{i} is on its way to you."} for i in range(64)]


def sample_data() -> str:
    path = store.home() / "sample-brand-voice.jsonl"
    if not path.exists():
        path.write_text("\n".join(json.dumps(r) for r in SAMPLE_ROWS))
    return str(path)


def _zip(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder))
    return buf.getvalue()


def render_launch(answers: dict, rec: dict) -> None:
    by_method = plans(rec)
    if not by_method:
        st.error("No method could be estimated for this model, so there is no plan to try.")
        return
    c1, c2, c3 = st.columns(3)
    method = c1.selectbox("Method", list(by_method), format_func=label, key="trial_method")
    plan = by_method[method]
    edited = st.session_state.get("whatif_plan")
    if edited and edited["method"] == method and Plan.from_json(edited).settings != plan.settings:
        if c1.radio("Plan", ("as recommended", "as edited in What if"), key="trial_plan_source") != "as recommended":
            plan = Plan.from_json(edited)
    source = c2.radio("Model", ("Questionnaire model, random weights", "Local model folder"), key="trial_source")
    folder, scale = "", False
    if source == "Local model folder":
        folder = c2.text_input("Folder with config.json and weights", key="trial_folder").strip()
    else:
        scale = c2.checkbox("Scale down for this machine (fewer, narrower layers)", value=not HAS_GPU,
                            key="trial_scale")
    steps = int(c3.number_input("Trial steps", 3, 10000, 10, key="trial_steps"))
    s = plan.settings
    with c3.expander("Adjust for this machine (changes the plan for this run)"):
        batch = int(st.number_input("Trial micro-batch", 1, 65536, s["batch_size"], key=f"trial_batch_{method}"))
        seq_len = int(st.number_input("Trial sequence length", 16, 10_000_000, s["seq_len"], key=f"trial_seq_{method}"))
    data = answers.get("data_path") or sample_data()
    c1.caption(f"Data: {Path(data).name}" + ("" if answers.get("data_path") else " (a built-in sample; upload yours "
                                                                                    "in the questionnaire)"))
    st.caption(f"Runs the plan: {label(method)}, micro-batch {batch} × {seq_len} tokens, {s['precision']}"
               + (", gradient checkpointing" if s["gradient_checkpointing"] else "") + f", {s['optimizer']}.")
    if st.button("Launch trial run", type="primary", key="trial_launch"):
        if source == "Local model folder" and not folder:
            st.error("Give the model folder's path, or use the questionnaire model with random weights.")
            return
        try:
            run_plan = plan.edit(settings={"batch_size": batch, "seq_len": seq_len}, data={"path": data},
                                 model=folder or None)
        except InputError as exc:
            st.error(str(exc))
            return
        run_id, _ = launch.start({"plan": run_plan.to_json(), "steps": steps, "scale_down": scale})
        st.session_state["run_id"] = run_id
        st.success(f"Started run {run_id}; it keeps running if you close this tab.")


def render_run(run_id: str, live: bool) -> None:
    row = store.get(run_id)
    if row is None:
        st.error(f"Run {run_id} is not in the history.")
        return
    events = store.events(row["run_dir"])
    steps = [e for e in events if e["event"] == "step"]
    total = (row["request"] or {}).get("steps") or 1
    st.markdown(f"**Run {run_id}** · {label(row['method'])} · {row['status']} · {row['device'] or 'starting…'}")
    if row["status"] in ("queued", "running"):
        st.progress(len(steps) / total, text=f"step {len(steps)} of {total}")
        if live and st.button("Cancel run", key=f"cancel_{run_id}"):
            launch.cancel(run_id)
            st.warning("Cancelling…")
    if steps:
        frame = pd.DataFrame(steps)
        left, right = st.columns(2)
        left.plotly_chart(px.line(frame, x="step", y="loss", markers=True, title="Loss"), key=f"loss_{run_id}")
        if frame["memory"].notna().any():
            frame["memory MiB"] = frame["memory"] / 1024**2
            right.plotly_chart(px.line(frame, x="step", y="memory MiB", markers=True, title="Peak memory so far"),
                               key=f"mem_{run_id}")
    if row["status"] in ("failed", "cancelled"):
        st.error(f"Run {row['status']}: {row['error']}")
    if row["status"] == "completed":
        render_comparison(row)


def render_comparison(row: dict) -> None:
    e, m, x = row["estimate"], row["measured"], row["extrapolated"]
    est_tps = e["throughput"]["tokens_per_second"]
    table = pd.DataFrame([
        {"quantity": "peak allocated", "estimated": fmt_bytes(e["memory"]["peak_allocated"]),
         "measured": fmt_bytes(m["peak_allocated"]),
         "measured / estimated": round(m["peak_allocated"] / e["memory"]["peak_allocated"], 3)},
        {"quantity": "tokens per second", "estimated": "—" if not est_tps else f"{est_tps:,.0f}",
         "measured": f"{m['tokens_per_second']:,.0f}",
         "measured / estimated": round(m["tokens_per_second"] / est_tps, 3) if est_tps else None},
        {"quantity": "whole run time", "estimated": fmt_hours(e["time"]["seconds"]), "measured": fmt_hours(x["seconds"]),
         "measured / estimated": None},
        {"quantity": "whole run cost", "estimated": fmt_usd(e["cost_usd"]), "measured": fmt_usd(x["cost_usd"]),
         "measured / estimated": None},
    ])
    st.markdown("**Estimated vs measured**")
    st.dataframe(table, hide_index=True, key=f"cmp_{row['id']}")
    bars = pd.DataFrame([{"what": "estimated", "MiB": e["memory"]["peak_allocated"] / 1024**2},
                         {"what": "measured", "MiB": m["peak_allocated"] / 1024**2}])
    st.plotly_chart(px.bar(bars, x="what", y="MiB", title="Peak allocated memory"), key=f"cmpchart_{row['id']}")
    run_dir = Path(row["run_dir"])
    c1, c2 = st.columns(2)
    if (run_dir / "adapter").is_dir():
        c1.download_button("Download adapter (zip)", _zip(run_dir / "adapter"), f"{row['id']}-adapter.zip",
                           key=f"dl_adapter_{row['id']}")
    if (run_dir / "project").is_dir():
        c2.download_button("Download the plan as a runnable project (zip)", _zip(run_dir / "project"),
                           f"{row['id']}-project.zip", key=f"dl_project_{row['id']}",
                           help="train.py, plan.json, launch.sh, requirements.txt, README.md — the plan you chose, "
                                "not this machine's trial settings")


def render_current() -> None:
    run_id = st.session_state.get("run_id")
    if not run_id:
        return
    row = store.get(run_id)
    if row and row["status"] in ("queued", "running"):
        @st.fragment(run_every=1.0)
        def live():
            render_run(run_id, live=True)

        live()
    else:
        render_run(run_id, live=False)


def render_history() -> None:
    rows = store.list_runs(200)
    if not rows:
        st.caption("No runs yet. Launch one above; runs are kept across app restarts.")
        return
    table = pd.DataFrame([{"run": r["id"], "status": r["status"], "method": label(r["method"] or ""),
                           "model": Path(str(r["model"])).name, "device": r["device"],
                           "estimated peak": fmt_bytes((r["estimate"] or {}).get("memory", {}).get("peak_allocated")),
                           "measured peak": fmt_bytes((r["measured"] or {}).get("peak_allocated")),
                           "error": r["error"] or ""} for r in rows])
    st.dataframe(table, hide_index=True, key="history_table")
    chosen = st.selectbox("Open a run", [r["id"] for r in rows], key="history_open")
    if chosen:
        render_run(chosen, live=False)
