"""Imports flow one way: estimators/ and advisor/ stay pure (no torch, transformers, peft, streamlit),
estimators/ never reaches into advisor/ or tuners/, and of advisor/ only the CLI front end (the
advisor/cli/ package) starts trials, so only it may import tuners. Checked on the source, so it cannot miss a lazy import."""
import ast

import pytest

from tests.conftest import ROOT

HEAVY = {"torch", "transformers", "peft", "bitsandbytes", "streamlit", "accelerate"}


def imported(path) -> set[str]:
    """Top-level package names a module imports anywhere (module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


ADVISOR = sorted((ROOT / "advisor").rglob("*.py"))
FRONT_END = ROOT / "advisor" / "cli"
PURE = sorted((ROOT / "estimators").rglob("*.py")) + ADVISOR


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_packages_import_no_heavy_library(path):
    assert not imported(path) & HEAVY


@pytest.mark.parametrize("path", sorted((ROOT / "estimators").rglob("*.py")), ids=lambda p: p.name)
def test_estimators_import_neither_advisor_nor_tuners(path):
    assert not imported(path) & {"advisor", "tuners", "ui"}


@pytest.mark.parametrize("path", ADVISOR, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_cli_front_end_imports_tuners(path):
    if FRONT_END not in path.parents:
        assert "tuners" not in imported(path), f"{path.relative_to(ROOT)} imports tuners: only advisor/cli/ may"


def test_the_cli_is_a_package_of_commands():
    """The front end is advisor/cli/ (one module per command), not a module beside the pure ones."""
    assert not (ROOT / "advisor" / "cli.py").exists()
    commands = {p.stem for p in FRONT_END.glob("*.py")} - {"__init__", "__main__", "options", "parsing"}
    assert {"estimate", "recommend", "trial", "export", "runs", "catalog"} <= commands
    assert any("tuners" in imported(p) for p in FRONT_END.glob("*.py"))  # the check above sees the package
