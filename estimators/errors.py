"""The one error type for bad input, shown to users as a single line (CLI exit 2, ``st.error``)."""


class InputError(ValueError):
    """Bad user input: the message names the problem and the fix in one line."""


def read_json(path, what: str):
    """The JSON value in file ``path`` (``-``: standard input); bad files are one-line InputErrors."""
    import json
    import sys
    from pathlib import Path

    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} file '{path}': {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} file '{path}' is not valid JSON: {exc.msg} at line {exc.lineno}") from None
