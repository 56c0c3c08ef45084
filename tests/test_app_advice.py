"""The app's recommendation panel shows issue 11's advice: the retrieval hybrid, what would meet the
budget, tight fits and each method's suitability verdict (Streamlit AppTest)."""
import pytest

from tests.conftest import ROOT

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
APP = str(ROOT / "advisor_app.py")


@pytest.fixture
def at(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path / "home"))
    return AppTest.from_file(APP, default_timeout=90).run()


def test_hybrid_and_budget_fit_in_the_panel(at):
    at.multiselect(key="goals").set_value(["style", "factual_recall"]).run()
    at.number_input(key="num_examples").set_value(500_000).run()
    at.number_input(key="max_hours").set_value(1.0).run()
    assert not at.exception
    assert any("Hybrid" in s.value and "retrieval (RAG)" in s.value for s in at.success)
    assert at.info[0].value.startswith("No method meets the budget")
    budget = [m.value for m in at.markdown if "**Budget:**" in m.value]
    assert len(budget) >= 5 and all("over the 1 h time budget" in b for b in budget[:3])
    table = next(d.value for d in at.dataframe if "suitability" in d.value.columns)
    assert set(table["suitability"]) <= {"good fit", "possible", "poor fit", "not applicable"}
    assert set(table["verdict"]) == {"over budget"}


def test_encoder_lists_every_method_with_verdicts(at):
    at.selectbox(key="model").set_value("bert-base-uncased").run()
    at.multiselect(key="goals").set_value(["small_footprint"]).run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "suitability" in d.value.columns)
    assert len(table) == 7
    assert table.set_index("method").loc["Distillation", "suitability"] == "not applicable"
    assert any("Why not applicable" in c.value and "half the layers" in c.value for c in at.caption)
