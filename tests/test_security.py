"""Safe by default: the app as `make run` starts it listens on the loopback address only, and the
project's Streamlit config turns off usage statistics and in-browser tracebacks.

The check reads the listening socket from /proc/net/tcp (and tcp6): no traffic is sent anywhere but
127.0.0.1."""
import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _listening_addresses(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_project_config_is_local_and_quiet():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["browser"]["gatherUsageStats"] is False and cfg["client"]["showErrorDetails"] == "none"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_the_app_listens_on_loopback_only(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # What `make run` runs (plus a free port): the address comes from .streamlit/config.toml.
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "advisor_app.py", "--server.port", str(port)],
                            cwd=ROOT, env={**os.environ, "TUNING_ADVISOR_HOME": str(tmp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "the app did not start"
                time.sleep(0.5)
        addresses = _listening_addresses(port)
        # 0100007F is 127.0.0.1 in /proc's byte order; any 0.0.0.0 or :: wildcard would be "every interface".
        assert addresses == {"0100007F"}, addresses
    finally:
        proc.terminate()
        proc.wait(10)


# --- network mode: a token, and file paths confined to the allowed roots ---------------------------

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture
def network(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TUNING_ADVISOR_NETWORK", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TUNING_ADVISOR_ALLOWED_ROOTS", str(tmp_path / "shared"))
    (tmp_path / "shared").mkdir()
    return tmp_path


def _app():
    return AppTest.from_file(str(ROOT / "advisor_app.py"), default_timeout=90)


def test_network_mode_without_a_token_set_refuses_to_serve(network, monkeypatch):
    monkeypatch.delenv("TUNING_ADVISOR_TOKEN", raising=False)
    at = _app().run()
    assert not at.exception and "TUNING_ADVISOR_TOKEN is not set" in at.error[0].value
    assert not at.sidebar.selectbox and not at.dataframe  # nothing else is shown


def test_network_mode_asks_for_the_token(network, monkeypatch):
    monkeypatch.setenv("TUNING_ADVISOR_TOKEN", "s3cret-token")
    at = _app().run()
    assert "access token" in at.error[0].value and not at.dataframe
    at.text_input(key="_access_token").set_value("wrong").run()
    assert "not right" in at.error[0].value and not at.dataframe
    at.text_input(key="_access_token").set_value("s3cret-token").run()
    assert not at.exception and not at.error and at.dataframe  # the recommendation shows


def _in_network_app(monkeypatch):
    monkeypatch.setenv("TUNING_ADVISOR_TOKEN", "t")
    at = _app()
    at.query_params["token"] = "t"
    return at.run()


def test_paths_outside_the_allowed_roots_are_refused_alike(network, monkeypatch):
    at = _in_network_app(monkeypatch)
    at.radio(key="data_mode").set_value("File path").run()
    messages = []
    for path in ("/etc/passwd", "/etc/no-such-file-here", str(network / "shared" / ".." / "home2" / "x.jsonl")):
        at.text_input(key="data_file").set_value(path).run()
        assert not at.exception
        messages.append([e.value for e in at.error])
    assert messages[0] == messages[1] and "allowed folders" in messages[0][0]  # exists or not: the same answer
    assert "root:" not in str(messages)
    (network / "shared" / "d.jsonl").write_text('{"text": "hello there"}\n' * 5)
    at.text_input(key="data_file").set_value(str(network / "shared" / "d.jsonl")).run()
    assert not at.exception and not at.error  # inside a root: read
    at.radio(key="model_mode").set_value("Local folder").run()
    at.text_input(key="model_folder").set_value("/usr").run()
    assert "allowed folders" in at.error[0].value
    at.radio(key="model_mode").set_value("On this machine").run()
    at.text_input(key="local_folders").set_value("/usr/lib").run()  # no scanning of the server's disk either
    assert "allowed folders" in at.error[0].value


def test_locally_any_path_is_the_users_own(tmp_path, monkeypatch):
    from ui import access

    monkeypatch.delenv("TUNING_ADVISOR_NETWORK", raising=False)
    monkeypatch.setattr("streamlit.get_option", lambda name: "127.0.0.1")
    assert access.checked_path("/etc/hosts", "data files") == "/etc/hosts"
    monkeypatch.setattr("streamlit.get_option", lambda name: "0.0.0.0")
    assert access.network_mode()
    with pytest.raises(Exception, match="allowed folders"):
        access.checked_path("/etc/hosts", "data files")


def test_uploads_are_private_and_move_into_their_run(tmp_path, monkeypatch):
    from tuners import launch, store

    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path / "home"))
    up = store.uploads() / "abc-data.jsonl"
    store.write_private(up, b'{"text": "x"}\n')
    assert (up.stat().st_mode & 0o777, up.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    run_id, run_dir = store.new_run({"plan": {"model": "m", "method": "lora", "data": {"path": str(up)}}})
    request = store.get(run_id)["request"]
    launch._adopt_upload(run_id, run_dir, request)
    moved = run_dir / "data" / "abc-data.jsonl"
    assert not up.exists() and moved.read_bytes() == b'{"text": "x"}\n' and moved.stat().st_mode & 0o777 == 0o600
    assert store.get(run_id)["request"]["plan"]["data"]["path"] == str(moved)
