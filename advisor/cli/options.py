"""The options that describe a plan (``estimate`` and ``trial``), generated from the ``Setting``
entries: each option's default, bounds, choices and help are its setting's (estimators/plan.py, the
method registry). This module only says which settings the command line shows, in which group, and
how a user spells a few of them; and it turns the parsed options back into a ``Plan``."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

from estimators.catalog import GPU, custom_gpu, gpu_by_id
from estimators.errors import InputError
from estimators.methods import REGISTRY, Setting
from estimators.plan import (COMMON_SETTINGS, DATA_SETTINGS, HARDWARE_SETTINGS, PLAN_FIELDS, TRIAL_SETTINGS, Plan,
                             setting)
from estimators.setup import METHODS, TrainSetup
from advisor.answers import SPEED_SETTINGS  # one list: the answers' speed and these options
from advisor.cli.parsing import setting_type

# The settings shown as options, by group (the order of --help).
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("training setup", ("batch_size", "seq_len", "precision", "mixed_precision", "optimizer",
                        "gradient_checkpointing", "attention", "grad_accum")),
    ("method options", ("lora_rank", "lora_targets", "lora_dropout", "quant_bits", "double_quant", "num_virtual_tokens",
                        "adapter_size", "teacher", "teacher_quant_bits", "teacher_logits")),
    ("hardware and budget", ("gpu", "gpu_memory_gib", "gpu_tflops", "num_gpus", "sharding", "cpu_offload",
                             "price_per_hour", "host_memory_gib")),
    ("data", ("num_examples", "tokens_per_example", "epochs", "tasks")),
    ("speed settings (estimated, and honoured by trial and export)", SPEED_SETTINGS),
    ("run settings (kept in the plan; used by trial and export)",
     ("lr", "lora_alpha", "prompt_init", "prompt_init_text", "temperature", "alpha")),
)
# Flag names that are not the setting's name (DESIGN.md's CLI contract).
FLAGS = {"num_examples": "--examples"}
# How to give a value on the command line, added to the setting's own help.
NOTES = {
    "gpu": "here an id from `tuning-advisor gpus` (or --gpu-memory-gib with --gpu-tflops); omit it for memory only",
    "sharding": "none = DDP",
    "teacher": "a catalog id, a config.json or a model folder",
    "host_memory_gib": "`gpus --json` lists the typical hosts; offload must fit in it",
    "nproc": "none = DDP, fsdp/zero3 = FSDP2 full shard, zero2 = FSDP2 without resharding after forward; N GPUs, "
             "or on a CPU machine N processes over gloo",
}
# The part of the plan each setting lives in, besides the method's own settings (and a trial's).
_SHARED = {s.name for s in COMMON_SETTINGS + HARDWARE_SETTINGS + DATA_SETTINGS + PLAN_FIELDS + TRIAL_SETTINGS}


@dataclass(frozen=True)
class Option:
    """One setting as a command-line option."""

    setting: Setting
    flag: str
    given_only: bool
    """Default None on the command line (so a given value is known): the method's own settings and
    the optional ones; the plan then fills in the setting's default."""

    @property
    def dest(self) -> str:
        return self.setting.name

    def help(self) -> str:
        s, note = self.setting, NOTES.get(self.setting.name)
        text = s.help + (f"; {note}" if note else "")
        if s.kind is bool:
            return text + (" (default on)" if s.default else "")
        if s.default is not None:
            text += f" (default {s.default:g})" if isinstance(s.default, float) else f" (default {s.default})"
        return text

    def add_to(self, group) -> None:
        s = self.setting
        if s.kind is bool:  # a switch that turns the setting away from its default
            group.add_argument(self.flag, dest=self.dest, action="store_const", const=not s.default,
                               default=None if self.given_only else s.default,
                               help=("turn off: " if s.default else "") + self.help())
            return
        kind = {"type": setting_type(s)} if s.kind in (int, float) else {}
        group.add_argument(self.flag, dest=self.dest, choices=s.choices, metavar=None if s.choices else s.name.upper(),
                           default=None if self.given_only else s.default, help=self.help(), **kind)


def _option(name: str) -> Option:
    s = setting(name)
    flag = FLAGS.get(name) or ("--no-" if s.kind is bool and s.default else "--") + name.replace("_", "-")
    return Option(s, flag, given_only=name not in _SHARED or s.optional)


OPTIONS: dict[str, Option] = {name: _option(name) for _, names in GROUPS for name in names}
TRIAL_OPTIONS: dict[str, Option] = {s.name: _option(s.name) for s in TRIAL_SETTINGS}
"""The trial's own options (``trial``), from the same schema."""
METHOD_OWN = tuple(name for name, o in OPTIONS.items() if name not in _SHARED)
"""Options that apply only to the methods that have the setting."""


def add_setup_arguments(p: argparse.ArgumentParser) -> None:
    """The options that describe a training run (shared by ``estimate`` and ``trial``)."""
    p.add_argument("--plan", metavar="FILE", help="a plan JSON file (from recommend --json or export); replaces the "
                                                  "options below")
    p.add_argument("--model", help="catalog id, path to a config.json, or a model folder")
    p.add_argument("--method", choices=METHODS, help="tuning method")
    for title, names in GROUPS:
        group = p.add_argument_group(title)
        for name in names:
            OPTIONS[name].add_to(group)


def _given(args, names) -> dict:
    return {name: value for name in names if (value := getattr(args, name, None)) is not None}


def setup_from_args(args, device: str = "cuda") -> TrainSetup:
    """The ``TrainSetup`` the options describe (a method option not given: its setting's default)."""
    fields = set(TrainSetup.__dataclass_fields__)
    shared = {name: getattr(args, name) for name in OPTIONS if name in _SHARED and name in fields}
    return TrainSetup(method=args.method, device=device, examples=args.num_examples, **shared,
                      **{k: v for k, v in _given(args, METHOD_OWN).items() if k in fields})


def gpu_from_args(args) -> GPU | None:
    if args.gpu_memory_gib is not None or args.gpu_tflops is not None:
        if args.gpu:
            raise InputError("give either --gpu or a custom GPU (--gpu-memory-gib/--gpu-tflops), not both")
        return custom_gpu(args.gpu_memory_gib, args.gpu_tflops, args.price_per_hour)
    if args.gpu is not None and not args.gpu.strip():
        raise InputError("--gpu is empty: give a GPU id from `tuning-advisor gpus` (or leave it out)")
    return gpu_by_id(args.gpu) if args.gpu else None


def _from_file(args, parser: argparse.ArgumentParser) -> Plan:
    exclusive = [*OPTIONS, "model", "method", "estimate_data"]  # the file says it all
    given = [name for name in exclusive if getattr(args, name, None) != parser.get_default(name)]
    if given:
        flag = OPTIONS[given[0]].flag if given[0] in OPTIONS else "--" + given[0].replace("_", "-")
        raise InputError(f"{flag} does not go with --plan: edit the plan file instead (or drop --plan)")
    plan = Plan.from_file(args.plan)
    host = getattr(args, "host_memory_gib", None)
    return plan if host is None else plan.edit(hardware={"host_memory_gib": host})


def plan_from_args(args, parser: argparse.ArgumentParser) -> Plan:
    """The plan a command works on: ``--plan FILE`` as it is, or one built from the options."""
    if args.plan:
        return _from_file(args, parser)
    if not args.model or not args.method:
        raise InputError("give --model and --method (or --plan FILE)")
    own = _given(args, METHOD_OWN)
    unknown = [name for name in own if name not in REGISTRY[args.method].setting_names]
    if unknown:
        raise InputError(f"{OPTIONS[unknown[0]].flag} does not apply to {args.method} (drop it, or choose a method "
                         "it belongs to)")
    setup = setup_from_args(args)
    gpu = gpu_from_args(args)
    hardware = {"price_per_hour": args.price_per_hour, "host_memory_gib": args.host_memory_gib}
    if gpu is not None and gpu.id == "custom":
        hardware.update(gpu="custom", gpu_memory_gib=args.gpu_memory_gib, gpu_tflops=args.gpu_tflops)
    elif gpu is not None:
        hardware["gpu"] = gpu.id
    data = None
    if getattr(args, "estimate_data", None):  # estimate --data FILE: the data facts, as the app's upload fills them
        if args.num_examples is not None or args.tokens_per_example is not None:
            raise InputError("--data FILE gives the examples and their lengths: drop --examples/--tokens-per-example")
        from tuners.datareport import data_facts  # a bounded subprocess; no torch here

        data = data_facts(args.estimate_data, args.model)
        setup = replace(setup, examples=data["num_examples"], tokens_per_example=data["tokens_per_example"])
    return Plan.from_setup(args.model, setup, settings={**own, **_given(args, ("lr",))}, hardware=hardware, data=data,
                           tasks=args.tasks)
