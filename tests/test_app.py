"""The Streamlit app through AppTest: defaults, reacting to answers, bad input, a real trial run, history."""
import json
import os
import re
import time
from pathlib import Path

import pytest

from estimators.methods import REGISTRY
from tests.conftest import ROOT, reached, wait_until

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
APP = str(ROOT / "advisor_app.py")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def app():
    return AppTest.from_file(APP, default_timeout=90)


def frame_with(at, column):
    """The first dataframe on the page that has ``column`` (dataframes are not widgets: no keys)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def top_verdict(at):
    table = frame_with(at, "verdict")
    return table.iloc[0]["method"], table.iloc[0]["verdict"]


def test_defaults_render_a_recommendation(home):
    at = app().run()
    assert not at.exception
    assert at.info[0].value.startswith("Recommended:")
    table = frame_with(at, "verdict")
    assert len(table) == len(REGISTRY) and set(table["verdict"]) <= {"fits", "does not fit", "over budget"}
    assert at.radio(key="view").options == ["Recommendation", "Charts", "Trial run", "History"]
    assert not at.metric  # only the view on screen is computed: the what-if is not


def test_changing_gpu_or_model_changes_the_verdict(home):
    at = app().run()
    assert top_verdict(at)[1] == "fits"
    at.selectbox(key="model").set_value("llama-3.1-70b").run()
    at.selectbox(key="gpu").set_value("rtx-4090").run()
    assert not at.exception
    assert top_verdict(at) == ("QLoRA", "does not fit")
    assert "Nothing fits" in at.info[0].value
    at.selectbox(key="gpu").set_value("h200").run()
    assert top_verdict(at)[1] == "fits"


def test_factual_recall_shows_dont_tune_panel(home):
    at = app().run()
    at.multiselect(key="goals").set_value(["factual_recall"]).run()
    assert any("Don't tune" in w.value for w in at.warning)


def test_invalid_data_file_shows_an_error(home, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    at = app().run()
    at.radio(key="data_mode").set_value("File path").run()
    at.text_input(key="data_file").input(str(bad)).run()
    assert not at.exception
    assert any("not valid JSON" in e.value for e in at.error)


def test_no_goal_is_a_clear_error(home):
    at = app().run()
    at.multiselect(key="goals").set_value([]).run()
    assert any("choose at least one goal" in e.value for e in at.error) and not at.exception


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_what_if_opens_on_each_methods_plan_with_time_and_cost(home):
    """The what-if starts from the recommendation's plan: same memory as the table's row, with time
    and cost (the plan carries the data size); switching method loads that method's plan."""
    at = app().run()
    table = frame_with(at, "verdict").set_index("method")
    first = frame_with(at, "verdict").iloc[0]["method"]
    at.radio(key="view").set_value("Charts").run()
    assert metric(at, "Memory / GPU") == table.loc[first, "memory / GPU"]
    # The table shows value (low–high); the metric the value, with the range as its delta (issue 12).
    for label, column in (("Time", "time"), ("Cost", "cost")):
        shown = next(m for m in at.metric if m.label == label)
        assert table.loc[first, column] == f"{shown.value} ({shown.delta.replace(' – ', '–')})" != "—"
    assert metric(at, "Cost").startswith("$")
    for method in ("qlora", "full", "dora"):
        at.selectbox(key="whatif_method").set_value(method).run()
        assert not at.exception
        assert metric(at, "Memory / GPU") == table.loc[REGISTRY[method].label, "memory / GPU"]
    at.select_slider(key="wi_batch_dora").set_value(1).run()  # an edit re-estimates memory, time and cost
    assert metric(at, "Memory / GPU") != table.loc["DoRA", "memory / GPU"] and metric(at, "Time") != "—"


def test_custom_gpu_is_named_as_entered(home):
    at = app().run()
    at.radio(key="gpu_mode").set_value("Custom").run()
    at.text_input(key="custom_name").input("Lab RTX 6000").run()
    at.selectbox(key="model").set_value("llama-3.1-70b").run()
    assert not at.exception
    assert "Lab RTX 6000" in at.info[0].value and "a100" not in at.info[0].value.lower()


@pytest.fixture
def tiny_model(tmp_path):
    """A tiny random Llama saved as a real model folder."""
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=128, vocab_size=512)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


@pytest.mark.slow
def test_trial_run_finishes_and_history_survives_restart(home, tiny_model):
    at = app().run()
    at.radio(key="view").set_value("Trial run").run()
    at.selectbox(key="trial_method").set_value("lora")
    at.radio(key="trial_source").set_value("Local model folder").run()
    at.text_input(key="trial_folder").input(str(tiny_model))
    at.number_input(key="trial_steps").set_value(3)
    at.number_input(key="trial_seq_lora").set_value(32)
    at.button(key="trial_launch").click().run()
    assert not at.exception, at.exception
    run_id = at.session_state["run_id"]
    deadline = time.time() + 180
    while time.time() < deadline:
        at.run()
        if any(m.value.startswith("**Estimated vs measured**") for m in at.markdown):
            break
        time.sleep(1)
    assert any(m.value.startswith("**Estimated vs measured**") for m in at.markdown), [e.value for e in at.error]
    cmp = frame_with(at, "quantity")
    assert list(cmp["quantity"])[:2] == ["peak allocated", "tokens per second"]
    assert 0.5 < float(cmp.iloc[0]["measured / estimated"].rstrip("×")) < 2
    assert "None" not in cmp.to_string()
    # "Adjust for this machine" changed this run only: listed as an adaptation, not in the exported plan.
    from tuners import launch
    res = launch.result(run_id)
    exported = json.loads((Path(res["project"]) / "plan.json").read_text())
    assert res["settings"]["seq_len"] == 32 and exported["settings"]["seq_len"] != 32
    assert any(a.startswith("adjusted for this machine: seq len 32") for a in res["adaptations"])
    assert "| seq_len | 32 |" not in (Path(res["project"]) / "README.md").read_text()

    fresh = app().run()  # a new app session: the history comes from the store
    fresh.radio(key="view").set_value("History").run()
    history = frame_with(fresh, "run")
    assert run_id in list(history["run"]) and history.iloc[0]["status"] == "completed"


def test_app_renders_without_importing_torch(home):
    """Fast start: the page path never imports torch (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import sys; from streamlit.testing.v1 import AppTest; "
            f"at = AppTest.from_file({APP!r}, default_timeout=90).run(); "
            "assert not at.exception, at.exception; print('torch' in sys.modules, 'transformers' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "TUNING_ADVISOR_HOME": str(home)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-2:] == ["False", "False"]


def test_a_data_file_fills_the_plans_data_facts(home, tmp_path):
    """A data file replaces the typed counts: the plans carry its example count, token lengths and path,
    and the sequence length follows the data (its 95th percentile), with the tokenizer named."""
    rows = [{"input": "word " * (20 + i % 50), "output": "answer " * (5 + i % 9)} for i in range(150)]
    rows.append({"input": "x", "output": ""})  # one unusable row
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    at = app().run()
    at.radio(key="data_mode").set_value("File path").run()
    at.text_input(key="data_file").input(str(path)).run()
    assert not at.exception and not at.error
    assert not [n for n in at.number_input if n.key == "num_examples"]  # the file's counts replace the inputs
    at.radio(key="view").set_value("Charts").run()
    plan = at.session_state["whatif_plan"]
    assert plan["data"]["num_examples"] == 150 and plan["data"]["path"] == str(path)
    lengths = plan["data"]["token_lengths"]
    assert lengths["p50"] < lengths["p95"] <= lengths["max"] and plan["data"]["tokens_per_example"] > 20
    assert plan["settings"]["seq_len"] == max(128, -(-lengths["p95"] // 128) * 128)
    at.radio(key="view").set_value("Recommendation").run()
    label = next(e.label for e in at.expander if e.label.startswith("Data ("))
    assert "150 usable rows" in label and f"sequence length {plan['settings']['seq_len']}" in label


def test_bad_lines_are_listed_in_the_data_section_and_the_page_goes_on(home, tmp_path):
    """25 bad lines of 27: the first 20 by number with the reason, a count of the rest, the user's file
    name; the good rows are used and the recommendation still shows (issue 26)."""
    lines = ['{"text": "fine one"}'] + ["{oops"] * 24 + ["[1, 2]", '{"text": "fine two"}']
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines))
    at = app().run()
    at.radio(key="data_mode").set_value("File path").run()
    at.text_input(key="data_file").input(str(path)).run()
    assert not at.exception and not at.error
    assert at.info[0].value.startswith("Recommended:")  # the page stays usable
    listing = next(w.value for w in at.warning if "not JSON objects" in w.value and "line 2:" in w.value)
    numbers = [int(n) for n in re.findall(r"- line (\d+):", listing)]
    assert numbers == list(range(2, 22)) and "…and 5 more" in listing and "mine.jsonl" in listing
    assert "Expecting property name" in listing
    assert any("25 lines of mine.jsonl" in w.value for w in at.sidebar.warning)
    label = next(e.label for e in at.expander if e.label.startswith("Data"))
    assert "2 usable rows" in label and "mine.jsonl" in label


def test_an_unreadable_upload_is_named_as_the_user_named_it(home, tmp_path):
    """Every line bad: the error stays in the Data section with the user's own file name (not the stored
    one), and the page goes on with the typed counts."""
    from ui.questionnaire import _save_upload

    class Upload:
        name = "my data.jsonl"

        def getvalue(self):
            return b"{oops\n{nope\n"

    stored = _save_upload(Upload())
    at = app().run()
    at.radio(key="data_mode").set_value("File path").run()
    at.text_input(key="data_file").input(stored).run()
    errors = [e.value for e in at.sidebar.error]
    assert errors and "not valid JSON" in errors[0] and Path(stored).name not in errors[0]
    assert at.info[0].value.startswith("Recommended:") and not at.exception


@pytest.mark.slow
def test_a_reload_during_a_run_shows_it_with_its_answers_and_a_working_cancel(home, tmp_path, tiny_model):
    """Launched from the app with answers of its own; a new session with ?run=ID (a reload, a link in
    another tab) opens Trial run on that run, with the same answers and its Cancel; after the cancel the
    'still running' question is gone and the cancel reads as a notice, not an error (issue 26)."""
    from tuners import launch, store

    at = app().run()
    at.selectbox(key="gpu").set_value("h100-sxm").run()
    at.number_input(key="num_examples").set_value(5000).run()
    at.selectbox(key="task").set_value("summarization").run()
    at.radio(key="view").set_value("Trial run").run()
    at.selectbox(key="trial_method").set_value("lora").run()
    at.radio(key="trial_source").set_value("Local model folder").run()
    at.text_input(key="trial_folder").input(str(tiny_model)).run()
    at.number_input(key="trial_steps").set_value(10000).run()  # the most the app allows: minutes of tiny steps
    at.number_input(key="trial_seq_lora").set_value(32).run()
    at.button(key="trial_launch").click().run()
    assert not at.exception, at.exception
    run_id = at.session_state["run_id"]
    request = store.get(run_id)["request"]
    assert request["trial_settings"]["seq_len"] == 32 and request["plan"]["settings"]["seq_len"] != 32
    assert wait_until(lambda: reached(store.get(run_id)["run_dir"], "step"), 120, poll=0.5), "no step"

    again = app()
    again.query_params["run"] = run_id
    again.run()
    assert not again.exception
    assert again.radio(key="view").value == "Trial run"
    assert again.selectbox(key="gpu").value == "h100-sxm" and again.selectbox(key="task").value == "summarization"
    assert again.number_input(key="num_examples").value == 5000
    assert again.text_input(key="trial_folder").value == str(tiny_model)
    assert any(m.value.startswith(f"**Run {run_id}**") for m in again.markdown)
    assert any("still running" in w.value for w in again.warning) and again.button(key="trial_launch").disabled
    again.button(key=f"cancel_{run_id}").click().run()
    assert launch.follow(run_id, timeout=60)["status"] == "cancelled"
    again.run()
    assert not any("still running" in w.value for w in again.warning) and not again.button(key="trial_launch").disabled
    assert any("cancelled, as asked" in i.value for i in again.info) and not again.error
    at.run()  # the first tab too
    assert not any("still running" in w.value for w in at.warning)
    at.radio(key="view").set_value("History").run()
    history = frame_with(at, "run").set_index("run")
    assert history.loc[run_id, "status"] == "cancelled" and history.loc[run_id, "device"] == "cpu"


def test_how_many_gpus_in_the_what_if(home):
    at = app().run()
    at.selectbox(key="model").set_value("llama-3.1-70b").run()
    at.radio(key="view").set_value("Charts").run()
    at.selectbox(key="whatif_method").set_value("full").run()
    at.toggle(key="whatif_min_gpus").set_value(True).run()
    assert not at.exception
    table = frame_with(at, "host RAM per node").set_index("sharding")
    assert table.loc["DDP (replicas)", "GPUs"] == "does not fit on 128"
    assert int(table.loc["FSDP / ZeRO-3", "GPUs"].replace(",", "")) >= 8
    assert any("Cheapest GPU type" in c.value for c in at.caption)


@pytest.mark.skipif(__import__("shutil").which("nvidia-smi") is not None, reason="a GPU machine: its memory decides")
def test_a_trial_too_big_for_this_machine_asks_first(home):
    at = app().run()
    at.selectbox(key="model").set_value("llama-3.1-70b").run()
    at.radio(key="view").set_value("Trial run").run()
    at.checkbox(key="trial_scale").uncheck().run()
    assert any("may not fit this machine" in w.value for w in at.warning)
    assert at.button(key="trial_launch").disabled


def test_models_on_this_machine_are_offered(home, tmp_path, monkeypatch):
    """The picker lists the Hugging Face cache (a fake one, laid out as the hub lays it out); a model
    whose architecture has no built-in arithmetic is derived in a child process, not in the app."""
    from tests.test_localmodels import QWEN, snapshot

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    snapshot(cache, "Qwen", "Qwen2.5-0.5B", "abc", {"config.json": json.dumps(QWEN).encode(), "tokenizer.json": b"{}"})
    tiny = {"model_type": "starcoder2", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    snapshot(cache, "bigcode", "tiny-starcoder2", "def", {"config.json": json.dumps(tiny).encode()})
    at = app().run()
    at.radio(key="model_mode").set_value("On this machine").run()
    options = at.selectbox(key="local_model").options
    assert any(o.startswith("Qwen/Qwen2.5-0.5B") for o in options) and not at.exception
    at.selectbox(key="local_model").set_value(next(o for o in options if "starcoder2" in o)).run()
    assert not at.exception and at.info[0].value.startswith("Recommended:")
    assert list((home / "specs").glob("*.json"))  # derived once, cached for the estimators
