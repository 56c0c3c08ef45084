"""The Streamlit app through AppTest: defaults, reacting to answers, bad input, a real trial run, history."""
import os
import time

import pytest

from estimators.methods import REGISTRY
from tests.conftest import ROOT

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
    assert [t.label for t in at.tabs] == ["Recommendation", "Charts", "Trial run", "History"]


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
    assert metric(at, "Memory / GPU") == table.loc[first, "memory / GPU"]
    assert metric(at, "Time") == table.loc[first, "time"] != "—"
    assert metric(at, "Cost") == table.loc[first, "cost"] and metric(at, "Cost").startswith("$")
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


@pytest.mark.slow
def test_trial_run_finishes_and_history_survives_restart(home, tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=128, vocab_size=512)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "tiny")
    at = app().run()
    at.selectbox(key="trial_method").set_value("lora")
    at.radio(key="trial_source").set_value("Local model folder").run()
    at.text_input(key="trial_folder").input(str(tmp_path / "tiny"))
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
    assert 0.5 < cmp.iloc[0]["measured / estimated"] < 2

    fresh = app().run()  # a new app session: the history comes from the store
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
