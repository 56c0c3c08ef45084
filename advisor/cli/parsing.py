"""What every command's parser shares: one-line errors, number types, and option types made from a
``Setting`` (its bounds are the option's bounds)."""
from __future__ import annotations

import argparse
import math

from estimators.methods import Setting


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage by default)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def command_parser(sub, name: str, help: str, description: str | None = None, epilog: str | None = None):
    """A subcommand's parser; its description and epilog keep their line breaks."""
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _parse(cast, text: str, wanted: str):
    try:
        if len(text.strip()) > 40:  # 300 digits parse as an int too large for any float comparison
            raise ValueError(text)
        return cast(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text[:40]!r}") from None


def number(cast, allow_zero: bool = False, high: float = 1e12):
    """An argparse type for options that are not plan settings: a finite number of type ``cast``,
    positive (or >= 0) and at most ``high``, with a one-line message."""
    wanted = f"{'a number >= 0' if allow_zero else 'a positive ' + ('integer' if cast is int else 'number')}" \
             f" up to {high:,g}"

    def parse(text: str):
        value = _parse(cast, text, wanted)
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero) or value > high:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text[:40]!r}")
        return value

    return parse


def _wanted(spec: Setting) -> str:
    """What a numeric setting accepts, in words: its kind and its bounds."""
    kind = "integer" if spec.kind is int else "number"
    high = f" up to {spec.high:,g}" if spec.high is not None else ""
    if spec.low is None:
        return f"a {kind}{high}"
    if spec.low == 1 and spec.kind is int:
        return f"a positive integer{high}"
    return f"a {kind} from {spec.low:g}{high.replace(' up', '')}"


def setting_type(spec: Setting):
    """An argparse type for a numeric plan setting: parsed as the setting's kind and checked by the
    setting itself (its bounds and choices; a value it refuses, the option refuses)."""
    wanted = _wanted(spec)

    def parse(text: str):
        refused = argparse.ArgumentTypeError(f"{spec.name} must be {wanted} (got {text[:40]!r})")
        try:
            value = _parse(spec.kind, text, wanted)
        except argparse.ArgumentTypeError:
            raise refused from None
        problem = spec.check(value)
        if problem:
            raise argparse.ArgumentTypeError(problem) if spec.choices is not None else refused
        return value

    parse.setting = spec  # what tests and --help read back
    return parse


positive_float = number(float)
