"""``tuning-advisor``: the command line (also ``python -m advisor`` and ``python -m advisor.cli``).

A front end like the app: one module per command (``add`` registers its parser, ``run`` carries it
out); the options that describe a plan are generated from the settings schema (``options.py``). Of
``advisor/`` only this package imports ``tuners``. Every failure a user can cause ends with one line
on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from estimators.errors import InputError
from estimators.methods import REGISTRY
from advisor.cli import catalog, estimate, export, recommend, runs, trial
from advisor.cli.options import add_setup_arguments, plan_from_args, setup_from_args  # noqa: F401 (the API)
from advisor.cli.parsing import Parser

COMMANDS = (catalog, estimate, recommend, trial, export, runs)
"""In the order of --help."""

DESCRIPTION = """\
Choose how to adapt a foundation model, and know what it costs before you pay for it.

  tuning-advisor models                      the model catalog (ids for --model)
  tuning-advisor gpus                        the GPU catalog (ids for --gpu)
  tuning-advisor estimate --model llama-3.1-8b --method qlora --gpu l4 \\
      --examples 5000 --tokens-per-example 400 --epochs 2
                                             memory per GPU, time, cost, artifact size
  tuning-advisor recommend --answers answers.json
                                             every method ranked for your situation, with reasons

  tuning-advisor recommend --answers answers.json --json > rec.json      each method comes with its plan
  tuning-advisor estimate --plan plan.json    the estimate of a plan (e.g. one taken from recommend --json)
  tuning-advisor trial --plan plan.json --scale-down --steps 10
                                             a short real run of exactly that plan
  tuning-advisor export --plan plan.json --out my-run
                                             a runnable project: train.py, plan.json, launch.sh, ...

Methods: """ + ", ".join(f"{m} ({spec.label})" for m, spec in REGISTRY.items()) + """.
Add --json to any command for machine-readable output.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tuning-advisor", description=DESCRIPTION, epilog=estimate.EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tuners.home import pin_home  # a relative or ~ TUNING_ADVISOR_HOME, made absolute once (files only)

    pin_home()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):  # no command: the usage, on stderr (it is an error: exit 2)
        parser.print_usage(sys.stderr)
        print("tuning-advisor: error: give a command (see tuning-advisor --help)", file=sys.stderr)
        return 2
    from tuners import metaspec  # no torch until an unknown architecture needs deriving

    metaspec.install()
    try:
        return args.func(args)
    except InputError as exc:
        print(f"tuning-advisor {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`
        return 0
    except KeyboardInterrupt:
        print(f"tuning-advisor {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        print(f"tuning-advisor {args.command}: internal error ({type(exc).__name__}): {exc} "
              "(please report it with the command you ran)", file=sys.stderr)
        return 1
