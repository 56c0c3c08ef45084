"""Training data: read JSONL/CSV/Parquet, recognise the format, validate, tokenize with the loss on
the output part only, and order batches longest-first (an out-of-memory shows at step one)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from estimators.errors import InputError
from tuners import runtime

FORMATS = runtime.FORMATS
Example = runtime.Example


def _input_errors(fn):
    """The runtime raises DataError (it runs standalone too); here it is our one-line InputError."""
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except runtime.DataError as exc:
            raise InputError(str(exc)) from None
    return wrapped


read_rows = _input_errors(runtime.read_rows)
detect_format = _input_errors(runtime.detect_format)
to_examples = runtime.to_examples
encode = runtime.encode


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

    tokenizer: str = "the model's own"
    """Which tokenizer counted the tokens (the model's own, or an approximation)."""

    def histogram(self, bins: int = 10) -> list[dict]:
        return histogram(self.token_lengths, self.seq_len, bins)

    def to_dict(self) -> dict:
        lengths = sorted(self.token_lengths)
        return {"path": self.path, "format": self.format, "rows": self.rows, "empty_rows": self.empty_rows,
                "duplicate_rows": self.duplicate_rows, "usable_rows": self.usable_rows, "seq_len": self.seq_len,
                "truncated_share": round(self.truncated_share, 4),
                "mean_tokens": round(sum(lengths) / len(lengths), 1) if lengths else 0,
                "max_tokens": lengths[-1] if lengths else 0, "token_lengths": length_summary(lengths),
                "tokenizer": self.tokenizer, "histogram": self.histogram(), "problems": self.problems}


def length_summary(lengths: list[int]) -> dict:
    """mean, p50, p95 and max of token lengths (the plan's ``data.token_lengths``)."""
    if not lengths:
        return {}
    ordered = sorted(lengths)

    def pct(q):
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"mean": round(sum(ordered) / len(ordered), 1), "p50": pct(0.5), "p95": pct(0.95), "max": ordered[-1]}


def histogram(lengths: list[int], seq_len: int, bins: int = 10) -> list[dict]:
    """Token-length bins, each marked as fitting ``seq_len`` or truncated by it."""
    if not lengths:
        return []
    hi = max(max(lengths), seq_len)
    width = max(1, -(-hi // bins))
    counts = [0] * bins
    for n in lengths:
        counts[min(n // width, bins - 1)] += 1
    return [{"from": i * width, "to": (i + 1) * width, "bin": f"{i * width}–{(i + 1) * width}", "count": c,
             "fits": "truncated" if i * width >= seq_len else "within seq_len"}
            for i, c in enumerate(counts)]


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
        problems.append(f"{empty} empty, malformed or over-long (> {runtime.MAX_FIELD_CHARS:,} characters) rows "
                        "are skipped")
    if dupes:
        problems.append(f"{dupes} duplicate rows")
    if truncated > 0.05:
        problems.append(f"{truncated:.0%} of examples are longer than seq_len {seq_len} and will be truncated")
    report = DataReport(str(path), fmt, len(rows), empty, dupes, len(usable), lengths, seq_len, truncated, problems)
    return report, usable


BPE_SAMPLE_CHARS = 4_000_000
"""Text a BPE learns from at most: enough for stable lengths, bounded in time and memory."""


def train_bpe(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts`` (evenly spaced ones up to BPE_SAMPLE_CHARS
    characters) with the ``tokenizers`` library (no torch)."""
    texts = texts[::max(1, -(-sum(map(len, texts)) // BPE_SAMPLE_CHARS))]
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
    if not tokenizer_file:
        report.tokenizer = "approximate: a BPE trained on this data (the model has no tokenizer here)"
    return report


def batches(encoded: list[dict], batch_size: int, seq_len: int, pad_id: int, steps: int):
    """Yields ``steps`` padded batches of torch tensors, longest examples first, cycling over the data
    (the runtime's loader with one micro-batch per step). Every batch is padded to ``seq_len``."""
    settings = {"batch_size": batch_size, "grad_accum": 1}
    for group in runtime.loader(encoded, settings, pad_id, order="longest_first", steps=steps, pad_to=seq_len):
        yield group[0]
