"""The one error type for bad input, shown to users as a single line (CLI exit 2, ``st.error``)."""


class InputError(ValueError):
    """Bad user input: the message names the problem and the fix in one line."""


MAX_JSON_BYTES = 16 * 1024**2
"""Answers, plans and configs are kilobytes; a bigger file is a wrong file, refused before parsing."""
MAX_JSON_DEPTH = 64
"""Nesting of answers, plans and configs: a Hugging Face config.json is 3-4 levels deep (a quantization
or rope block inside the config); 64 leaves room for anything real and stops a recursion bomb."""


def open_regular(path, what: str):
    """``path`` opened for reading in binary, refused unless it is a regular file: a FIFO, a device or
    a socket would block the command or stream forever (opened without blocking, checked with fstat)."""
    import os
    import stat
    from pathlib import Path

    fd = os.open(Path(path).expanduser(), os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{what} '{path}' is not a regular file (a pipe, device or socket): give a file, or - for "
                         "standard input")
    return os.fdopen(fd, "rb")


def json_depth(value, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply ``value`` nests lists and objects (iteratively: no recursion), up to ``limit`` + 1."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows (write a finite number)")


def read_json(path, what: str):
    """The JSON value in file ``path`` (``-``: standard input); bad files are one-line InputErrors
    that never quote the file's content (it may be private)."""
    import sys

    try:
        if str(path) == "-":
            raw = sys.stdin.buffer.read(MAX_JSON_BYTES + 1)
        else:
            with open_regular(path, f"{what} file") as f:
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

    too_deep = InputError(f"{what} nests lists or objects more than {MAX_JSON_DEPTH} levels deep: it is not an "
                          "answers file, plan or config (give the right file)")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except ValueError as exc:
        raise InputError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise too_deep from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    return value
