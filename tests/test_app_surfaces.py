"""What the app shows, formatted for people (issue 26): durations and money at every magnitude,
settings with labels and units, errors without command-line flags or temp paths, a plan that does not
fit shows no time or cost and the trial asks first, and the CLI's last line stands on its own."""
import io
import json
from contextlib import redirect_stderr

import pytest

from tests.conftest import ROOT
from ui.results import fmt_hours, fmt_usd, plain, settings_table

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.mark.parametrize("seconds,shown", [(0.2, "< 1 s"), (42, "42 s"), (1020, "17 min"), (12240, "3.4 h"),
                                           (216000, "2.5 days"), (None, "—")])
def test_durations_at_every_magnitude(seconds, shown):
    assert fmt_hours(seconds) == shown


@pytest.mark.parametrize("usd,shown", [(0, "$0"), (0.004, "< $0.01"), (0.01, "$0.01"), (12.5, "$12.50"),
                                       (123456.7, "$123,457")])
def test_money_at_every_magnitude(usd, shown):
    assert fmt_usd(usd) == shown


def test_settings_have_labels_and_units_not_keys():
    table = settings_table({"batch_size": 4, "seq_len": 512, "gradient_checkpointing": True, "lr": 0.0002,
                            "epochs": 2.0, "lora_rank": 16, "optimizer": "adamw"})
    shown = dict(zip(table.index, table["value"]))
    assert shown == {"Micro-batch": "4 sequences per GPU", "Sequence length": "512 tokens",
                     "Gradient checkpointing": "on", "Learning rate": "2.0e-4 peak",
                     "Epochs": "2 passes over the data", "LoRA rank r": "16", "Optimizer": "AdamW"}
    assert "True" not in table.to_string() and "batch_size" not in table.to_string()


def test_errors_speak_the_apps_language():
    from tuners import store

    msg = plain(f"model folder '{store.home()}/runs/abc/model' has no config.json (point --model at a Hugging Face "
                "model folder); or give --data FILE")
    assert "--" not in msg and str(store.home()) not in msg and "'model'" in msg and "a data file" in msg


def test_the_cli_trials_last_line_is_on_its_own():
    from advisor.formatting import _progress, format_trial

    err = io.StringIO()
    with redirect_stderr(err):
        _progress({"event": "step", "step": 2, "steps": 10, "loss": 1.0, "seconds": 0.1})
        out = format_trial({"run_id": "r1", "status": "failed", "error": "out of memory"})
    assert err.getvalue().endswith("\n") and out == "run r1 failed: out of memory"


def test_a_plan_that_does_not_fit_shows_no_time_or_cost_and_the_trial_asks(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path / "home"))
    at = AppTest.from_file(str(ROOT / "advisor_app.py"), default_timeout=90).run()
    at.selectbox(key="model").set_value("llama-3.1-70b").run()
    at.selectbox(key="gpu").set_value("rtx-4090").run()
    table = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    over = table[table["verdict"] == "does not fit"]
    assert len(over) >= 1 and set(over["time"]) == {"— (does not fit)"} and set(over["cost"]) == {"— (does not fit)"}
    assert any(m.value.startswith(":material/block: **Does not fit:**") and "no time or cost" in m.value
               and "What would fit" in m.value for m in at.markdown)
    at.radio(key="view").set_value("Trial run").run()
    at.selectbox(key="trial_method").set_value("full").run()
    assert any("does not fit the chosen GPU" in w.value for w in at.warning)
    assert at.button(key="trial_launch").disabled
    at.checkbox(key="trial_nofit").check().run()
    assert not at.button(key="trial_launch").disabled or any("may not fit this machine" in w.value for w in at.warning)


def test_model_labels_find_models_by_words():
    from ui.questionnaire import model_labels

    labels = model_labels()

    def found(words):  # every word in the label, as a search box filters
        return [i for i, text in labels.items() if all(w in text.lower() for w in words.split())]

    assert "llama-3.1-8b" in found("llama 8.0b") and "qwen3-30b-a3b" in found("qwen3 moe")
    assert json.dumps(labels)  # plain strings
