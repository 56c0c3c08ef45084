"""Training data: read JSONL/CSV/Parquet, recognise the format, validate, tokenize with the loss on
the output part only, and order batches longest-first (an out-of-memory shows at step one)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from estimators.errors import InputError

FORMATS = {"input_output": ("input", "output"), "prompt_completion": ("prompt", "completion"),
           "messages": ("messages",), "text": ("text",)}


@dataclass(frozen=True)
class Example:
    prompt: str
    """The part the model conditions on (no loss); empty for plain text."""
    completion: str
    """The part the loss is computed on."""


def read_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"data file '{path}' not found (give a .jsonl, .csv or .parquet file)")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            text = path.read_text(encoding="utf-8")
            if suffix == ".json" and text.lstrip().startswith("["):
                rows = json.loads(text)
            else:
                rows = []
                for n, line in enumerate(text.splitlines(), 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise InputError(f"data file '{path.name}' line {n} is not valid JSON ({exc.msg}); "
                                             "each line must be one JSON object") from None
        elif suffix in (".csv", ".parquet"):
            import pandas as pd

            frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
            rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        else:
            raise InputError(f"data file '{path.name}' has an unsupported type '{suffix}' (use .jsonl, .csv or .parquet)")
    except InputError:
        raise
    except UnicodeDecodeError:
        raise InputError(f"data file '{path.name}' is not UTF-8 text") from None
    except Exception as exc:  # pandas/pyarrow parse errors
        raise InputError(f"data file '{path.name}' could not be parsed: {str(exc).splitlines()[0]}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"data file '{path.name}' must hold one JSON object per row")
    if not rows:
        raise InputError(f"data file '{path.name}' has no rows")
    return rows


def detect_format(rows: list[dict], name: str = "data") -> str:
    keys = set().union(*(r.keys() for r in rows[:100]))
    for fmt, cols in FORMATS.items():
        if set(cols) <= keys:
            return fmt
    raise InputError(f"{name}: no known columns in {sorted(keys)[:8]} (expected input/output, prompt/completion, "
                     "messages or text)")


def _render_messages(messages) -> Example | None:
    """Chat rows: every turn up to the last assistant turn is the prompt; the last assistant turn is learned."""
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return None
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        return None
    prompt = "".join(f"<|{m.get('role', 'user')}|>\n{m.get('content') or ''}\n" for m in messages[:last])
    return Example(prompt + "<|assistant|>\n", str(messages[last].get("content") or ""))


def to_examples(rows: list[dict], fmt: str) -> list[Example | None]:
    """One Example per row; None where the row is empty or malformed."""
    out = []
    for r in rows:
        if fmt == "messages":
            out.append(_render_messages(r.get("messages")))
            continue
        if fmt == "text":
            prompt, completion = "", r.get("text")
        else:
            a, b = FORMATS[fmt]
            prompt, completion = r.get(a), r.get(b)
        if completion is None or not str(completion).strip():
            out.append(None)
        else:
            out.append(Example("" if prompt is None else str(prompt), str(completion)))
    return out


@dataclass
class DataReport:
    path: str
    format: str
    rows: int
    empty_rows: int
    duplicate_rows: int
    usable_rows: int
    token_lengths: list
    """Tokens per usable example (prompt + completion + end-of-sequence)."""
    seq_len: int
    truncated_share: float
    problems: list

    def histogram(self, bins: int = 10) -> list[dict]:
        if not self.token_lengths:
            return []
        hi = max(max(self.token_lengths), self.seq_len)
        width = max(1, -(-hi // bins))
        counts = [0] * bins
        for n in self.token_lengths:
            counts[min(n // width, bins - 1)] += 1
        return [{"from": i * width, "to": (i + 1) * width, "bin": f"{i * width}–{(i + 1) * width}", "count": c,
                 "fits": "truncated" if i * width >= self.seq_len else "within seq_len"}
                for i, c in enumerate(counts)]

    def to_dict(self) -> dict:
        lengths = sorted(self.token_lengths)
        return {"path": self.path, "format": self.format, "rows": self.rows, "empty_rows": self.empty_rows,
                "duplicate_rows": self.duplicate_rows, "usable_rows": self.usable_rows, "seq_len": self.seq_len,
                "truncated_share": round(self.truncated_share, 4),
                "mean_tokens": round(sum(lengths) / len(lengths), 1) if lengths else 0,
                "max_tokens": lengths[-1] if lengths else 0, "histogram": self.histogram(), "problems": self.problems}


def load_examples(path: str | Path) -> tuple[list[Example], str, list[Example | None], list[dict]]:
    rows = read_rows(path)
    fmt = detect_format(rows, Path(path).name)
    parsed = to_examples(rows, fmt)
    usable = [e for e in parsed if e is not None]
    if not usable:
        raise InputError(f"data file '{Path(path).name}' has no usable rows: every '{FORMATS[fmt][-1]}' is empty")
    return usable, fmt, parsed, rows


def validate(path: str | Path, tokenizer, seq_len: int) -> tuple[DataReport, list[Example]]:
    usable, fmt, parsed, rows = load_examples(path)
    seen, dupes = set(), 0
    for e in usable:
        key = (e.prompt, e.completion)
        dupes += key in seen
        seen.add(key)
    lengths = [len(tokenizer(e.prompt + e.completion)["input_ids"]) + 1 for e in usable]
    truncated = sum(n > seq_len for n in lengths) / len(lengths)
    problems = []
    empty = sum(e is None for e in parsed)
    if empty:
        problems.append(f"{empty} empty or malformed rows are skipped")
    if dupes:
        problems.append(f"{dupes} duplicate rows")
    if truncated > 0.05:
        problems.append(f"{truncated:.0%} of examples are longer than seq_len {seq_len} and will be truncated")
    report = DataReport(str(path), fmt, len(rows), empty, dupes, len(usable), lengths, seq_len, truncated, problems)
    return report, usable


def train_bpe(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts`` with the ``tokenizers`` library (no torch)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    return bpe


def quick_report(path: str | Path, seq_len: int, tokenizer_file: str | Path | None = None) -> DataReport:
    """The validation report without torch or transformers (for the app's upload): the model
    folder's tokenizer.json when there is one, else a BPE trained on the data."""
    from tokenizers import Tokenizer

    usable, _, _, _ = load_examples(path)
    tok = Tokenizer.from_file(str(tokenizer_file)) if tokenizer_file else \
        train_bpe([e.prompt + e.completion for e in usable], 8192)
    report, _ = validate(path, lambda text: {"input_ids": tok.encode(text).ids}, seq_len)
    return report


def encode(examples: list[Example], tokenizer, seq_len: int) -> list[dict]:
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


def batches(encoded: list[dict], batch_size: int, seq_len: int, pad_id: int, steps: int):
    """Yields ``steps`` padded batches of torch tensors, longest examples first, cycling over the data.

    Every batch is padded to ``seq_len`` so each step has the shape the estimate assumes."""
    import torch

    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]["input_ids"]))
    pos = 0
    for _ in range(steps):
        idx = [order[(pos + k) % len(order)] for k in range(batch_size)]
        pos = (pos + batch_size) % len(order)
        ids = torch.full((batch_size, seq_len), pad_id, dtype=torch.long)
        labels = torch.full((batch_size, seq_len), -100, dtype=torch.long)
        mask = torch.zeros((batch_size, seq_len), dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(encoded[i]["input_ids"])
            ids[row, :n] = torch.tensor(encoded[i]["input_ids"])
            labels[row, :n] = torch.tensor(encoded[i]["labels"])
            mask[row, :n] = 1
        yield {"input_ids": ids, "attention_mask": mask, "labels": labels}
