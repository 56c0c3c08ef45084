import os
import re
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests never read or write the user's run store or calibration records.
os.environ["TUNING_ADVISOR_HOME"] = tempfile.mkdtemp(prefix="tuning-advisor-tests-")


_WHOLLY_SLOW = re.compile(r"^pytestmark = \[?pytest\.mark\.slow\b", re.M)


def pytest_ignore_collect(collection_path, config):
    """The fast tier (``-m "not slow"``, ``make test-fast``) does not even import a test module marked
    slow as a whole: none of its tests would run, and importing it costs torch, transformers and peft."""
    if collection_path.suffix == ".py" and config.option.markexpr.replace(" ", "") == "notslow":
        if _WHOLLY_SLOW.search(collection_path.read_text()):
            return True
    return None


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


# --- recommendations computed once per session ---------------------------------------------------

_RECOMMENDATIONS: dict = {}


def recommend_once(answers: dict):
    """The recommendation for a questionnaire's answers (a dict), computed once per test session and
    shared read-only by the scenario tables and the property test that re-checks them all (recommend
    is deterministic: tests/test_recommend.py checks it). About half a second per call saved."""
    import json

    from advisor.answers import Answers
    from advisor.recommend import recommend

    key = json.dumps(answers, sort_keys=True, default=str)
    if key not in _RECOMMENDATIONS:
        _RECOMMENDATIONS[key] = recommend(Answers.from_dict(answers))
    return _RECOMMENDATIONS[key]


# --- shared fixtures: tiny model folders and data files (built once per session) ------------------

TINY_LLAMA = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, vocab_size=512, max_position_embeddings=512, tie_word_embeddings=False)
"""A two-layer Llama of ~140k parameters: real steps of every method in well under a second."""

COLOURS = ["red", "green", "blue", "gold"]


def colour_rows(n: int) -> list[dict]:
    """``n`` short input/output pairs (four distinct ones, repeated): a loss that can fall in a few steps."""
    return [{"input": f"Q{i % 4}: say the colour.", "output": f"The colour is {COLOURS[i % 4]}."} for i in range(n)]


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A folder with ``model/`` (tiny Llama, random weights), ``teacher/`` (a wider, deeper one) and
    ``train.jsonl`` (64 rows)."""
    import json

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA)).save_pretrained(root / "model")
    teacher = dict(TINY_LLAMA, num_hidden_layers=3, hidden_size=96, intermediate_size=192)
    transformers.LlamaForCausalLM(transformers.LlamaConfig(**teacher)).save_pretrained(root / "teacher")
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in colour_rows(64)))
    return root
