"""The training data as the steps take it: rows of a JSONL/JSON/CSV/Parquet file, their format
(input/output, prompt/completion, chat messages or plain text), one example per row, token ids with
labels on the completion only, packing, this rank's share, padded micro-batches and the loader that
groups them into optimizer steps.

Standalone (the standard library; pandas and torch imported lazily): ``tuners.export`` copies this file
next to the exported ``train.py`` as ``traindata.py``. ``train.py`` (``tuners/runtime.py``) imports it as
a plain module from its own folder, and re-exports its names (``runtime.encode``, ``runtime.loader``...),
so the trial, the dry run and the exported script read data through the same functions.
"""
from __future__ import annotations

import json
from collections import namedtuple
from pathlib import Path

FORMATS = {"input_output": ("input", "output"), "prompt_completion": ("prompt", "completion"),
           "messages": ("messages",), "text": ("text",)}
Example = namedtuple("Example", "prompt completion")
"""``prompt``: what the model conditions on (no loss; empty for plain text); ``completion``: what it learns."""


class DataError(ValueError):
    """The data file cannot be used; the message says why in one line."""


# Bounds that keep reading a data file linear and small: a training file larger than this is read by
# a real training job's streaming loader, not held in one process here; a field longer than
# MAX_FIELD_CHARS (~250k tokens, far beyond any seq_len) is a wrong column or a dump, skipped as malformed.
MAX_DATA_BYTES = 1024**3
MAX_FIELD_CHARS = 1_000_000


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def read_rows(path) -> list[dict]:
    """Rows of a JSONL/JSON/CSV/Parquet file as dicts."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file '{path}' not found (give a .jsonl, .csv or .parquet file)")
    suffix = path.suffix.lower()
    size = path.stat().st_size
    if size > MAX_DATA_BYTES:
        raise DataError(f"data file '{path.name}' is {size / 1024**3:.1f} GiB; a trial reads at most "
                        f"{MAX_DATA_BYTES // 1024**3} GiB: give a sample of it (e.g. head -n 100000)")
    try:
        if suffix in (".jsonl", ".json"):
            text = path.read_text(encoding="utf-8")
            if suffix == ".json" and text.lstrip().startswith("["):
                rows = json.loads(text)
            else:
                rows, bad = [], []
                for n, line in enumerate(text.splitlines(), 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line, parse_constant=_no_constant))
                        except json.JSONDecodeError as exc:
                            bad.append((n, exc.msg))
                        except ValueError as exc:  # NaN / Infinity: Python reads them, JSON has no such thing
                            bad.append((n, str(exc)))
                if bad:  # every bad line, in one message: the first 20 by number, then a count
                    shown = ", ".join(str(n) for n, _ in bad[:20]) + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
                    first = f"line {bad[0][0]} is not valid JSON ({bad[0][1]})" if len(bad) == 1 else \
                        f"{len(bad)} lines are not valid JSON (lines {shown}; the first: {bad[0][1]})"
                    raise DataError(f"data file '{path.name}' {first}; each line must be one JSON object")
        elif suffix in (".csv", ".parquet"):
            import pandas as pd

            if suffix == ".csv" and path.read_bytes().count(b'"') % 2:
                # RFC 4180 doubles a quote inside a quoted field, so an odd count means one never closed
                # (pandas would read everything after it as one field of one row).
                raise DataError(f"data file '{path.name}' has an unclosed double quote: close it, or write a "
                                'literal quote as "" inside a quoted field')
            frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
            rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        else:
            raise DataError(f"data file '{path.name}' has an unsupported type '{suffix}' (use .jsonl, .csv or .parquet)")
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(f"data file '{path.name}' is not UTF-8 text") from None
    except Exception as exc:  # pandas/pyarrow parse errors
        raise DataError(f"data file '{path.name}' could not be parsed: {str(exc).splitlines()[0]}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"data file '{path.name}' must hold one JSON object per row")
    if not rows:
        raise DataError(f"data file '{path.name}' has no rows")
    return rows


def detect_format(rows: list[dict], name: str = "data") -> str:
    keys = set().union(*(r.keys() for r in rows[:100]))
    for fmt, cols in FORMATS.items():
        if set(cols) <= keys:
            return fmt
    raise DataError(f"{name}: none of its {len(keys)} columns is one we know (expected input/output, "
                    "prompt/completion, messages or text)")


def _render_messages(messages):
    """Chat rows: every turn up to the last assistant turn is the prompt; the last assistant turn is learned."""
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return None
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        return None
    prompt = "".join(f"<|{m.get('role', 'user')}|>\n{m.get('content') or ''}\n" for m in messages[:last])
    return Example(prompt + "<|assistant|>\n", str(messages[last].get("content") or ""))


def to_examples(rows: list[dict], fmt: str) -> list:
    """One Example per row; None where the row is empty, malformed or longer than MAX_FIELD_CHARS."""
    out = []
    for r in rows:
        if fmt == "messages":
            e = _render_messages(r.get("messages"))
        else:
            a, b = ("", "text") if fmt == "text" else FORMATS[fmt]
            prompt, completion = (r.get(a) if a else ""), r.get(b)
            e = None if completion is None or not str(completion).strip() else \
                Example("" if prompt is None else str(prompt), str(completion))
        out.append(None if e is None or len(e.prompt) + len(e.completion) > MAX_FIELD_CHARS else e)
    return out


def load_examples(path) -> list:
    rows = read_rows(path)
    usable = [e for e in to_examples(rows, detect_format(rows, Path(path).name)) if e is not None]
    if not usable:
        raise DataError(f"data file '{Path(path).name}' has no usable rows")
    return usable


def encode(examples, tokenizer, seq_len: int) -> list[dict]:
    """input_ids and labels per example; labels are -100 on the prompt (no loss there) and after truncation."""
    eos = tokenizer.eos_token_id
    out = []
    for e in examples:
        p = tokenizer(e.prompt, add_special_tokens=False)["input_ids"] if e.prompt else []
        c = tokenizer(e.completion, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        ids = (p + c)[:seq_len]
        labels = ([-100] * len(p) + c)[:seq_len]
        if all(x == -100 for x in labels):  # prompt alone fills the window: learn the tail instead
            labels = ids[:]
        out.append({"input_ids": ids, "labels": labels})
    return out


def pack(encoded: list[dict], seq_len: int) -> list[dict]:
    """Lays the encoded examples end to end and cuts rows of exactly ``seq_len`` tokens (no padding;
    the plan's ``packing``). Each example's first token gets no loss, so no row learns to predict one
    example from the end of another; attention still spans the examples of a row (plain packing, as
    TRL's ``packing=True`` without position resets). A tail shorter than a row is dropped, unless it
    is all there is."""
    ids, labels = [], []
    for e in encoded:
        ids += e["input_ids"]
        labels += [-100] + e["labels"][1:]
    rows = [{"input_ids": ids[i:i + seq_len], "labels": labels[i:i + seq_len]}
            for i in range(0, len(ids) - seq_len + 1, seq_len)]
    return rows or [{"input_ids": ids, "labels": labels}]


def collate(chunk: list[dict], pad_id: int, length: int):
    """Pads a list of encoded examples to ``length`` tokens: input_ids, attention_mask, labels."""
    import torch

    ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
    labels = torch.full((len(chunk), length), -100, dtype=torch.long)
    mask = torch.zeros((len(chunk), length), dtype=torch.long)
    for row, e in enumerate(chunk):
        n = min(len(e["input_ids"]), length)
        ids[row, :n] = torch.tensor(e["input_ids"][:n])
        labels[row, :n] = torch.tensor(e["labels"][:n])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def training_rows(examples, tokenizer, settings: dict, rank: int = 0, world: int = 1) -> list[dict]:
    """Encoded rows (packed when the plan packs), this rank's share of them when there are several."""
    return arrange(encode(examples, tokenizer, settings["seq_len"]), settings, rank, world)


def arrange(rows: list[dict], settings: dict, rank: int = 0, world: int = 1) -> list[dict]:
    """Encoded rows as the steps take them: packed when the plan packs, this rank's share."""
    if settings.get("packing"):
        rows = pack(rows, settings["seq_len"])
    return rows[rank::world] if world > 1 and len(rows) >= world else rows


def loader(rows: list[dict], settings: dict, pad_id: int, *, order: str = "shuffled", steps: int | None = None,
           seed: int = 0, pad_to: int | None = None):
    """Optimizer steps, each a list of ``grad_accum`` micro-batches of ``batch_size`` padded rows.

    ``shuffled``: a new random order each epoch, the incomplete tail left out. ``longest_first`` (the
    trial): longest rows first, cycling over the data, so an out-of-memory shows at step one. ``pad_to``
    pads every micro-batch to that many tokens (None: to its longest row); ``steps`` None: no end."""
    import torch

    size, accum = settings["batch_size"], int(settings.get("grad_accum", 1))
    per_step, n = size * accum, len(rows)
    if order == "shuffled" and n < per_step:
        raise ValueError(f"{n} rows are fewer than one optimizer step needs ({size} × {accum})")
    generator = torch.Generator().manual_seed(seed)
    longest = sorted(range(n), key=lambda i: -len(rows[i]["input_ids"]))
    taken = 0
    while True:
        if order == "longest_first":  # one step at a time, wrapping around the end of the data
            groups = [[longest[(taken * per_step + k) % n] for k in range(per_step)]]
        else:
            perm = torch.randperm(n, generator=generator).tolist()
            groups = [perm[i:i + per_step] for i in range(0, n - per_step + 1, per_step)]
        for idx in groups:
            chunks = [[rows[j] for j in idx[k * size:(k + 1) * size]] for k in range(accum)]
            yield [collate(c, pad_id, pad_to or max(len(e["input_ids"]) for e in c)) for c in chunks]
            taken += 1
            if steps is not None and taken >= steps:
                return
