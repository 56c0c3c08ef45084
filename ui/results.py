"""Recommendation panel and charts."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from advisor.criteria import explain
from advisor.explore import memory_rows, time_cost_curve, what_if
from advisor.formatting import fit_label
from estimators import axes
from estimators import methods as methods_registry
from estimators.errors import InputError
from estimators.methods import REGISTRY
from estimators.plan import Plan, setting
from ui import hosting

GIB = 1024**3

# Messages written for the command line, said in the app's terms (the app has widgets, not flags).
_CLI_WORDS = ((r"\(?point --model at ([^)]*)\)?", r"(choose \1)"), (r"--data FILE", "a data file"),
              (r"--scale-down", "'Scale down'"), (r"raise --steps", "raise the trial steps"),
              (r"--steps", "the trial steps"), (r"--nproc N?", "the number of processes"),
              (r"--teacher M", "a teacher model"), (r"--teacher", "the teacher"), (r"--force", "'Launch anyway'"),
              (r"--model", "the model"), (r"--data", "the data file"), (r"--sharding", "the sharding"),
              (r"\(tuning-advisor runs\)", "(see History)"), (r"tuning-advisor runs", "History"))


def plain(message: str) -> str:
    """An error for the app: no command-line flags, and files in the tool's own or temporary folders
    named by their file name only (never a temp path)."""
    import re
    import tempfile

    from tuners import store

    text = str(message)
    for pattern, words in _CLI_WORDS:
        text = re.sub(pattern, words, text)
    for root in {str(store.home()), tempfile.gettempdir()}:
        text = re.sub(re.escape(root) + r"/[^\s'\"),;]*", lambda m: Path(m.group(0)).name, text)
    return text


def fmt_bytes(n) -> str:
    if n is None:
        return "—"
    return f"{n / GIB:,.2f} GiB" if n >= GIB / 4 else f"{n / 1024**2:,.1f} MiB"


def fmt_hours(s) -> str:
    """A duration at any magnitude: ``< 1 s``, ``42 s``, ``17 min``, ``3.4 h``, ``2.5 days``."""
    if s is None:
        return "—"
    if s < 1:
        return "< 1 s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:,.1f} days"


def verdict(a: dict) -> str:
    """Memory and budget in one word (advisor.formatting.fit_label); unestimated methods: not applicable."""
    return fit_label(a["fits"], a["within_budget"], a.get("memory_fit")).replace("—", "not applicable")


def label(method: str) -> str:
    return methods_registry.label(method)


def fmt_usd(x) -> str:
    """Money at any magnitude: ``$0``, ``< $0.01``, ``$0.37``, ``$12.50``, ``$1,234``."""
    if x is None:
        return "—"
    if x == 0:
        return "$0"
    if x < 0.01:
        return "< $0.01"
    return f"${x:,.2f}" if x < 1000 else f"${x:,.0f}"


# Labels and units of plan settings (advisor's keys stay in plan.json; people read these).
SETTING_LABELS = {
    "batch_size": ("Micro-batch", "sequences per GPU"), "grad_accum": ("Gradient accumulation", "micro-batches per step"),
    "seq_len": ("Sequence length", "tokens"), "precision": ("Precision", ""),
    "mixed_precision": ("Mixed precision (fp32 master weights)", ""), "optimizer": ("Optimizer", ""),
    "gradient_checkpointing": ("Gradient checkpointing", ""), "attention": ("Attention kernel", ""),
    "packing": ("Packing (several examples per sequence)", ""), "lr": ("Learning rate", "peak"),
    "epochs": ("Epochs", "passes over the data"), "lora_rank": ("LoRA rank r", ""),
    "lora_alpha": ("LoRA alpha", "scale = alpha / r"), "lora_targets": ("LoRA target layers", ""),
    "lora_dropout": ("LoRA dropout", ""), "quant_bits": ("Base weights quantized to", "bits"),
    "double_quant": ("Double quantization", ""), "num_virtual_tokens": ("Soft-prompt length", "tokens"),
    "prompt_init": ("Soft-prompt initialisation", ""), "prompt_init_text": ("Initialisation text", ""),
    "adapter_size": ("Adapter bottleneck width", "dimensions"), "teacher": ("Teacher model", ""),
    "teacher_quant_bits": ("Teacher stored in", "bits"), "temperature": ("Distillation temperature", ""),
    "alpha": ("Teacher term weight", "0 = labels only, 1 = teacher only"), "num_gpus": ("GPUs", ""),
    "sharding": ("Multi-GPU sharding", ""), "cpu_offload": ("CPU offload", ""),
    "compile": ("torch.compile", ""), "fused_cross_entropy": ("Fused cross-entropy", ""),
    "optimizer_in_backward": ("Optimizer step in backward", ""), "activation_offloading": ("Activation offloading", ""),
}
_VALUE_WORDS = {"sdpa": "SDPA (memory-efficient)", "eager": "eager", "all-linear": "every linear layer",
                **{k: o.label for k, o in axes.OPTIMIZER_REGISTRY.items()},
                **{k: s.label for k, s in axes.SHARDING_REGISTRY.items()}}  # the registries' labels


def setting_value(key: str, value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "default" if key in ("lr", "lora_alpha") else "—"
    if key == "lr":
        return f"{value:.1e}".replace("e-0", "e-")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}"
    return _VALUE_WORDS.get(str(value), str(value))


def fmt_range(block: dict, key: str, fmt) -> str:
    """``block[key]`` with its ``_low``/``_high`` range when the estimate has one: ``1.2 h (0.9 h–1.5 h)``."""
    if block.get(key) is None or block.get(f"{key}_low") is None:
        return fmt(block.get(key))
    return f"{fmt(block[key])} ({fmt(block[f'{key}_low'])}–{fmt(block[f'{key}_high'])})"


def settings_table(settings: dict) -> pd.DataFrame:
    """Every setting with its label and unit; the plan's key names stay in plan.json."""
    rows = []
    for k, v in settings.items():
        name, unit = SETTING_LABELS.get(k, (k.replace("_", " ").capitalize(), ""))
        shown = setting_value(k, v)
        rows.append({"setting": name, "value": f"{shown} {unit}" if unit and shown not in ("—", "default") else shown})
    return pd.DataFrame(rows).set_index("setting")


ICONS = {"fits": ":material/check_circle:", "tight": ":material/warning:", "over budget": ":material/payments:",
         "does not fit": ":material/block:", "not applicable": ":material/do_not_disturb_on:"}
"""Streamlit's bundled Material Symbols: they render without an emoji font on the machine."""


@st.cache_data(show_spinner=False, max_entries=64)
def _what_would_fit(plan_json: str) -> str | None:
    """For a plan that does not fit: the GPU count (per sharding) or the cheapest GPU type that would."""
    from estimators.scaling import min_gpus

    try:
        m = min_gpus(Plan.from_json(json.loads(plan_json)))
    except (InputError, KeyError, ValueError):
        return None
    def name(k: str) -> str:  # by_sharding's keys: a registry id, or one with "+offload"
        base, _, offload = k.partition("+")
        return (axes.sharding(base).label if base in axes.SHARDING_REGISTRY else base) + (" + CPU offload" if offload else "")

    # On the plan's own GPU type: the strategy that needs the fewest of them (registry order breaks ties).
    fitting = [(f["num_gpus"], i, k) for i, (k, f) in enumerate(m["by_sharding"].items()) if f is not None and k != "none"]
    options = [f"{n:,} of these GPUs with {name(k)}" for n, _, k in sorted(fitting)[:1]]
    options += [f"{o['num_gpus']} × {o['name']} ({o['sharding']}, {fmt_usd(o['cost_usd'])}, {fmt_hours(o['seconds'])})"
                for o in (m.get("cheapest") or [])[:1]]
    return "; or ".join(options) or None


def what_would_fit(plan: dict) -> str | None:
    return _what_would_fit(json.dumps(plan, sort_keys=True))


def _time_cell(a: dict) -> str:
    if a["estimate"] and not a["fits"]:
        return "— (does not fit)"
    return fmt_range(((a["estimate"] or {}).get("time") or {}), "seconds", fmt_hours)


def _cost_cell(a: dict) -> str:
    if a["estimate"] and not a["fits"]:
        return "— (does not fit)"
    return fmt_range(a["estimate"] or {}, "cost_usd", fmt_usd)


ORDER_NOTE = ("Ranked by verdict first — fits, tight, over budget (nearest the budget first), does not fit, not "
              "applicable — then by score within each group.")


def render_recommendation(rec: dict) -> None:
    if rec["dont_tune"]:
        with st.container(border=True):
            st.warning("**Don't tune — use retrieval (RAG).** Tuning barely improves factual recall (C5.1). "
                       "Index your documents and give the model the relevant passages at inference time. "
                       "The methods below only matter if you also need to shape the answers' format.")
    if rec.get("hybrid"):
        with st.container(border=True):
            st.success(f"**Hybrid — retrieval (RAG) for the facts, {rec['hybrid']['label']} for the rest.** "
                       + rec["hybrid"]["text"])
    st.info(hosting.in_app_words(rec["summary"]))
    table = pd.DataFrame([{"rank": i + 1, "method": label(a["method"]), "score": a["score"], "verdict": verdict(a),
                           "suitability": a.get("verdict", "—"),
                           "memory / GPU": fmt_bytes((a["estimate"] or {}).get("memory", {}).get("total")),
                           "route": a.get("route") or "—",  # issue 25: on-GPU, sharded or offloaded (C6.21)
                           "time": _time_cell(a), "cost": _cost_cell(a)}
                          for i, a in enumerate(rec["recommendations"])])
    st.dataframe(table, hide_index=True, width="stretch", key="rec_table",
                 column_config={"score": st.column_config.NumberColumn(format="%.2f")})
    scores = [a["score"] for a in rec["recommendations"]]
    if any(b > a for a, b in zip(scores, scores[1:])):
        st.caption(ORDER_NOTE)
    for a in rec["recommendations"]:
        with st.container(border=True):
            icon = ICONS[verdict(a)]
            st.markdown(f"#### {icon} {label(a['method'])} · score {a['score']:.2f} · {verdict(a)}"
                        + (f" · {a['verdict']}" if a.get("verdict") and a["verdict"] != verdict(a) else "")
                        + (f" · student {a['model']}" if REGISTRY[a["method"]].needs_teacher and a["estimate"] else ""))
            if a.get("verdict") in ("poor fit", "not applicable") and a.get("verdict_reason"):
                st.caption(f"Why {a['verdict']}: {a['verdict_reason']}")
            if a["estimate"] and not a["fits"]:
                e = a["estimate"]
                gpu = e.get("gpu") or {}
                size = f", {gpu['memory_bytes'] / GIB:,.0f} GiB each" if gpu.get("memory_bytes") else ""
                would = what_would_fit(a["plan"]) if a.get("plan") else None
                st.markdown(f":material/block: **Does not fit:** needs {fmt_bytes(e['memory']['total'])} per GPU on "
                            f"{(a.get('plan') or {}).get('hardware', {}).get('num_gpus', 1)} × "
                            f"{gpu.get('name', 'the chosen GPU')}{size}, so no time or cost is given for it."
                            + (f" What would fit: {would}." if would else ""))
            if a.get("budget_fit"):
                st.markdown(f":material/payments: **Budget:** {a['budget_fit']['text']}")
            if a["settings"]:
                with st.expander("Settings of this plan"):
                    st.table(settings_table(a["settings"]))
            if (a["estimate"] or {}).get("calibrated"):
                st.caption(f":material/tune: Estimate {a['estimate']['calibrated']}.")
            for r in a["reasons"]:
                with st.expander(f"[{r['criterion']}] {r['text']}",
                                 icon={"+": ":material/add_circle:", "-": ":material/remove_circle:"}.get(
                                     r["effect"], ":material/info:")):
                    st.markdown(explain(r["criterion"]))
            for c in a["caveats"]:
                st.markdown(f":material/warning: {c}")


def plans(rec: dict) -> dict[str, Plan]:
    """Each estimated method's plan, best first."""
    return {a["method"]: Plan.from_json(a["plan"]) for a in rec["recommendations"] if a.get("plan") and a["estimate"]}


def render_charts(answers: dict, rec: dict, gpu) -> None:
    by_method = plans(rec)
    if not by_method:
        st.error("No method could be estimated for this model.")
        return
    ranked = [a for a in rec["recommendations"] if a["method"] in by_method]
    st.markdown("**Memory per GPU at each method's chosen settings** (dashed: the GPU's memory)")
    parts = [row for a in ranked for row in memory_rows(label(a["method"]), a["estimate"])]
    fig = px.bar(pd.DataFrame(parts), x="method", y="GiB", color="component")
    fig.add_hline(y=gpu.memory_bytes / GIB, line_dash="dash", annotation_text=f"{gpu.name}")
    st.plotly_chart(fig, key="memory_chart")

    st.markdown("**Time and cost against data size**")
    epochs = st.slider("Epochs", 1, 10, int(answers.get("epochs", 2)), key="chart_epochs")
    base_n = answers["num_examples"]
    sizes = sorted({max(1, int(base_n * f)) for f in (0.25, 0.5, 1, 2, 4, 8)})
    rows = []
    for method, plan in by_method.items():
        rows += [{**r, "method": label(method)} for r in time_cost_curve(plan, sizes, epochs)]
    frame = pd.DataFrame(rows)
    left, right = st.columns(2)
    left.plotly_chart(px.line(frame, x="examples", y="hours", color="method", markers=True, log_x=True),
                      key="time_chart")
    if frame["cost_usd"].notna().any():
        right.plotly_chart(px.line(frame, x="examples", y="cost_usd", color="method", markers=True, log_x=True,
                                   labels={"cost_usd": "cost (USD)"}), key="cost_chart")
    render_what_if(by_method, gpu, (answers.get("max_hours"), answers.get("max_cost_usd")))


def render_what_if(by_method: dict, gpu, budget: tuple = (None, None)) -> None:
    """Opens on the selected method's plan (the table's numbers); every change edits that plan and
    re-estimates memory, time and cost. Widget keys carry the method, so each method keeps its own edits."""
    st.markdown("**What if?** Start from a method's plan, change its settings, and see memory, time and cost move.")
    method = st.selectbox("Method", list(by_method), format_func=label, key="whatif_method")
    plan = by_method[method]
    s, h = plan.settings, plan.hardware
    c1, c2, c3 = st.columns(3)

    def choices(values, current):  # the current setting is always one of the slider's stops
        return sorted(set(values) | {current})

    precisions, optimizers = setting("precision").choices, setting("optimizer").choices  # the one schema
    settings = {
        "batch_size": int(c1.select_slider("Micro-batch", choices([1, 2, 4, 8, 16, 32, 64], s["batch_size"]),
                                           value=s["batch_size"], key=f"wi_batch_{method}")),
        "seq_len": int(c2.select_slider("Sequence length", choices([128, 256, 512, 1024, 2048, 4096, 8192, 16384],
                                                                   s["seq_len"]),
                                        value=s["seq_len"], key=f"wi_seq_{method}")),
        "gradient_checkpointing": c3.checkbox("Gradient checkpointing", s["gradient_checkpointing"],
                                              key=f"wi_ckpt_{method}"),
        "precision": c1.radio("Precision", precisions, horizontal=True, key=f"wi_precision_{method}",
                              index=precisions.index(s["precision"])),
        "optimizer": c2.selectbox("Optimizer", optimizers, key=f"wi_opt_{method}",
                                  index=optimizers.index(s["optimizer"])),
    }
    if "lora_rank" in s:
        settings["lora_rank"] = int(c3.select_slider("LoRA rank", choices([4, 8, 16, 32, 64, 128, 256], s["lora_rank"]),
                                                     value=s["lora_rank"], key=f"wi_rank_{method}"))
    if "lora_dropout" in s:  # one more pass over each adapted input and a mask per input (estimators/stepwork.py)
        settings["lora_dropout"] = float(c2.select_slider(
            "LoRA dropout", choices([0.0, 0.05, 0.1], s["lora_dropout"]), value=s["lora_dropout"],
            key=f"wi_dropout_{method}", help="PEFT's lora_dropout: 0 keeps the step deterministic; 0.05-0.1 costs "
                                              "a pass over every adapted input and a 1-byte mask per element"))
    settings["grad_accum"] = int(c1.number_input("Gradient accumulation", 1, 4096, s["grad_accum"],
                                                 key=f"wi_accum_{method}"))
    settings["epochs"] = float(c3.number_input("Epochs", 0.1, 1000.0, float(s["epochs"]), step=0.5,
                                               key=f"wi_epochs_{method}"))
    # Speed settings (issue 21): each a plan setting the estimate models and the exported train.py honours or names.
    speed = st.columns(5)
    for col, (name, text) in zip(speed, (("packing", "Packing"), ("compile", "torch.compile"),
                                         ("fused_cross_entropy", "Fused cross-entropy"),
                                         ("optimizer_in_backward", "Optimizer in backward"),
                                         ("activation_offloading", "Activation offloading"))):
        settings[name] = col.checkbox(text, bool(s.get(name)), key=f"wi_{name}_{method}")
    hardware = {"num_gpus": int(c2.number_input("GPUs", 1, 1024, h["num_gpus"], key=f"wi_gpus_{method}"))}
    if hardware["num_gpus"] > 1:
        shardings = setting("sharding").choices  # the one schema (estimators/plan.py)
        hardware["sharding"] = c3.selectbox("Sharding", shardings, index=shardings.index(h["sharding"]),
                                            key=f"wi_shard_{method}",
                                            help="none: DDP replicas; zero2: DeepSpeed ZeRO-2 (gradients and optimizer "
                                                 "states sharded); zero3/fsdp: parameters too")
    hardware["cpu_offload"] = c1.checkbox("CPU offload", h["cpu_offload"], key=f"wi_offload_{method}",
                                          help="optimizer states (with FSDP/ZeRO-3 also parameters and gradients) in "
                                               "host RAM: less GPU memory, more time (host-link copies, a CPU "
                                               "optimizer step), and it must fit the host's RAM")
    try:
        edited = what_if(plan, settings, hardware)
    except InputError as exc:
        st.error(str(exc))
        return
    est = edited.estimate
    st.session_state["whatif_plan"] = edited.to_json()
    m1, m2, m3 = st.columns(3)
    host = est.get("host") or {}
    m1.metric("Memory / GPU", fmt_bytes(est["memory"]["total"]), "fits" if est["fits"] else
              ("does not fit the host's RAM" if est.get("fits_gpu") else "does not fit"),
              delta_color="normal" if est["fits"] else "inverse")
    if hardware["cpu_offload"] and host.get("memory_bytes"):
        st.caption(f"Host RAM per node: {fmt_bytes(host['needed_bytes'])} of {fmt_bytes(host['memory_bytes'])}"
                   + ("" if host.get("given") else f" (typical: {host.get('basis')})") + ".")
    t = est["time"]
    ranged = t.get("seconds_low") is not None
    m2.metric("Time", fmt_hours(t["seconds"]),
              f"{fmt_hours(t['seconds_low'])} – {fmt_hours(t['seconds_high'])}" if ranged else None, delta_color="off",
              delta_arrow="off")
    m3.metric("Cost", fmt_usd(est["cost_usd"]),
              f"{fmt_usd(est['cost_usd_low'])} – {fmt_usd(est['cost_usd_high'])}"
              if est.get("cost_usd_low") is not None else None, delta_color="off", delta_arrow="off")
    st.caption(f"The peak falls at the {est['memory']['peak_phase'].replace('_', ' ')} moment of a step. "
               + (f"Estimate {est['calibrated']}." if est.get("calibrated") else
                  "Default efficiency: run a trial on this GPU to calibrate time and overhead.")
               + (f" Time range: {t['range_basis']}." if ranged else ""))
    fig = px.bar(pd.DataFrame(memory_rows(label(method), est)), x="GiB", y="method", color="component",
                 orientation="h", height=280)
    fig.update_layout(legend={"orientation": "h", "y": -0.45, "title": None})
    fig.add_vline(x=gpu.memory_bytes / GIB, line_dash="dash", annotation_text=gpu.name)
    st.plotly_chart(fig, key="whatif_chart")
    if st.toggle("How many GPUs do I need?", key="whatif_min_gpus"):
        render_min_gpus(edited, budget)
    left, right = st.columns(2)
    left.download_button("Download this plan (plan.json)", json.dumps(edited.to_json(), indent=2), "plan.json",
                         key="dl_plan", help="tuning-advisor estimate|trial|export --plan plan.json")
    right.download_button("Download a runnable project (zip)", project_zip(edited), f"{method}-project.zip",
                          key="dl_project", help="train.py, plan.json, launch.sh, requirements.txt, README.md")
    exact_check(edited)


def render_min_gpus(plan: Plan, budget: tuple = (None, None)) -> None:
    """The one search's first answer (as the recommendation's hints, the budget advice and --min-gpus give
    it), the smallest count of the plan's GPU per sharding, and the cheapest options that fit."""
    from estimators.scaling import min_gpus

    m = min_gpus(plan, *budget)
    st.markdown(f"**What would fit:** {m['answer']}" if m["answer"] else
                "**What would fit:** nothing in the catalog up to 128 GPUs" + (" within the budget." if any(budget)
                                                                                else "."))
    rows = [{"sharding": "FSDP + CPU offload" if k.endswith("+offload") else axes.sharding(k).label,
             "GPUs": "does not fit on 128" if f is None else f"{f['num_gpus']:,}",
             "memory / GPU": "—" if f is None else fmt_bytes(f["memory_per_gpu"]),
             "host RAM per node": "—" if f is None else fmt_bytes(f["cpu_ram"]),
             "time": "—" if f is None else fmt_hours(f["seconds"]), "cost": "—" if f is None else fmt_usd(f["cost_usd"])}
            for k, f in m["by_sharding"].items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="min_gpus_table")
    if m["cheapest"]:
        st.caption("Cheapest GPU type × count that fits: " + "; ".join(o["text"] for o in m["cheapest"]))


@st.cache_data(show_spinner=False)
def _project_zip(plan_json: str) -> bytes:
    import io
    import tempfile
    import zipfile

    from tuners.export import write_project  # files only: no torch

    buf = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_project(Plan.from_json(json.loads(plan_json)), Path(tmp) / "project")
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(folder.iterdir()):
                z.write(f, f"project/{f.name}")
    return buf.getvalue()


def project_zip(plan: Plan) -> bytes:
    return _project_zip(json.dumps(plan.to_json(), sort_keys=True))


def exact_check(plan: Plan) -> None:
    """Runs one real training step of this plan on fake tensors (no memory used) on request."""
    if not REGISTRY[plan.method].exact_check:
        st.caption(f"The exact check does not cover {label(plan.method)}: launch a trial run to measure it.")
        return
    if not st.button("Exact check: run one step on fake tensors", key="exact_check",
                     help="Builds the real model and runs a real step without allocating memory; seconds to a "
                          "minute for billions of parameters."):
        return
    from tuners.dryrun import dry_run  # imports torch: only now

    try:
        with st.spinner("Running one step on fake tensors…"):
            d = dry_run(plan.spec().config, plan)
    except InputError as exc:
        st.error(str(exc))
        return
    diff = plan.estimate["memory"]["peak_allocated"] / d["peak_allocated"] - 1
    st.success(f"Exact peak allocated: {fmt_bytes(d['peak_allocated'])} at {d['peak_phase'].replace('_', ' ')} "
               f"({d['seconds']:.1f} s). The estimate above differs by {diff:+.1%}.")
