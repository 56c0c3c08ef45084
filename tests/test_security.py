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
