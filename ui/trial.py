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

from estimators.calibration import time_ratio_note
from estimators.errors import InputError
from estimators.plan import Plan
from tuners import launch, store
from tuners.export import user_file_name
from ui import access, runstate
from ui.results import fmt_bytes, fmt_hours, fmt_usd, label, plain, plans, setting_value
from ui.runstate import initial

HAS_GPU = shutil.which("nvidia-smi") is not None  # a cheap hint; the runner decides for itself
SAMPLE_ROWS = [{"input": f"Rewrite in our brand voice: order {i} has shipped.",
                "output": f"Great news! Your order #{i} is on its way to you."} for i in range(64)]


def sample_data() -> str:
    path = store.home() / "sample-brand-voice.jsonl"
    if not path.exists():
        store.write_private(path, "\n".join(json.dumps(r) for r in SAMPLE_ROWS))  # this user's only (0600)
    return str(path)


def _zip(folder: Path, note: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder))
        if note:
            z.writestr("STAND-IN-README.txt", note)
    return buf.getvalue()


STAND_IN_NOTE = """This adapter was trained by a Tuning Advisor trial on a stand-in: {what}.
It checks the adapter's format and the training loop; it is not a model to use. Its
adapter_config.json names the stand-in's temporary folder as base_model_name_or_path, which no
longer exists. To train the adapter you want, run the project zip's train.py on your model.
"""


def stand_in_of(res: dict) -> str | None:
    """What a finished trial trained on when it was not the real model: random weights, scaled down."""
    random = any(n.startswith("random weights") for n in res.get("notes", []))
    scaled = any(a.startswith("scaled down") for a in res.get("adaptations", []))
    if not (random or scaled):
        return None
    return ("a scaled-down copy of the architecture" if scaled else "the architecture") + \
        (" with random weights" if random else "")


def _pick(options: list, key: str, default):
    value = initial(key, default)
    return options.index(value) if value in options else (options.index(default) if default in options else 0)


def stand_in(plan: Plan, scale: bool) -> str:
    """What a trial of ``plan`` will run here, said before launch."""
    from estimators.catalog import load_model
    from estimators.spec import spec_from_config
    from tuners.models import scale_down

    full = load_model(plan.model)
    if not scale:
        where = "this machine's GPU" if HAS_GPU else "this machine's CPU (no CUDA GPU found)"
        weights = "its real weights" if Path(plan.model).expanduser().is_dir() else "random weights"
        return (f"Runs the plan's own model, {full.id} ({full.total_params / 1e9:,.2f}B parameters, {weights}), on "
                f"{where}.")
    try:
        small = spec_from_config(scale_down(full.config), model_id=full.id)
    except InputError as exc:
        return f"Scaling down is not possible for this model: {exc}"
    return (f"This machine {'has a GPU, but ' if HAS_GPU else 'has no CUDA GPU, so '}the trial runs a scaled-down "
            f"stand-in of {full.id}: {small.layers} layers, hidden {small.hidden}, vocab {small.vocab:,}, "
            f"{small.total_params / 1e6:,.1f}M parameters (the plan's model has {full.total_params / 1e9:,.2f}B), "
            f"with the plan's method and settings. It checks the memory model at these shapes and the training "
            f"loop; it does not measure a GPU's speed. Random weights: the loss is not meaningful.")


def _refused(folder: str) -> str | None:
    """Why the app may not read this model folder (network mode, outside the allowed roots), else None."""
    try:
        access.checked_path(folder, "model folders") if folder else None
    except InputError as exc:
        return str(exc)
    return None


def render_launch(answers: dict, rec: dict) -> None:
    by_method = plans(rec)
    if not by_method:
        st.error("No method could be estimated for this model, so there is no plan to try.")
        return
    c1, c2, c3 = st.columns(3)
    methods = list(by_method)
    method = c1.selectbox("Method", methods, format_func=label, key="trial_method",
                          index=_pick(methods, "trial_method", methods[0]))
    plan = by_method[method]
    edited = st.session_state.get("whatif_plan")
    if edited and edited["method"] == method and Plan.from_json(edited).settings != plan.settings:
        sources = ["as recommended", "as edited in What if"]
        if c1.radio("Plan", sources, key="trial_plan_source",
                    index=_pick(sources, "trial_plan_source", sources[0])) != "as recommended":
            plan = Plan.from_json(edited)
    models = ["Questionnaire model, random weights", "Local model folder"]
    source = c2.radio("Model", models, key="trial_source", index=_pick(models, "trial_source", models[0]))
    folder, scale = "", False
    if source == "Local model folder":
        folder = c2.text_input("Folder with config.json and weights", key="trial_folder",
                               value=initial("trial_folder", "")).strip()
        refused = _refused(folder)
        if refused:  # the questionnaire's allow-list, said before launch
            st.error(refused)
            return
    else:
        scale = c2.checkbox("Scale down for this machine (fewer, narrower layers)", key="trial_scale",
                            value=bool(initial("trial_scale", not HAS_GPU)))
    steps = int(c3.number_input("Trial steps", 3, 10000, int(initial("trial_steps", 10)), key="trial_steps"))
    nproc = int(c3.number_input("Processes (ranks)", 1, 64, int(initial("trial_nproc", 1)), key="trial_nproc",
                                help="Run on N ranks through torchrun with the plan's sharding (DDP, or FSDP2 when the "
                                     "plan shards): N GPUs, or on a CPU machine N processes over gloo."))
    s = plan.settings
    with c3.expander("Adjust for this machine (this run only; the exported plan keeps its settings)"):
        batch = int(st.number_input("Trial micro-batch", 1, 65536, int(initial(f"trial_batch_{method}", s["batch_size"])),
                                    key=f"trial_batch_{method}"))
        seq_len = int(st.number_input("Trial sequence length", 16, 10_000_000,
                                      int(initial(f"trial_seq_{method}", s["seq_len"])), key=f"trial_seq_{method}"))
    data = answers.get("data_path") or sample_data()
    name = answers.get("data_name") or user_file_name(data)
    c1.caption(f"Data: {name}" + ("" if answers.get("data_path") else " (a built-in sample; upload yours "
                                                                       "in the questionnaire)"))
    st.caption(f"Runs the plan: {label(method)}, micro-batch {batch} × {seq_len} tokens, {s['precision']}"
               + (", gradient checkpointing" if s["gradient_checkpointing"] else "") + f", {setting_value('optimizer', s['optimizer'])}.")
    if not folder:
        st.info(stand_in(plan, scale))
    checks = []  # (warning, checkbox label, key): each must be ticked before Launch
    e = plan.estimate or {}
    if e.get("fits") is False:
        gpu = e.get("gpu") or {}
        checks.append((f"This plan does not fit the chosen GPU: it needs {fmt_bytes(e['memory']['total'])} per GPU and "
                       f"{gpu.get('name', 'the GPU')} has {fmt_bytes(gpu.get('memory_bytes'))}. A trial here checks the "
                       "memory model and the loop, but the plan as it stands would not run there.",
                       "Run the trial anyway", "trial_nofit"))
    short = None if (scale or source == "Local model folder") else launch.memory_shortfall(plan, nproc)
    if short:
        checks.append((f"This trial may not fit this machine: {short}. Scale down, or launch anyway.", "Launch anyway",
                       "trial_force"))
    request = {"plan": plan.edit(data={"path": data}).to_json(), "steps": steps, "scale_down": scale, "nproc": nproc,
               "trial_settings": {"batch_size": batch, "seq_len": seq_len}, "answers": runstate.snapshot(name)}
    _launch_guard(checks, request, folder, source, nproc)


def _launch_guard(checks: list, request: dict, folder: str, source: str, nproc: int) -> None:
    """The questions before Launch and the button. The live-run question follows the store: while runs
    are live this part re-checks every 2 s, so a cancel (here, in History, or in another tab) clears it."""
    live_at_render = bool(store.live_runs())

    @st.fragment(run_every=2.0 if live_at_render else None)
    def guard():
        live = store.live_runs()
        if live_at_render and not live:
            st.rerun()  # the run ended: the whole view again (no warning, Launch enabled)
        confirmed = True
        for text, box, key in checks:
            st.warning(text, icon=":material/warning:")
            confirmed = st.checkbox(box, key=key) and confirmed
        if live:
            r = live[0]
            st.warning(f"Run {r['id']} ({label(r['method'] or '')}) is still running on this machine: a second run "
                       "shares its CPU and memory, slows both and skews both measurements.", icon=":material/warning:")
            confirmed = st.checkbox("Start another run anyway", key="trial_confirm") and confirmed
        if not st.button("Launch trial run", type="primary", key="trial_launch", disabled=not confirmed):
            return
        if source == "Local model folder" and not folder:
            st.error("Give the model folder's path, or use the questionnaire model with random weights.")
            return
        try:
            plan = Plan.from_json(request["plan"])
            run_plan = plan.edit(model=access.checked_path(folder, "model folders") if folder else None,
                                 hardware={"num_gpus": nproc} if nproc > 1 and plan.hardware["num_gpus"] == 1 else None)
            run_id, _ = launch.start({**request, "plan": run_plan.to_json()})
        except InputError as exc:
            st.error(plain(exc))
            return
        st.session_state["run_id"] = st.session_state["_restored_run"] = run_id
        st.query_params["run"] = run_id  # a reload (or this link in another tab) comes back to this run
        st.rerun()

    guard()


def render_run(run_id: str, live: bool) -> None:
    row = store.get(run_id)
    if row is None:
        st.error(f"Run {run_id} is not in the history.")
        return
    events = store.events(row["run_dir"])
    steps = [e for e in events if e["event"] == "step"]
    total = (row["request"] or {}).get("steps") or 1
    st.markdown(f"**Run {run_id}** · {label(row['method'] or '')} · {row['status']} · "
                f"{row['device'] or 'starting…'}")
    if row["status"] in ("queued", "running"):
        st.progress(min(len(steps) / total, 1.0),
                    text=f"step {len(steps)} of {total}" if steps else "starting: reading data, building the model…")
        if live and st.button("Cancel run", key=f"cancel_{run_id}"):
            launch.cancel(run_id)
            st.info("Cancelling…", icon=":material/hourglass_top:")
    if steps:
        frame = pd.DataFrame(steps)
        left, right = st.columns(2)
        left.plotly_chart(px.line(frame, x="step", y="loss", markers=True, title="Loss"), key=f"loss_{run_id}")
        if frame["memory"].notna().any():
            frame["memory MiB"] = frame["memory"] / 1024**2
            right.plotly_chart(px.line(frame, x="step", y="memory MiB", markers=True, title="Peak memory so far"),
                               key=f"mem_{run_id}")
    if row["status"] == "cancelled" and store.CANCEL_REQUESTED in (row["error"] or ""):
        st.info(f"Run cancelled, as asked, after {len(steps)} of {total} steps.", icon=":material/cancel:")
    elif row["status"] in ("failed", "cancelled"):
        st.error(f"Run {row['status']}: {plain(row['error'])}")
    if row["status"] == "completed":
        render_comparison(row)


def _ratio(a, b) -> str:
    return f"{a / b:.2f}×" if a and b else "—"


def render_comparison(row: dict) -> None:
    e, m, x = row["estimate"], row["measured"], row["extrapolated"]
    res = launch.result(row["id"]) or {}
    cpu = (row["device"] or "").startswith("cpu")
    est_tps = e["throughput"]["tokens_per_second"]
    no_price = "— (no price for this device)" if cpu else "— (no price given)"
    table = pd.DataFrame([
        {"quantity": "peak allocated", "estimated": fmt_bytes(e["memory"]["peak_allocated"]),
         "measured": fmt_bytes(m["peak_allocated"]), "measured / estimated": _ratio(m["peak_allocated"],
                                                                                  e["memory"]["peak_allocated"])},
        {"quantity": "tokens per second", "estimated": f"{est_tps:,.0f}" if est_tps else "— (no device peak known)",
         "measured": f"{m['tokens_per_second']:,.0f}", "measured / estimated": _ratio(m["tokens_per_second"], est_tps)},
        {"quantity": "whole run time", "estimated": fmt_hours(e["time"]["seconds"]), "measured": fmt_hours(x["seconds"]),
         "measured / estimated": _ratio(x["seconds"], e["time"]["seconds"])},
        {"quantity": "whole run cost", "estimated": fmt_usd(e["cost_usd"]) if e["cost_usd"] is not None else no_price,
         "measured": fmt_usd(x["cost_usd"]) if x["cost_usd"] is not None else no_price,
         "measured / estimated": _ratio(x["cost_usd"], e["cost_usd"])},
    ])
    st.markdown("**Estimated vs measured**")
    st.dataframe(table, hide_index=True, key=f"cmp_{row['id']}")
    notes = list(res.get("adaptations", [])) + [n for n in res.get("notes", []) if n.startswith("random weights")]
    if cpu:
        notes.append("Tokens/s on a CPU: the estimate divides this CPU's measured matmul peak by the step's FLOPs at "
                     "a default efficiency (calibrated by each trial); small shapes reach less of the peak, so ratios "
                     "far from 1 at tiny sizes say little about a GPU.")
    ratio = m["tokens_per_second"] / est_tps if est_tps and m.get("tokens_per_second") else None
    why = time_ratio_note(ratio, e.get("calibrated"), cpu, (e.get("time") or {}).get("step_terms"))
    if why:  # outside 0.7-1.4x: say what the estimate rested on (issue 21)
        st.info(why[0].upper() + why[1:])
    for n in notes:
        st.caption(f"• {n[0].upper() + n[1:]}")
    bars = pd.DataFrame([{"what": "estimated", "MiB": e["memory"]["peak_allocated"] / 1024**2},
                         {"what": "measured", "MiB": m["peak_allocated"] / 1024**2}])
    st.plotly_chart(px.bar(bars, x="what", y="MiB", title="Peak allocated memory"), key=f"cmpchart_{row['id']}")
    run_dir = Path(row["run_dir"])
    c1, c2 = st.columns(2)
    if (run_dir / "adapter").is_dir():
        what = stand_in_of(res)
        c1.download_button("Download the stand-in's adapter (zip, format check only)" if what else
                           "Download adapter (zip)",
                           _zip(run_dir / "adapter", STAND_IN_NOTE.format(what=what) if what else None),
                           f"{row['id']}-{'stand-in-' if what else ''}adapter.zip", key=f"dl_adapter_{row['id']}",
                           help=f"Trained on {what}: it shows the adapter's files and format, it is not a model to "
                                "use." if what else "PEFT's format, for the model you trained")
        if what:
            c1.caption(f"This adapter was trained on {what}, not on your model: use it to check the format, and the "
                       "project to train the real one.")
    if (run_dir / "project").is_dir():
        c2.download_button("Download the plan as a runnable project (zip)", _zip(run_dir / "project"),
                           f"{row['id']}-project.zip", key=f"dl_project_{row['id']}",
                           help="train.py, plan.json, launch.sh, requirements.txt, README.md — the plan you chose, "
                                "not this machine's trial settings")


def current_run_id() -> str | None:
    """This tab's run; after a reload the run in the address (?run=ID); else a run still live here."""
    run_id = st.session_state.get("run_id") or st.query_params.get("run")
    if not run_id:
        live = store.live_runs()
        run_id = live[0]["id"] if live else None
    return run_id


def render_current() -> None:
    run_id = current_run_id()
    if not run_id:
        return
    row = store.get(run_id)
    if row and row["status"] in ("queued", "running"):
        @st.fragment(run_every=1.0)
        def live():
            fresh = store.get(run_id)
            if fresh and fresh["status"] not in ("queued", "running"):
                st.rerun()  # it ended (or was cancelled, here or elsewhere): the whole view, with its results
            render_run(run_id, live=True)

        live()
    else:
        render_run(run_id, live=False)


def _duration(r: dict) -> str:
    import time

    end = time.time() if r["status"] in ("queued", "running") else r["updated"]
    return fmt_hours(max(0.0, end - r["created"])) if end - r["created"] >= 60 else f"{max(0.0, end - r['created']):.0f} s"


def _status(r: dict) -> str:
    if r["status"] != "running":
        return r["status"]
    steps = sum(e["event"] == "step" for e in store.events(r["run_dir"]))
    return f"running (step {steps} of {(r['request'] or {}).get('steps', '?')})"


def history_rows(rows: list[dict]) -> pd.DataFrame:
    import time

    return pd.DataFrame([{
        "run": r["id"], "status": _status(r), "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"])),
        "duration": _duration(r), "device": r["device"] or "—", "method": label(r["method"] or ""),
        "model": Path(str(r["model"])).name,
        "estimated peak": fmt_bytes((r["estimate"] or {}).get("memory", {}).get("peak_allocated")),
        "measured peak": fmt_bytes((r["measured"] or {}).get("peak_allocated")),
        "tokens/s": f"{r['measured']['tokens_per_second']:,.0f}" if r["measured"] else "—",
        "error": plain(r["error"]) if r["error"] else ""} for r in rows])


def compare_rows(rows: list[dict]) -> pd.DataFrame:
    """Two (or more) runs side by side: what they ran (settings, steps) and what they measured (loss)."""
    from ui.results import SETTING_LABELS

    frame = history_rows(rows).set_index("run").T
    extra = {}
    for r in rows:
        request = r["request"] or {}
        plan = request.get("plan") or {}
        settings = {**(plan.get("settings") or {}), **(request.get("trial_settings") or {})}
        losses = (r["measured"] or {}).get("losses") or [e["loss"] for e in store.events(r["run_dir"])
                                                          if e["event"] == "step"]
        steps = sum(e["event"] == "step" for e in store.events(r["run_dir"]))
        col = {"steps": f"{steps} of {request.get('steps', '?')}", "first loss": f"{losses[0]:.4f}" if losses else "—",
               "last loss": f"{losses[-1]:.4f}" if losses else "—",
               "scaled down": "yes" if request.get("scale_down") else "no", "processes": str(request.get("nproc", 1))}
        for k, v in settings.items():
            col[SETTING_LABELS.get(k, (k.replace("_", " "), ""))[0]] = setting_value(k, v)
        extra[r["id"]] = col
    return pd.concat([frame, pd.DataFrame(extra)]).fillna("—").astype(str)


def render_history() -> None:
    rows = store.list_runs(200)
    if not rows:
        st.caption("No runs yet. Launch one in Trial run; runs are kept across app restarts.")
        return

    @st.fragment(run_every=2.0 if any(r["status"] in ("queued", "running") for r in rows) else None)
    def table():
        fresh = store.list_runs(200)
        st.dataframe(history_rows(fresh), hide_index=True, key="history_table",
                     column_config={"error": st.column_config.TextColumn("error", width="large"),
                                    "status": st.column_config.TextColumn("status", width="medium")})
        for r in fresh:  # the full text of each error, never cut by the table's cell
            if r["error"] and not (r["status"] == "cancelled" and store.CANCEL_REQUESTED in r["error"]):
                st.caption(f"{r['id']}: {plain(r['error'])}")
        live = [r["id"] for r in fresh if r["status"] in ("queued", "running")]
        if live:
            c1, c2 = st.columns([3, 1])
            chosen = c1.selectbox("Live run", live, key="history_live")
            if c2.button("Cancel this run", key="history_cancel"):
                launch.cancel(chosen)
                st.info(f"Cancelling {chosen}…", icon=":material/hourglass_top:")

    table()
    pair = st.multiselect("Compare two runs side by side", [r["id"] for r in rows], max_selections=2,
                          key="history_compare")
    if len(pair) == 2:
        st.dataframe(compare_rows([store.get(pair[0]), store.get(pair[1])]), key="history_pair", height="content")
    chosen = st.selectbox("Open a run", [r["id"] for r in rows], key="history_open")
    if chosen:
        render_run(chosen, live=False)
