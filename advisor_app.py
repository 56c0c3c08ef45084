"""Tuning Advisor — the Streamlit app. It wires widgets to advisor/, estimators/ and tuners/ (see ui/);
it computes nothing itself and imports no torch: trial runs happen in processes of their own."""
import pandas as pd
import plotly.express as px
import streamlit as st

from advisor.answers import Answers
from advisor.recommend import recommend
from estimators.catalog import gpu_by_id
from estimators.errors import InputError
from tuners import store
from ui import questionnaire, results, trial

st.set_page_config(page_title="Tuning Advisor", page_icon="🎛️", layout="wide")


@st.cache_data(show_spinner="Ranking methods…")
def cached_recommendation(answers_json: dict, gpu_key, calibration_stamp, data_path) -> dict:
    gpu = None if gpu_key is None else questionnaire.custom_gpu(*gpu_key)
    return recommend(Answers.from_dict(answers_json), gpu, calibration=store.calibration_for,
                     data={"path": data_path}).to_json()


st.title("Tuning Advisor")
st.caption("How should you adapt this model, what will it cost, and does a real run agree?")

form = questionnaire.render()
answer_keys = ("task", "goals", "num_examples", "avg_tokens_per_example", "domain_distance", "model", "gpu",
               "num_gpus", "max_hours", "max_cost_usd", "num_tasks", "priority")
answers = {k: form.get(k) for k in answer_keys}
if form["problems"]:
    for problem in form["problems"]:
        st.error(problem)
    st.stop()
custom = form["gpu_spec"]
gpu_key = None if custom is None else (custom.memory_bytes / 1024**3, custom.tflops["bf16"], custom.price_per_hour_usd,
                                        custom.name)
if custom is not None:
    answers["gpu"] = "a100-80gb"  # a valid id for answer validation only; the custom GPU is what gets used
try:
    rec = cached_recommendation(answers, gpu_key, store.calibration_stamp(), form["data_path"])
    gpu = custom or gpu_by_id(answers["gpu"])
except InputError as exc:
    st.error(f"{exc}")
    st.stop()
if custom is not None:
    answers["gpu"] = "custom"
answers["data_path"] = form["data_path"]  # the trial uses the uploaded data

tab_rec, tab_charts, tab_trial, tab_history = st.tabs(["Recommendation", "Charts", "Trial run", "History"])
with tab_rec:
    if form["data_path"]:
        try:
            report = questionnaire.data_report(form["data_path"], max(128, answers["avg_tokens_per_example"]))
            with st.expander(f"Data: {report['usable_rows']} usable rows ({report['format']}), mean "
                             f"{report['mean_tokens']} tokens, {report['truncated_share']:.0%} truncated", expanded=True):
                fig = px.bar(pd.DataFrame(report["histogram"]), x="bin", y="count", color="fits",
                             title=f"Tokens per example (seq_len {report['seq_len']})",
                             color_discrete_map={"within seq_len": "#1f77b4", "truncated": "#d62728"})
                st.plotly_chart(fig, key="data_hist")
                for p in report["problems"]:
                    st.warning(p)
        except InputError as exc:
            st.error(f"{exc}")
    results.render_recommendation(rec)
with tab_charts:
    results.render_charts(answers, rec, gpu)
with tab_trial:
    trial.render_launch(answers, rec)
    trial.render_current()
with tab_history:
    trial.render_history()
