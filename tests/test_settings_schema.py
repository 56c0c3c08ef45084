"""One schema per setting: the CLI's options are generated from the ``Setting`` entries (default,
bounds, choices, help), ``TrainSetup``'s defaults and the app's widgets agree with them, and no front
end retypes a list of choices or a sharding/optimizer name list of its own. No torch."""
import argparse
import ast
import re

import pytest

from advisor.cli import build_parser
from advisor.cli.options import OPTIONS as PLAN_OPTIONS
from advisor.cli.options import TRIAL_OPTIONS
from estimators import axes
from estimators.methods import REGISTRY
from estimators.plan import COMMON_SETTINGS, DATA_SETTINGS, HARDWARE_SETTINGS, setting
from estimators.setup import TrainSetup
from tests.conftest import ROOT

# CLI option dests whose setting has another name.
ALIASES = {"examples": "num_examples"}
COMMANDS = ("estimate", "trial")
# Options of estimate and trial that are not plan settings (what to do, not what the plan is).
NOT_SETTINGS = {"help", "plan", "model", "method", "json", "estimate_data", "min_gpus", "max_hours", "max_cost",
                "dry_run", "data", "scale_down", "keep_model", "force", "trust_remote_code"}


def _options():
    """(subcommand, action, Setting) for every option of estimate and trial that feeds a plan setting."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in COMMANDS:
        for action in sub.choices[command]._actions:
            try:
                yield command, action, setting(ALIASES.get(action.dest, action.dest))
            except KeyError:
                continue


GENERATED = {**PLAN_OPTIONS, **TRIAL_OPTIONS}
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
        action.type(str(spec.low if spec.low > 0 else (1 if spec.high is None or spec.high >= 1 else spec.high)))
        for value in (0, -1):
            try:
                action.type(str(value))
            except (argparse.ArgumentTypeError, ValueError):
                assert spec.check(spec.kind(value)) is not None, f"--{action.dest} refuses {value}, the Setting not"


def _choice_lists():
    return [set(s.choices) for s in COMMON_SETTINGS + HARDWARE_SETTINGS + DATA_SETTINGS
            + tuple(s for m in REGISTRY.values() for s in m.settings)
            if s.choices and len(s.choices) > 1 and all(isinstance(c, str) for c in s.choices)]


CLI_FILES = sorted((ROOT / "advisor" / "cli").glob("*.py"))
FRONT_ENDS = sorted((ROOT / "ui").glob("*.py")) + [ROOT / "advisor_app.py"] + CLI_FILES


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
                                  "tuners/runtime.py", "tuners/export.py", "tuners/trial.py", "ui/results.py",
                                  "estimators/transfer.py", "estimators/stepwork.py", "tuners/traindata.py"])
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


# --- generated, not retyped ------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_plan_option_is_a_setting(command):
    """An option that describes the plan but has no Setting (a hand-written default or bound) fails here."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices[command]._actions:
        if action.dest in NOT_SETTINGS:
            continue
        spec = setting(ALIASES.get(action.dest, action.dest))  # KeyError: an option with no Setting
        assert action.dest in GENERATED and GENERATED[action.dest].setting is spec, action.dest


@pytest.mark.parametrize("command,action,spec", OPTIONS, ids=[f"{c}-{a.dest}" for c, a, _ in OPTIONS])
def test_cli_option_is_generated_from_its_setting(command, action, spec):
    assert spec.help in (action.help or ""), f"--{action.dest}: help not the Setting's"
    assert action.default in (None, spec.default), f"--{action.dest}: default {action.default!r} not the Setting's"
    if spec.kind in (int, float):
        assert getattr(action.type, "setting", None) is spec, f"--{action.dest}: bounds not the Setting's"
        if spec.high is not None:  # the setting's own bounds: the top is accepted, above it refused
            top = spec.kind(spec.high)
            if spec.choices is None:
                assert action.type(str(top)) == top
                with pytest.raises(argparse.ArgumentTypeError):
                    action.type(str(top * 2 + 1))
    if spec.kind is bool:
        assert action.const is (not spec.default), f"--{action.dest} does not turn the setting from its default"


@pytest.mark.parametrize("path", CLI_FILES, ids=lambda p: p.name)
def test_the_cli_source_types_no_choice_list(path):
    """choices= in advisor/cli/ always comes from a registry or a Setting, never a literal list."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            for kw in node.keywords:
                assert not (kw.arg == "choices" and isinstance(kw.value, (ast.Tuple, ast.List, ast.Set))), \
                    f"{path.name}:{node.lineno} types a choice list"


# TrainSetup fields whose setting has another name; fields that are no plan setting.
SETUP_ALIASES = {"examples": "num_examples"}
SETUP_ONLY = {"method", "device", "adapters_16bit", "length_quantiles"}


def test_trial_options_defaults_are_the_settings_defaults():
    from estimators.plan import TRIAL_SETTINGS
    from tuners.trial import TrialOptions  # no torch at import

    for spec in TRIAL_SETTINGS:
        assert TrialOptions.__dataclass_fields__[spec.name].default == spec.default, spec.name


def test_train_setup_defaults_are_the_settings_defaults():
    for name, f in TrainSetup.__dataclass_fields__.items():
        if name in SETUP_ONLY:
            continue
        spec = setting(SETUP_ALIASES.get(name, name))
        assert f.default == spec.default, f"TrainSetup.{name} = {f.default!r}, the Setting says {spec.default!r}"


@pytest.mark.parametrize("name", ["batch_size", "seq_len", "lora_rank", "num_virtual_tokens", "adapter_size",
                                  "num_gpus", "grad_accum", "epochs"])
def test_train_setup_accepts_what_its_setting_accepts(name):
    """TrainSetup's own checks are never stricter than the Setting's lower bound."""
    spec = setting(name)
    method = "lora" if name in ("lora_rank",) else ("prompt_tuning" if name == "num_virtual_tokens" else
                                                   "adapters" if name == "adapter_size" else "full")
    TrainSetup(method=method, **{name: spec.kind(spec.low if spec.low else 1)})


# App widgets whose value feeds a plan setting, by the start of their session key.
UI_KEYS = {"wi_batch": "batch_size", "wi_seq": "seq_len", "wi_rank": "lora_rank", "wi_dropout": "lora_dropout", "wi_accum": "grad_accum",
           "wi_epochs": "epochs", "wi_gpus": "num_gpus", "trial_batch": "batch_size", "trial_seq": "seq_len",
           "num_gpus": "num_gpus", "custom_mem": "gpu_memory_gib", "custom_tflops": "gpu_tflops",
           "custom_price": "price_per_hour", "num_tasks": "tasks", "num_examples": "num_examples",
           "avg_tokens_per_example": "tokens_per_example", "host_memory": "host_memory_gib", "trial_steps": "steps",
           "trial_nproc": "nproc"}


def _ui_bounds():
    """(file:line, setting, label, numbers the widget offers as bounds or stops) for each mapped widget."""
    for path in sorted((ROOT / "ui").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") in
                    ("number_input", "slider", "select_slider")):
                continue
            key = next((kw.value for kw in node.keywords if kw.arg == "key"), None)
            text = key.value if isinstance(key, ast.Constant) else (
                key.values[0].value if isinstance(key, ast.JoinedStr) and isinstance(key.values[0], ast.Constant)
                else "")
            name = next((v for k, v in UI_KEYS.items() if text.rstrip("_") == k or text.startswith(k + "_")), None)
            if name is None:
                continue
            label = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else ""
            numbers = [n.value for arg in node.args[1:3] for n in ast.walk(arg)
                       if isinstance(n, ast.Constant) and isinstance(n.value, (int, float))
                       and not isinstance(n.value, bool)]
            yield f"{path.name}:{node.lineno}", name, label, numbers


UI_BOUNDS = list(_ui_bounds())


def test_the_app_widgets_are_found():
    assert {"batch_size", "num_gpus", "seq_len"} <= {name for _, name, _, _ in UI_BOUNDS}


@pytest.mark.parametrize("where,name,label,numbers", UI_BOUNDS, ids=[w for w, *_ in UI_BOUNDS])
def test_app_widget_bounds_lie_within_the_setting(where, name, label, numbers):
    """A widget may offer less than its setting allows, never more (0 may stand for 'none' when its label says so)."""
    spec = setting(name)
    for value in numbers:
        if value == 0 and "(0 =" in label:
            continue
        assert spec.check(spec.kind(value)) is None, f"{where}: {label!r} offers {value}: {spec.check(spec.kind(value))}"


def test_each_sharding_communicates_one_way():
    """Per step a strategy all-reduces (DDP), gathers once after the step (ZeRO-1/2) or gathers every
    micro-batch (ZeRO-3/FSDP): exactly one, as estimators/transfer.py prices them."""
    for s in axes.SHARDING_REGISTRY.values():
        ways = [not s.shards_optimizer, s.gathers_after_step, s.shards_parameters]
        assert sum(ways) == 1, s.id
        assert s.host_optimizer in ("deepspeed", "torch"), s.id
    # torch's CPU AdamW is what FSDP2's offload steps; DeepSpeed's engines (ZeRO-Offload, ZeRO-3) their own.
    assert {s.id for s in axes.SHARDING_REGISTRY.values() if s.host_optimizer == "torch"} == {"fsdp"}
    assert {s.id for s in axes.SHARDING_REGISTRY.values() if s.gathers_after_step} == {"zero1", "zero2"}
