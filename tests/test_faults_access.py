"""Network mode's token by header or cookie (issue 27, privacy): ``Authorization: Bearer <token>`` or
the ``tuning_advisor_token`` cookie lets a session in without the token ever being in the address;
a wrong one is refused. Unit tests of the functions that read the request's headers and cookies, the
app through AppTest, and a real Chromium sending the header and the cookie (slow)."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT
from ui import access

TOKEN = "0f3c9a7e-token-for-tests"


@pytest.fixture
def expected(monkeypatch):
    monkeypatch.setenv("TUNING_ADVISOR_TOKEN", TOKEN)
    return TOKEN


@pytest.mark.parametrize("headers, cookies, found", [
    ({"Authorization": f"Bearer {TOKEN}"}, {}, TOKEN),
    ({"authorization": f"bearer   {TOKEN}  "}, {}, TOKEN),  # header names and the scheme are case-insensitive
    ({"Authorization": f"Basic {TOKEN}"}, {}, None),  # another scheme is not our token
    ({"Authorization": "Bearer "}, {}, None),
    ({}, {"tuning_advisor_token": TOKEN}, TOKEN),
    ({}, {"other_cookie": TOKEN}, None),
    ({"Authorization": "Bearer from-header"}, {"tuning_advisor_token": "from-cookie"}, "from-header"),
    ({}, {}, None),
])
def test_the_token_sent_with_the_request(headers, cookies, found):
    assert access.sent_token(headers, cookies) == found


def test_any_offered_token_that_matches_lets_the_session_in(expected):
    assert access.token_problem(expected, None, None) is None
    assert access.token_problem(None, expected, None) is None
    assert access.token_problem("wrong", None, expected) is None  # a stale header, then the right one typed
    assert access.token_problem("wrong", None, None) == "the access token is not right"
    assert access.token_problem(expected[:-1], None, None) == "the access token is not right"  # a prefix is not it
    assert access.token_problem(expected + "x", None, None) == "the access token is not right"
    assert "enter the access token" in access.token_problem(None, None, "")
    assert expected not in (access.token_problem("wrong") or "")  # never shown


def test_no_token_set_refuses_whatever_is_sent(monkeypatch):
    monkeypatch.delenv("TUNING_ADVISOR_TOKEN", raising=False)
    assert "TUNING_ADVISOR_TOKEN is not set" in access.token_problem("anything", "anything", "anything")


def test_the_gate_reads_the_headers_and_cookies_of_the_request(expected, monkeypatch, tmp_path):
    """The app's gate with Streamlit's request context replaced by fixed mappings (AppTest sends no
    headers): the header or cookie lets the page through with no token field shown."""
    import streamlit

    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TUNING_ADVISOR_NETWORK", "1")
    script = tmp_path / "gate_app.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport streamlit as st\nfrom ui import access\n"
                      "access.gate()\nst.write('inside the app')\n")
    for headers, cookies, inside in [({"Authorization": f"Bearer {expected}"}, {}, True),
                                     ({}, {"tuning_advisor_token": expected}, True),
                                     ({"Authorization": "Bearer wrong"}, {}, False), ({}, {}, False)]:
        monkeypatch.setattr(streamlit, "context", type("Request", (), {"headers": headers, "cookies": cookies}))
        at = AppTest.from_file(str(script), default_timeout=30).run()
        assert not at.exception
        assert ("inside the app" in [m.value for m in at.markdown]) == inside, (headers, cookies)
        assert bool(at.text_input) != inside  # the token field only when the request did not carry it
        if headers.get("Authorization") == "Bearer wrong":
            assert at.error[0].value == "the access token is not right"


# --- a real browser -------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")
def test_chromium_gets_in_with_the_header_or_the_cookie(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    port = _free_port()
    env = {**os.environ, "TUNING_ADVISOR_HOME": str(tmp_path / "home"), "TUNING_ADVISOR_NETWORK": "1",
           "TUNING_ADVISOR_TOKEN": TOKEN, "HF_HUB_CACHE": str(tmp_path / "hub")}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "advisor_app.py"),
                             "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "streamlit did not start"
                time.sleep(0.5)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])

            def page_for(headers=None, cookie=None):
                context = browser.new_context(extra_http_headers=headers or {})
                if cookie:
                    context.add_cookies([{"name": access.COOKIE, "value": cookie, "url": url}])
                page = context.new_page()
                page.goto(url)
                return page

            page = page_for(headers={"Authorization": f"Bearer {TOKEN}"})
            page.get_by_text("Recommended:").wait_for(timeout=90_000)
            assert page.get_by_label("Access token").count() == 0 and "token" not in page.url

            page = page_for(cookie=TOKEN)
            page.get_by_text("Recommended:").wait_for(timeout=90_000)

            page = page_for(headers={"Authorization": "Bearer wrong"})
            page.get_by_text("the access token is not right").wait_for(timeout=60_000)
            assert page.get_by_text("Recommended:").count() == 0
            page.get_by_label("Access token").fill(TOKEN)
            page.get_by_label("Access token").press("Enter")
            page.get_by_text("Recommended:").wait_for(timeout=90_000)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    assert TOKEN not in (tmp_path / "server.log").read_text()  # never logged
