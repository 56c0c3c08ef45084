"""One schema per setting: the CLI's options and the app's choice lists agree with the ``Setting``
entries (default, bounds, choices, the default named in the help), and no front end retypes a list of
choices or a sharding/optimizer name list of its own. No torch."""
import argparse
import ast
import re

import pytest

from advisor.cli import build_parser
from estimators import axes
from estimators.methods import REGISTRY
from estimators.plan import COMMON_SETTINGS, DATA_SETTINGS, HARDWARE_SETTINGS, setting
from tests.conftest import ROOT

# CLI option dests whose setting has another name.
ALIASES = {"examples": "num_examples"}


def _options():
    """(subcommand, action, Setting) for every option of estimate and trial that feeds a plan setting."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("estimate", "trial"):
        for action in sub.choices[command]._actions:
            try:
                yield command, action, setting(ALIASES.get(action.dest, action.dest))
            except KeyError:
                continue


OPTIONS = list(_options())


def test_the_setup_options_are_all_checked():
    names = {s.name for _, _, s in OPTIONS}
    assert {"batch_size", "grad_accum", "seq_len", "precision", "optimizer", "sharding", "num_gpus", "lora_rank",
            "adapter_size", "num_virtual_tokens", "epochs"} <= names


@pytest.mark.parametrize("command,action,spec", OPTIONS, ids=[f"{c}-{a.dest}" for c, a, _ in OPTIONS])
def test_cli_option_takes_default_choices_and_bounds_from_its_setting(command, action, spec):
    if action.choices is not None:
        assert tuple(action.choices) == tuple(spec.choices), f"--{action.dest}: choices differ from the Setting"
    if action.default not in (None, False, argparse.SUPPRESS):  # None: 'not given' (the method's default applies)
        assert action.default == spec.default, f"--{action.dest}: default {action.default!r} vs {spec.default!r}"
    named = re.search(r"\(default ([\w.-]+)", action.help or "")
    if named and spec.default is not None and not isinstance(spec.default, bool):
        shown = named.group(1)
        same = float(shown) == float(spec.default) if isinstance(spec.default, (int, float)) else shown == spec.default
        assert same, f"--{action.dest}: help names default {shown}, the Setting has {spec.default}"
    if spec.kind in (int, float) and spec.low is not None and action.type is not None:
        # The CLI is never stricter than the Setting (it accepts the low bound), and what it refuses the
        # Setting refuses too; what it lets through, the plan's validation checks against the Setting.
        action.type(str(spec.low if spec.low > 0 else 1))
        for value in (0, -1):
            try:
                action.type(str(value))
            except (argparse.ArgumentTypeError, ValueError):
                assert spec.check(spec.kind(value)) is not None, f"--{action.dest} refuses {value}, the Setting not"


def _choice_lists():
    return [set(s.choices) for s in COMMON_SETTINGS + HARDWARE_SETTINGS + DATA_SETTINGS
            + tuple(s for m in REGISTRY.values() for s in m.settings)
            if s.choices and len(s.choices) > 1 and all(isinstance(c, str) for c in s.choices)]


FRONT_ENDS = sorted((ROOT / "ui").glob("*.py")) + [ROOT / "advisor_app.py", ROOT / "advisor" / "cli.py"]


@pytest.mark.parametrize("path", FRONT_ENDS, ids=lambda p: p.name)
def test_no_front_end_retypes_a_settings_choice_list(path):
    lists = _choice_lists()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) > 1 and \
                all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            values = {e.value for e in node.elts}
            assert values not in lists, f"{path.name}:{node.lineno} retypes {sorted(values)}: read setting(...).choices"


NAMES = set(axes.SHARDINGS) - {"none"}, set(axes.OPTIMIZERS) - {"adamw"}


@pytest.mark.parametrize("path", ["estimators/memory.py", "estimators/steptime.py", "estimators/estimate.py",
                                  "tuners/runtime.py", "tuners/export.py", "tuners/trial.py", "ui/results.py"])
def test_sharding_and_optimizer_names_live_only_in_their_registries(path):
    """Only estimators/axes.py lists them; others look entries up (string literals of the names are the
    registries' job)."""
    found = [node.value for node in ast.walk(ast.parse((ROOT / path).read_text()))
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES[0] | NAMES[1]]
    assert not found, f"{path} names {sorted(set(found))}: use estimators.axes"


def test_registries_cover_the_settings_choices():
    assert setting("sharding").choices == axes.SHARDINGS and setting("optimizer").choices == axes.OPTIMIZERS
    for o in axes.OPTIMIZER_REGISTRY.values():  # each says how the runtime builds it and what it stores
        assert o.constructor.count(".") >= 1 and (o.state_copies or o.state_bytes or o.factored)
    for s in axes.SHARDING_REGISTRY.values():
        assert s.engine in ("ddp", "fully_shard") and s.label and s.assumption
        assert not s.shards_parameters or s.shards_gradients  # ZeRO stages nest (Rajbhandari et al. 2020)
