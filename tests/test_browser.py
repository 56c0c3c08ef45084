"""A real browser: streamlit serves the app on a free localhost port; headless Chromium (Debian's,
driven by Playwright) answers the questionnaire, uploads data, sees the recommendation and the
memory chart, and launches and finishes a tiny trial run. Screenshots go to the test's temp folder."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")]
sync_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _open(p, server: str):
    """Headless Chromium on the app, once its first recommendation shows: (browser, page)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)  # a loaded 2-core machine: widgets' scripts load slowly
    page.goto(server)
    page.get_by_text("Recommended:").wait_for(timeout=180_000)
    return browser, page


def _upload(page, data):
    """The data file through the sidebar's upload; returns the sidebar."""
    sidebar = page.locator("section[data-testid='stSidebar']")
    sidebar.get_by_text("Upload a file").click()
    sidebar.locator("input[type='file']").set_input_files(str(data))
    return sidebar


def _trial_form(page, model_dir, steps: str) -> None:
    """Trial run with a local model folder and that many steps."""
    page.get_by_role("radio", name="Trial run").click(force=True)
    page.get_by_text("Local model folder").click()
    for label, value in (("Folder with config.json and weights", str(model_dir)), ("Trial steps", steps)):
        box = page.get_by_label(label)
        box.fill(value)
        box.press("Enter")


@pytest.fixture
def server(tmp_path):
    port = free_port()
    env = {**os.environ, "TUNING_ADVISOR_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "advisor_app.py"),
                             "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start")
    yield url
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def tiny_model(tmp_path):
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=128, vocab_size=512)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "tiny")
    rows = [{"prompt": f"Say hello to user {i}.", "completion": f"Hello, user {i}! Nice to see you."} for i in range(24)]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return tmp_path / "tiny", tmp_path / "data.jsonl"


def test_questionnaire_to_finished_trial_in_chromium(server, tiny_model, tmp_path):
    model_dir, data = tiny_model
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_api.sync_playwright() as p:
        browser, page = _open(p, server)
        # Answer the questionnaire: another model and GPU, and upload the data file.
        sidebar = _upload(page, data)
        page.get_by_text("usable rows (prompt_completion)").wait_for(timeout=60_000)
        sidebar.get_by_text("From the file: 24 usable examples").wait_for(timeout=30_000)  # the plan's data facts
        model_box = sidebar.get_by_label("Model (type to search", exact=False)
        model_box.click()
        page.keyboard.type("qwen2.5-7b")
        page.keyboard.press("Enter")
        page.get_by_text("Recommended:").wait_for(timeout=180_000)
        time.sleep(1)
        assert model_box.input_value().startswith("qwen2.5-7b")
        # Retyping the chosen model's name and pressing Enter keeps it (it is the list's first option).
        model_box.click()
        page.keyboard.type("qwen2.5-7b · qwen2 · 7.6B")
        page.keyboard.press("Enter")
        time.sleep(2)
        page.get_by_text("Recommended:").wait_for(timeout=180_000)
        assert model_box.input_value().startswith("qwen2.5-7b")
        model_box.click()
        page.keyboard.type("qwen3 moe")  # words find a model
        page.locator("[role='option']").filter(has_text="qwen3-30b-a3b").wait_for(timeout=10_000)
        page.keyboard.press("Escape")
        page.screenshot(path=str(shots / "recommendation.png"), full_page=True)

        page.get_by_role("radio", name="Charts").click(force=True)
        page.locator(".js-plotly-plot >> visible=true").first.wait_for(timeout=30_000)
        page.get_by_text("What if?").wait_for(timeout=30_000)
        page.get_by_text("Memory / GPU").wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "charts.png"), full_page=True)

        _trial_form(page, model_dir, "3")
        page.get_by_text("Adjust for this machine").click()
        seq = page.get_by_label("Trial sequence length")
        seq.fill("32")
        seq.press("Enter")
        time.sleep(1)
        page.get_by_role("button", name="Launch trial run").click()
        page.get_by_text("Estimated vs measured").wait_for(timeout=180_000)
        page.get_by_role("button", name="Download the plan as a runnable project (zip)").wait_for(timeout=10_000)
        page.screenshot(path=str(shots / "trial.png"), full_page=True)
        assert "run=" in page.url  # the address names the run: a reload comes back to it
        page.reload()  # comes back on the Trial view, on this run, with the answers as they were
        page.get_by_text("Estimated vs measured").wait_for(timeout=60_000)
        assert page.get_by_role("radio", name="Trial run").is_checked()
        assert model_box.input_value().startswith("qwen2.5-7b")
        browser.close()
    assert len(list(shots.glob("*.png"))) == 3
    if os.environ.get("TUNING_ADVISOR_SCREENSHOTS"):  # refresh the README's pictures from the real app
        for shot in shots.glob("*.png"):
            shutil.copy(shot, os.environ["TUNING_ADVISOR_SCREENSHOTS"])


def test_bad_lines_then_a_reload_mid_run_comes_back_and_cancels(server, tiny_model, tmp_path):
    """Issue 26 in a real browser: two bad lines of 26 are listed in the Data section (the page goes on);
    a reload mid-run opens Trial run on the run with the same answers and its Cancel; after the cancel
    the 'still running' question is gone and the cancel is a notice."""
    model_dir, _ = tiny_model
    rows = [json.dumps({"prompt": f"Say hi to {i}.", "completion": f"Hi, {i}!"}) for i in range(26)]
    rows[6], rows[11] = "{oops", "[1, 2]"
    data = tmp_path / "my-data.jsonl"
    data.write_text("\n".join(rows))
    with sync_api.sync_playwright() as p:
        browser, page = _open(p, server)
        sidebar = _upload(page, data)
        page.get_by_text("line 7:").wait_for(timeout=60_000)
        page.get_by_text("line 12:").wait_for(timeout=10_000)
        page.get_by_text("Recommended:").wait_for()  # the page goes on
        page.screenshot(path=str(tmp_path / "bad-lines.png"), full_page=True)
        _trial_form(page, model_dir, "10000")
        time.sleep(1)
        page.get_by_role("button", name="Launch trial run").click()
        page.get_by_text("loss").first.wait_for(timeout=240_000)
        assert "run=" in page.url
        page.reload()
        page.get_by_role("button", name="Cancel run").wait_for(timeout=60_000)  # the Trial view, on the run
        assert page.get_by_text("still running").first.is_visible()
        assert sidebar.get_by_text("the file of run").is_visible()  # the upload came back with the run
        page.screenshot(path=str(tmp_path / "reloaded.png"), full_page=True)
        page.get_by_role("button", name="Cancel run").click()
        page.get_by_text("cancelled, as asked").wait_for(timeout=60_000)
        time.sleep(3)
        assert page.get_by_text("still running").count() == 0
        page.screenshot(path=str(tmp_path / "cancelled.png"), full_page=True)
        browser.close()
