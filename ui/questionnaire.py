"""The questionnaire: every answer has a default, so a recommendation shows without touching anything."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import streamlit as st

from advisor.answers import DISTANCES, GOAL_HELP, GOALS, PRIORITIES, TASKS
from estimators.catalog import catalog_rows, custom_gpu, gpus
from estimators.errors import InputError, parse_json
from tuners import store
from tuners.export import user_file_name
from ui import access, hosting
from ui.runstate import initial


@st.cache_data
def model_ids() -> list[str]:
    return [r["id"] for r in catalog_rows()]


@st.cache_data
def model_labels() -> dict[str, str]:
    """What the model picker shows and searches: the id, the family, the size, and MoE where it is one,
    so words find a model ("llama 8b", "qwen3 moe")."""
    out = {}
    for r in catalog_rows():
        size = r["params"] / 1e9
        moe = " · MoE" if r.get("active_params") and r["active_params"] < r["params"] else ""
        out[r["id"]] = f"{r['id']} · {r['family']} · {size:,.1f}B{moe}" if size >= 1 else \
            f"{r['id']} · {r['family']} · {r['params'] / 1e6:,.0f}M{moe}"
    return out


def _index(options, value, default) -> int:
    options = list(options)
    return options.index(value) if value in options else options.index(default)


def _save_upload(upload) -> str:
    """Keeps an uploaded data file in the data folder, readable by this user only (a trial process
    reads it later; launching a trial moves it into the run's folder)."""
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:12]
    folder = store.uploads()
    # Only the name's safe characters, never its folders ("../../x.jsonl" is "x.jsonl"), bounded in length.
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(upload.name).name)[-80:].lstrip(".") or "data"
    path = folder / f"{digest}-{name}"
    if not path.exists():
        store.write_private(path, data)
    return str(path)


@st.cache_data(show_spinner="Reading and tokenizing the data…", max_entries=32)
def _data_report(path: str, mtime: float, tokenizer_file: str | None) -> dict:
    from tuners.datareport import report  # a bounded subprocess: no torch, no risk to the server

    return report(path, 512, tokenizer_file)


def data_report(path: str, model: str | None) -> dict:
    """The data file's report, token lengths counted with the model folder's own tokenizer when it has
    one (else an approximation, and the report says so)."""
    p = Path(access.checked_path(path, "data files")).expanduser()
    if not p.is_file():
        raise InputError(f"data file '{path}' not found (give a .jsonl, .csv or .parquet file)")
    folder = Path(model).expanduser() if model else None
    tokenizer = folder / "tokenizer.json" if folder is not None and folder.is_dir() else None
    return _data_report(str(p.resolve()), p.stat().st_mtime, str(tokenizer) if tokenizer and tokenizer.is_file() else None)


def _users_words(message: str, path: str, name: str) -> str:
    """A message about a data file in the user's terms: their file name, not the stored one."""
    return message.replace(Path(path).name, name).replace(str(path), name)


def _pasted_config(text: str) -> str:
    cfg = parse_json(text, "the pasted config")
    folder = store.private_dir(store.home() / "configs")
    path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    store.write_private(path, json.dumps(cfg))  # this user's only (0600)
    return str(path)


@st.cache_data(ttl=60, show_spinner=False)
def local_models(folders: tuple[str, ...]) -> list[dict]:
    """Models in the Hugging Face cache and the given folders (files only; nothing downloaded)."""
    from tuners.localmodels import scan

    return [m.to_dict() for m in scan(folders)]


def _pick_local(sb, problems: list) -> str | None:
    """A model found in the Hugging Face cache or in folders the user adds; its folder is the model."""
    extra = sb.text_input("Also look in (folders, comma-separated)", key="local_folders")
    try:
        found = local_models(tuple(access.checked_path(f.strip(), "model folders") for f in extra.split(",")
                                   if f.strip()))
    except InputError as exc:
        problems.append(str(exc))
        return None
    if not found:
        problems.append("no models in the Hugging Face cache or the folders given: add a folder, or pick another source")
        return None
    labels = {f"{m['id']} · {m['model_type'] or '?'} · {m['size_bytes'] / 2**30:.1f} GiB"
              + ("" if m["tokenizer"] else " · no tokenizer"): m["path"] for m in found}
    options = list(labels)
    chosen = initial("local_model", options[0])
    return labels[sb.selectbox("Model found on this machine", options, key="local_model",
                               index=options.index(chosen) if chosen in options else 0)]


def render() -> dict:
    """Draws the questionnaire in the sidebar; returns the answers as a dict plus 'gpu_spec' and 'data_path'."""
    out, problems = {}, []
    sb = st.sidebar
    sb.header("Your situation")
    out["task"] = sb.selectbox("Task", TASKS, index=_index(TASKS, initial("task", "chat"), "chat"), key="task")
    out["goals"] = sb.multiselect("Goals", GOALS, default=[g for g in initial("goals", ["style"]) if g in GOALS],
                                  key="goals", format_func=lambda g: f"{g} — {GOAL_HELP[g]}")
    sb.subheader("Data")
    modes = ("Type a count", "Upload a file", "File path")
    mode = sb.radio("Data", modes, horizontal=True, key="data_mode", label_visibility="collapsed",
                    index=_index(modes, initial("data_mode", modes[0]), modes[0]))
    out["data_path"] = out["data_name"] = None
    if mode == "Upload a file":
        upload = sb.file_uploader("JSONL, CSV or Parquet", type=["jsonl", "json", "csv", "parquet"], key="upload")
        kept = st.session_state.get("_restored_upload") or {}
        if upload is not None:
            out["data_path"], out["data_name"] = _save_upload(upload), upload.name
        elif kept.get("path") and Path(kept["path"]).is_file():  # a reload: the file the run was started with
            out["data_path"], out["data_name"] = kept["path"], kept.get("name") or Path(kept["path"]).name
            sb.caption(f"Using {out['data_name']}, the file of run {kept.get('run')}; upload another to replace it.")
    elif mode == "File path":
        path = sb.text_input("Path of a JSONL, CSV or Parquet file on this machine", key="data_file",
                             value=initial("data_file", "")).strip()
        out["data_path"], out["data_name"] = (path or None), (user_file_name(path) if path else None)
    counts = sb.container()  # typed counts, or the file's own (filled in at the end, once the model is known)
    out["domain_distance"] = sb.select_slider("Distance of your domain from pretraining", DISTANCES,
                                              value=initial("domain", "moderate"), key="domain")
    sb.subheader("Base model")
    sources = ("Catalog", "On this machine", "Local folder", "Paste config.json")
    source = sb.radio("Model source", sources, horizontal=True, key="model_mode", label_visibility="collapsed",
                      index=_index(sources, initial("model_mode", "Catalog"), "Catalog"))
    ids = model_ids()
    if source == "Catalog":
        # The chosen model first: retyping its name and pressing Enter (the list then shows unfiltered) keeps it.
        current = st.session_state.get("model") or initial("model", "llama-3.1-8b")
        current = current if current in ids else "llama-3.1-8b"
        out["model"] = sb.selectbox("Model (type to search: id, family or size, e.g. llama 8b, qwen3 moe)",
                                    [current] + [i for i in ids if i != current], index=0, key="model",
                                    format_func=model_labels().get)
    elif source == "On this machine":
        out["model"] = _pick_local(sb, problems)
    elif source == "Local folder":
        out["model"] = sb.text_input("Model folder path", key="model_folder", value=initial("model_folder", "")).strip()
        if not out["model"]:
            problems.append("give the path of a local Hugging Face model folder")
        else:
            try:
                out["model"] = access.checked_path(out["model"], "model folders")
            except InputError as exc:
                problems.append(str(exc))
    else:
        text = sb.text_area("config.json", height=150, key="model_config", value=initial("model_config", ""))
        if not text.strip():
            problems.append("paste a config.json")
        else:
            try:
                out["model"] = _pasted_config(text)
            except InputError as exc:
                problems.append(str(exc))
    sb.subheader("Hardware and budget")
    gmodes = ("Catalog", "Custom")
    gmode = sb.radio("GPU", gmodes, horizontal=True, key="gpu_mode", label_visibility="collapsed",
                     index=_index(gmodes, initial("gpu_mode", "Catalog"), "Catalog"))
    out["gpu_spec"] = None
    if gmode == "Catalog":
        gids = list(gpus())
        out["gpu"] = sb.selectbox("GPU", gids, index=_index(gids, initial("gpu", "a100-80gb"), "a100-80gb"), key="gpu",
                                  format_func=lambda g: f"{gpus()[g].name} — {gpus()[g].memory_bytes / 1024**3:.0f} GiB")
    else:
        name = sb.text_input("Name", initial("custom_name", "My GPU"), key="custom_name").strip() or "custom GPU"
        mem = sb.number_input("Memory (GiB)", 1.0, 1024.0, float(initial("custom_mem", 24.0)), key="custom_mem")
        tflops = sb.number_input("Dense bf16 TFLOP/s", 1.0, 10000.0, float(initial("custom_tflops", 100.0)),
                                 key="custom_tflops")
        price = sb.number_input("Price per GPU-hour (USD)", 0.0, 1000.0, float(initial("custom_price", 1.0)),
                                key="custom_price")
        out["gpu"] = "custom"
        out["gpu_spec"] = custom_gpu(mem, tflops, price, name=name)
    out["num_gpus"] = int(sb.number_input("Number of GPUs", 1, 1024, int(initial("num_gpus", 1)), key="num_gpus"))
    host = sb.number_input("Host RAM of one machine, GiB (0 = typical for the GPU)", 0.0, 1e6,
                           float(initial("host_memory", 0.0)), key="host_memory",
                           help="CPU offload keeps weights, gradients or optimizer states here: a plan that needs "
                                "more does not fit. Typical: 2 TB for 8x H100/H200, 128 GiB for a 2-GPU workstation.")
    out["host_memory_gib"] = host or None
    hours = sb.number_input("Time budget, hours (0 = none)", 0.0, 1e6, float(initial("max_hours", 0.0)), key="max_hours")
    cost = sb.number_input("Money budget, USD (0 = none)", 0.0, 1e9, float(initial("max_cost", 0.0)), key="max_cost")
    out["max_hours"] = hours or None
    out["max_cost_usd"] = cost or None
    out["num_tasks"] = int(sb.number_input("Tasks to serve from this model", 1, 10000, int(initial("num_tasks", 1)),
                                           key="num_tasks"))
    out["priority"] = sb.radio("Priority", PRIORITIES, horizontal=True, key="priority",
                               index=_index(PRIORITIES, initial("priority", "balanced"), "balanced"))
    out.update(hosting.render_inputs(sb))  # optional traffic: prices hosting (issue 24)
    if not out["goals"]:
        problems.append("choose at least one goal")
    out["data_report"] = None
    if out["data_path"]:
        try:
            rep = data_report(out["data_path"], out.get("model"))
            rep = {**rep, "name": out["data_name"]}
            out["data_report"] = rep
            out["num_examples"] = rep["usable_rows"]
            out["avg_tokens_per_example"] = max(1, round(rep["mean_tokens"]))
            counts.caption(f"From the file: {rep['usable_rows']:,} usable examples, mean "
                           f"{rep['mean_tokens']:,.0f} tokens (p95 {rep['token_lengths'].get('p95', 0):,})"
                           + ("" if rep["tokenizer"] == "the model's own" else " — approximate counts"))
            if rep.get("bad_count"):
                counts.warning(f"{rep['bad_count']:,} lines of {out['data_name']} are not JSON objects and are "
                               "skipped: see Data on the page for which and why.", icon=":material/warning:")
                out["data_path"] = rep["clean_path"]  # plans and trials read the file without them
        except InputError as exc:  # shown here, in the Data section; the page goes on with typed counts
            counts.error(_users_words(str(exc), out["data_path"], out["data_name"]) +
                         " — until it is fixed, the counts below are used.", icon=":material/error:")
            out["data_path"] = None
    if out["data_report"] is None:
        out["num_examples"] = int(counts.number_input("Examples", 1, 100_000_000, int(initial("num_examples", 2000)),
                                                      key="num_examples"))
        out["avg_tokens_per_example"] = int(counts.number_input("Typical tokens per example", 1, 131072,
                                                                int(initial("avg_tokens", 300)), key="avg_tokens"))
    out["problems"] = problems
    return out
