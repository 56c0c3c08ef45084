import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests never read or write the user's run store or calibration records.
os.environ["TUNING_ADVISOR_HOME"] = tempfile.mkdtemp(prefix="tuning-advisor-tests-")


def wait_until(condition, within: float, poll: float = 0.1) -> bool:
    """Polls ``condition()`` until it is true (True) or ``within`` seconds pass (False)."""
    deadline = time.time() + within
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(poll)
    return True


def reached(run_dir, event: str) -> bool:
    """Whether a run's events include ``event``."""
    from tuners import store

    return any(e["event"] == event for e in store.events(run_dir))
