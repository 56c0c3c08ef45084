"""The Streamlit page renders through AppTest and reacts to its widgets."""
import pytest

from tests.conftest import ROOT

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


def test_default_page_renders_estimates():
    at = AppTest.from_file(str(ROOT / "advisor_app.py"), default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert set(table["method"]) == {"prompt_tuning", "lora", "qlora", "full", "adapters"}
    assert dict(zip(table["method"], table["fits"]))["full"] == "no"  # 8B full bf16 does not fit one A100-80GB

    at.selectbox(key="model").set_value("qwen2.5-0.5b").run()
    table = at.dataframe[0].value
    assert dict(zip(table["method"], table["fits"]))["full"] == "yes"
