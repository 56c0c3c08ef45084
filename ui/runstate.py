"""A run comes back with its questionnaire: the answers are stored with the run when it is launched,
and a reload (or a link) with ``?run=ID`` restores them and opens the Trial view on that run.

Runs launched from the command line have no stored answers; their plan gives the model, GPU, data and
method instead. Widgets read their first value through ``initial(key, default)``; nothing else here
touches a widget."""
from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from estimators.catalog import gpus, model_configs
from tuners import store

ANSWER_KEYS = ("task", "goals", "data_mode", "data_file", "domain", "model_mode", "model", "local_folders",
               "local_model", "model_folder", "model_config", "gpu_mode", "gpu", "custom_name", "custom_mem",
               "custom_tflops", "custom_price", "num_gpus", "host_memory", "max_hours", "max_cost", "num_tasks", "priority",
               "num_examples", "avg_tokens", "trial_method", "trial_plan_source", "trial_source", "trial_folder",
               "trial_scale", "trial_steps", "trial_nproc", "requests_per_day", "tokens_in", "tokens_out",
               "serving_gpu", "p50_tpot_ms", "horizon_months", "retunes")
TRIAL_PREFIXES = ("trial_batch_", "trial_seq_")


def initial(key: str, default):
    """The first value of widget ``key``: the restored run's answer, else ``default``."""
    return st.session_state.get("_restored", {}).get(key, default)


def snapshot(data_name: str | None) -> dict:
    """The questionnaire and trial answers of this session, to store with a run."""
    state = st.session_state
    out = {k: state[k] for k in ANSWER_KEYS if k in state}
    out.update({k: state[k] for k in list(state.keys()) if isinstance(k, str) and k.startswith(TRIAL_PREFIXES)})
    out = json.loads(json.dumps(out, default=lambda v: None))  # plain JSON only
    if data_name:
        out["_data_name"] = data_name
    return out


def _from_plan(plan: dict) -> dict:
    """Answers for a run launched without the app (its plan's model, GPU, data and method)."""
    out = {"trial_method": plan.get("method")}
    model = str(plan.get("model") or "")
    if model.lower() in model_configs():
        out.update(model_mode="Catalog", model=model.lower())
    elif Path(model).is_dir():
        out.update(model_mode="Local folder", model_folder=model)
    h, d = plan.get("hardware") or {}, plan.get("data") or {}
    if h.get("gpu") in gpus():
        out.update(gpu_mode="Catalog", gpu=h["gpu"])
    out["num_gpus"] = int(h.get("num_gpus") or 1)
    if d.get("path"):
        out.update(data_mode="File path", data_file=d["path"])
    elif d.get("num_examples"):
        out.update(num_examples=int(d["num_examples"]), avg_tokens=int(d.get("tokens_per_example") or 300))
    return out


def restore_from_url() -> None:
    """Once per session: a ``?run=ID`` in the address restores that run's answers and opens its view."""
    run_id = st.query_params.get("run")
    if not run_id or st.session_state.get("_restored_run") == run_id:
        return
    st.session_state["_restored_run"] = run_id
    row = store.get(run_id)
    if row is None:
        st.session_state["_restore_problem"] = f"Run {run_id} (named in the address) is not in this machine's history."
        return
    request = row["request"] or {}
    plan = request.get("plan") or {}
    answers = dict(request.get("answers") or _from_plan(plan))
    data_path = (plan.get("data") or {}).get("path")
    if answers.get("data_mode") == "Upload a file" and data_path:
        # The upload moved into the run's folder at launch; the questionnaire uses it from there.
        st.session_state["_restored_upload"] = {"path": data_path, "name": answers.get("_data_name"), "run": run_id}
    st.session_state["_restored"] = {**answers, "view": "Trial run"}
    st.session_state["run_id"] = run_id
