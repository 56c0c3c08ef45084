"""The one error type for bad input, shown to users as a single line (CLI exit 2, ``st.error``)."""


class InputError(ValueError):
    """Bad user input: the message names the problem and the fix in one line."""


MAX_JSON_BYTES = 16 * 1024**2
"""Answers, plans and configs are kilobytes; a bigger file is a wrong file, refused before parsing."""


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows (write a finite number)")


def read_json(path, what: str):
    """The JSON value in file ``path`` (``-``: standard input); bad files are one-line InputErrors
    that never quote the file's content (it may be private)."""
    import sys
    from pathlib import Path

    try:
        if str(path) == "-":
            raw = sys.stdin.buffer.read(MAX_JSON_BYTES + 1)
        else:
            with open(Path(path).expanduser(), "rb") as f:
                raw = f.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read {what} file '{path}': {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_JSON_BYTES:
        raise InputError(f"{what} file '{path}' is larger than {MAX_JSON_BYTES // 1024**2} MiB: is it the right file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} file '{path}' is not UTF-8 text (save it as UTF-8 JSON)") from None
    return parse_json(text, f"{what} file '{path}'")


def parse_json(text: str, what: str):
    """Strict JSON (no NaN or Infinity, which Python's json accepts); errors say where, never what."""
    import json

    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except ValueError as exc:
        raise InputError(f"{what} is not valid JSON: {exc}") from None
