"""Tuning Advisor — Streamlit UI. Widgets only: every number comes from ``estimators``.

This first page is the estimator; the questionnaire, recommendation, trial runs and history come
with their own issues.
"""
import pandas as pd
import plotly.express as px
import streamlit as st

from estimators.catalog import catalog_rows, gpus, model_by_id
from estimators.errors import InputError
from estimators.estimate import estimate
from estimators.setup import METHODS, TrainSetup

GIB = 1024**3
st.set_page_config(page_title="Tuning Advisor", layout="wide")


@st.cache_data
def model_ids():
    return [r["id"] for r in catalog_rows()]


@st.cache_data
def estimates_for(model_id, gpu_id, batch, seq_len, checkpointing, examples, tokens, epochs):
    spec, gpu = model_by_id(model_id), gpus()[gpu_id]
    out = {}
    for method in METHODS:
        if method == "distillation":
            continue  # needs a teacher: offered with the questionnaire
        try:
            setup = TrainSetup(method=method, batch_size=batch, seq_len=seq_len,
                               gradient_checkpointing=checkpointing, examples=examples,
                               tokens_per_example=tokens, epochs=epochs)
            out[method] = estimate(spec, setup, gpu).to_json()
        except InputError as exc:
            out[method] = {"error": str(exc)}
    return out


st.title("Tuning Advisor")
st.caption("What will adapting this model cost? Memory per GPU, time, money and artifact size, per method.")

ids = model_ids()
with st.sidebar:
    model_id = st.selectbox("Base model", ids, index=ids.index("llama-3.1-8b"), key="model")
    gpu_ids = list(gpus())
    gpu_id = st.selectbox("GPU", gpu_ids, index=gpu_ids.index("a100-80gb"), key="gpu",
                          format_func=lambda g: gpus()[g].name)
    batch = st.number_input("Micro-batch", 1, 256, 1, key="batch")
    seq_len = st.number_input("Sequence length", 16, 131072, 512, step=128, key="seq_len")
    checkpointing = st.checkbox("Gradient checkpointing", key="ckpt")
    examples = st.number_input("Examples", 1, 100_000_000, 2000, key="examples")
    tokens = st.number_input("Tokens per example", 1, 131072, 300, key="tokens")
    epochs = st.number_input("Epochs", 1, 100, 1, key="epochs")

results = estimates_for(model_id, gpu_id, int(batch), int(seq_len), checkpointing, int(examples), int(tokens), int(epochs))
rows, parts = [], []
for method, e in results.items():
    if "error" in e:
        st.error(f"{method}: {e['error']}")
        continue
    m = e["memory"]
    rows.append({"method": method, "fits": "yes" if e["fits"] else "no", "total GiB": round(m["total"] / GIB, 2),
                 "peak at": m["peak_phase"].replace("_", " "), "trainable": f"{e['params']['trainable']:,}",
                 "time (h)": round(e["time"]["seconds"] / 3600, 2), "cost (USD)": e["cost_usd"],
                 "artifact MB": round(e["artifact_bytes"] / 1e6, 1)})
    for part in ("weights", "gradients", "optimizer", "activations", "other", "overhead"):
        parts.append({"method": method, "component": part, "GiB": m[part] / GIB})

st.subheader(f"{model_id} on {gpus()[gpu_id].name}")
st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
fig = px.bar(pd.DataFrame(parts), x="method", y="GiB", color="component", title="Memory per GPU (stacked at the peak)")
fig.add_hline(y=gpus()[gpu_id].memory_bytes / GIB, line_dash="dash", annotation_text="GPU memory")
st.plotly_chart(fig, use_container_width=True)
