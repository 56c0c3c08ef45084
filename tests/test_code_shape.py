"""Functions a screen long: none over 60 lines in the trial recipe (tuners/trial.py), the exported
runtime (tuners/runtime.py and the files copied beside it: traindata.py, trainloop.py) and the CLI
front end (advisor/cli/). Checked on the source with ast."""
import ast

import pytest

from tests.conftest import ROOT

LIMIT = 60
FILES = [ROOT / "tuners" / "trial.py", ROOT / "tuners" / "runtime.py", ROOT / "tuners" / "traindata.py",
         ROOT / "tuners" / "trainloop.py", *sorted((ROOT / "advisor" / "cli").glob("*.py"))]


def long_functions(source: str, limit: int = LIMIT) -> list[tuple[str, int]]:
    """(name, lines) of every function or method longer than ``limit`` lines, nested ones included."""
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit]


def test_the_counter_sees_a_long_function_and_passes_a_short_one():
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    assert long_functions(f"def long():\n{body}\n") == [("long", LIMIT + 1)]
    assert long_functions("class A:\n    def short(self):\n        return 1\n") == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_over_60_lines(path):
    assert path.exists()
    found = long_functions(path.read_text())
    assert not found, f"{path.relative_to(ROOT)}: {found} over {LIMIT} lines: split into steps"
