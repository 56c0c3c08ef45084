"""Tuning Advisor — the Streamlit app. It wires widgets to advisor/, estimators/ and tuners/ (see ui/);
it computes nothing itself and imports no torch: trial runs happen in processes of their own.

Only the view on screen is computed (a view switch, not tabs that all run on every change)."""
import pandas as pd
import plotly.express as px
import streamlit as st

from advisor.answers import Answers
from advisor.recommend import recommend
from estimators.catalog import gpu_by_id
from estimators.errors import InputError
from tuners import metaspec, store
from tuners.data import histogram
from ui import access, hosting, questionnaire, results, runstate, trial

metaspec.install(in_child=True)  # architectures without built-in arithmetic: derived in a child process (no torch here)

st.set_page_config(page_title="Tuning Advisor", page_icon=":material/tune:", layout="wide")
access.gate()  # served on a network: a token first (README, "Serving on a network")
runstate.restore_from_url()  # ?run=ID: that run's answers and its Trial view
VIEWS = ("Recommendation", "Charts", "Trial run", "History")


@st.cache_data(show_spinner="Ranking methods…", max_entries=64)
def cached_recommendation(answers_json: dict, gpu_key, calibration_stamp, data: dict) -> dict:
    gpu = None if gpu_key is None else questionnaire.custom_gpu(*gpu_key)
    return recommend(Answers.from_dict(answers_json), gpu, calibration=store.calibration_for,
                     data=data).to_json()


def render_data(report: dict, rec: dict) -> None:
    """The data file against the recommended plan's sequence length."""
    plan = next((a["plan"] for a in rec["recommendations"] if a.get("plan")), None)
    seq_len = plan["settings"]["seq_len"] if plan else report["seq_len"]
    lengths = report["lengths"]
    truncated = sum(n > seq_len for n in lengths) / max(len(lengths), 1)
    t = report["token_lengths"]
    with st.expander(f"Data ({report.get('name') or 'your file'}): {report['usable_rows']:,} usable rows ({report['format']}); tokens mean {t['mean']:,.0f}, "
                     f"p50 {t['p50']:,}, p95 {t['p95']:,}, max {t['max']:,}; {truncated:.0%} longer than the plan's "
                     f"sequence length {seq_len:,}", expanded=True):
        st.caption(f"Tokens counted with {report['tokenizer']}.")
        if report.get("bad_count"):
            bad, shown = report["bad_count"], report["bad_lines"]
            lines = "\n".join(f"- line {b['line']}: {b['reason']}" for b in shown)
            more = f"\n\n…and {bad - len(shown):,} more." if bad > len(shown) else ""
            st.warning(f"**{bad:,} lines of {report.get('name') or 'the file'} are not JSON objects** and are skipped "
                       f"(the {report['usable_rows']:,} usable rows are used; fix these lines to use them too):\n\n"
                       f"{lines}{more}", icon=":material/warning:")
        fig = px.bar(pd.DataFrame(histogram(lengths, seq_len)), x="bin", y="count", color="fits",
                     title=f"Tokens per example (the plan's sequence length: {seq_len:,})",
                     color_discrete_map={"within seq_len": "#1f77b4", "truncated": "#d62728"},
                     category_orders={"fits": ["within seq_len", "truncated"]})
        st.plotly_chart(fig, key="data_hist")
        for p in report["problems"]:
            if "longer than seq_len" not in p:  # the truncation share is stated above, against the plan
                st.warning(p)


st.title("Tuning Advisor")
st.caption("How should you adapt this model, what will it cost, and does a real run agree?")

form = questionnaire.render()
answer_keys = ("task", "goals", "num_examples", "avg_tokens_per_example", "domain_distance", "model", "gpu",
               "num_gpus", "max_hours", "max_cost_usd", "num_tasks", "priority", "host_memory_gib") + hosting.ANSWER_KEYS
answers = {k: form.get(k) for k in answer_keys}
if st.session_state.get("_restore_problem"):
    st.warning(st.session_state["_restore_problem"], icon=":material/history:")
if form["problems"]:
    for problem in form["problems"]:
        st.error(results.plain(problem))
    st.stop()
custom = form["gpu_spec"]
gpu_key = None if custom is None else (custom.memory_bytes / 1024**3, custom.tflops["bf16"], custom.price_per_hour_usd,
                                        custom.name)
if custom is not None:
    answers["gpu"] = "a100-80gb"  # a valid id for answer validation only; the custom GPU is what gets used
report = form["data_report"]
data = {} if report is None else {"path": form["data_path"], "format": report["format"],
                                  "token_lengths": report["token_lengths"]}
try:
    rec = cached_recommendation(answers, gpu_key, store.calibration_stamp(), data)
    gpu = custom or gpu_by_id(answers["gpu"])
except InputError as exc:
    st.error(results.plain(exc))
    st.stop()
if custom is not None:
    answers["gpu"] = "custom"
answers["data_path"] = form["data_path"]  # the trial uses the uploaded data
answers["data_name"] = form["data_name"]  # as the user named it

view = st.radio("View", VIEWS, horizontal=True, key="view", label_visibility="collapsed",
                index=VIEWS.index(runstate.initial("view", VIEWS[0])))
if view == "Recommendation":
    if report is not None:
        render_data(report, rec)
    results.render_recommendation(rec)
elif view == "Charts":
    results.render_charts(answers, rec, gpu)
    hosting.render_chart(rec)
elif view == "Trial run":
    trial.render_launch(answers, rec)
    trial.render_current()
else:
    trial.render_history()
