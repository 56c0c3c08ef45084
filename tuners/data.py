"""Training data: read JSONL/CSV/Parquet, recognise the format, validate, tokenize with the loss on
the output part only, and order batches longest-first (an out-of-memory shows at step one)."""
from __future__ import annotations

import json
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
    rows_read: int | None = None
    """Rows the counts come from: all ``rows``, or an evenly spaced sample of them (plus the longest)."""

    @property
    def usable_in_file(self) -> int:
        """Usable rows of the whole file: counted, or scaled from the sample's share."""
        read = self.rows_read or self.rows
        return self.usable_rows if read >= self.rows else max(1, round(self.usable_rows * self.rows / read))

    def histogram(self, bins: int = 10) -> list[dict]:
        return histogram(self.token_lengths, self.seq_len, bins)

    def to_dict(self) -> dict:
        lengths = sorted(self.token_lengths)
        return {"path": self.path, "format": self.format, "rows": self.rows, "empty_rows": self.empty_rows,
                "duplicate_rows": self.duplicate_rows, "usable_rows": self.usable_rows, "seq_len": self.seq_len,
                "truncated_share": round(self.truncated_share, 4),
                "mean_tokens": round(sum(lengths) / len(lengths), 1) if lengths else 0,
                "max_tokens": lengths[-1] if lengths else 0, "token_lengths": length_summary(lengths),
                "tokenizer": self.tokenizer, "histogram": self.histogram(), "problems": self.problems,
                "rows_read": self.rows_read or self.rows, "usable_in_file": self.usable_in_file,
                "sampled": bool(self.rows_read and self.rows_read < self.rows),
                **({"sample_note": f"counts and token lengths from a sample of {self.rows_read:,} of {self.rows:,} "
                                   "rows (evenly spaced, plus the longest)"}
                   if self.rows_read and self.rows_read < self.rows else {})}


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


SAMPLE_ROWS = 10_000
"""Rows a trial or a data report reads at most, evenly spaced over the file: a trial's steps need
steps × batch examples (20 × 8 = 160 at most by default), and 10,000 rows put the report's shares
(empty, duplicate, truncated) within about ±1 percentage point (binomial standard error
sqrt(0.25 / 10,000) = 0.5 %)."""
LONGEST_ROWS = 64
"""The longest rows of the file (by bytes) are always in the sample: the first batches run longest
first, so an out-of-memory shows in step one even when the long rows are rare."""
WHOLE_FILE_BYTES = 4 * 1024**2
"""Files up to this size are read whole (a sample would save nothing)."""


@dataclass
class Sample:
    """The rows of a data file a trial reads: all of them, or a bounded sample."""

    path: str
    format: str
    rows: list
    parsed: list
    """One Example (or None: empty, malformed, over-long) per row read."""
    total_rows: int
    """Rows in the whole file (non-blank lines of a JSONL file)."""

    @property
    def usable(self) -> list[Example]:
        return [e for e in self.parsed if e is not None]

    @property
    def sampled(self) -> bool:
        return len(self.rows) < self.total_rows


def _regular(path: Path) -> None:
    if path.exists() and not path.is_dir() and not path.is_file():
        raise InputError(f"data file '{path.name}' is not a regular file (a pipe, device or socket): give a .jsonl, "
                         ".csv or .parquet file")


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


CHUNK_BYTES = 2 * 1024**2
"""A JSONL file is scanned in blocks of this size (ending at a line break): memory stays bounded
whatever the file's size, and no line is parsed on the way."""


def _line_blocks(path: Path):
    """The non-blank lines of a file (stripped, as bytes), block by block; a line longer than a block
    is kept whole (the blocks join until a line break)."""
    with open(path, "rb") as f:
        carry: list[bytes] = []
        while block := f.read(CHUNK_BYTES):
            cut = block.rfind(b"\n") + 1
            if not cut:  # still inside one long line
                carry.append(block)
                continue
            head = b"".join([*carry, block[:cut]]) if carry else block[:cut]
            carry = [block[cut:]] if cut < len(block) else []
            yield list(filter(None, map(bytes.strip, head.splitlines())))
        if carry:
            yield list(filter(None, map(bytes.strip, b"".join(carry).splitlines())))


def _longest(top: list, lines: list[bytes], lengths: list[int], base: int) -> list:
    """``top`` (the ``LONGEST_ROWS`` longest lines so far, as (length, -index, line)) with this block's
    lines (indexes from ``base``) taken in; a tie keeps the earlier line. Only lines that can enter are
    looked at (C-level filters: no Python loop over the block)."""
    import heapq
    from itertools import compress, count, islice

    cut = heapq.nlargest(LONGEST_ROWS, lengths)[-1] if len(lengths) > LONGEST_ROWS else -1
    if len(top) == LONGEST_ROWS:
        cut = max(cut, top[0][0])
    greater = compress(zip(lengths, map(int.__neg__, count(base)), lines), map(cut.__lt__, lengths))
    ties = islice(compress(zip(lengths, map(int.__neg__, count(base)), lines), map(cut.__eq__, lengths)), LONGEST_ROWS)
    return heapq.nsmallest(LONGEST_ROWS, heapq.nlargest(LONGEST_ROWS, [*top, *greater, *ties]))


def _jsonl_sample(path: Path, limit: int) -> tuple[list[dict], int]:
    """Evenly spaced lines of a JSONL file plus its longest ones, parsed with the runtime's rules (only
    the lines read are parsed and checked). One streaming pass, memory bounded by a block and the
    sample: every ``stride``-th line is kept, and the stride doubles (keeping every other line kept so
    far) whenever more than twice ``limit`` would be kept; ``limit`` evenly spaced ones of those are
    taken at the end (spacing within one stride of exactly even)."""
    stride, kept, top, total = 1, [], [], 0  # kept: (index, line) for the indexes divisible by stride
    for lines in _line_blocks(path):
        while len(kept) + len(lines) / stride > 2 * limit:
            stride *= 2
            kept = [k for k in kept if k[0] % stride == 0]
        first = -total % stride  # the block's first line whose index is a multiple of stride
        kept += zip(range(total + first, total + len(lines), stride), lines[first::stride])
        top = _longest(top, lines, list(map(len, lines)), total)
        total += len(lines)
    if total <= limit + LONGEST_ROWS:
        return read_rows(path), total
    chosen = {kept[int(i * len(kept) / limit)] for i in range(min(limit, len(kept)))}
    chosen |= {(-i, line) for _, i, line in top}
    rows, bad = [], []
    for i, line in sorted(chosen):
        try:
            row = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
        except UnicodeDecodeError:
            raise InputError(f"data file '{path.name}' is not UTF-8 text") from None
        except (ValueError, RecursionError):
            bad.append(i)
            continue
        rows.append(row)
    if bad:
        raise InputError(f"data file '{path.name}' has lines that are not valid JSON (e.g. non-blank line "
                         f"{bad[0] + 1}; {len(bad)} of the {len(chosen):,} read); each line must be one JSON object")
    if not all(isinstance(r, dict) for r in rows):
        raise InputError(f"data file '{path.name}' must hold one JSON object per row")
    return rows, total


def _starts_array(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4096).lstrip().startswith(b"[")


def load_sample(path: str | Path, limit: int = SAMPLE_ROWS) -> Sample:
    """The rows a trial needs: the whole file when it is small, else ``limit`` evenly spaced rows plus
    the longest (JSONL: one streaming pass, only those lines parsed; CSV/Parquet are read, then sampled)."""
    path = Path(path)
    _regular(path)
    size = path.stat().st_size if path.is_file() else 0
    if size > runtime.MAX_DATA_BYTES:
        return Sample(str(path), "", read_rows(path), [], 0)  # read_rows refuses it, with the size and the fix
    if size > WHOLE_FILE_BYTES and path.suffix.lower() in (".jsonl", ".json") and not _starts_array(path):
        rows, total = _jsonl_sample(path, limit)
    else:
        rows = read_rows(path)
        total = len(rows)
        if total > limit:
            rows = [rows[int(i * total / limit)] for i in range(limit)]
    fmt = detect_format(rows, path.name)
    sample = Sample(str(path), fmt, rows, to_examples(rows, fmt), total)
    if not sample.usable:
        raise InputError(f"data file '{path.name}' has no usable rows: {_why_unusable(rows, fmt)}")
    return sample


def _why_unusable(rows: list[dict], fmt: str) -> str:
    """Why no row gave an example: over-long rows are named as such, not called empty."""
    long = sum(sum(len(str(v)) for v in r.values() if isinstance(v, (str, list))) > runtime.MAX_FIELD_CHARS
               for r in rows)
    field = FORMATS[fmt][-1]
    if long == len(rows):
        return (f"every row is longer than {runtime.MAX_FIELD_CHARS:,} characters and was skipped (a wrong column or "
                "a dump?): give one example per line")
    if long:
        return (f"{long} row(s) longer than {runtime.MAX_FIELD_CHARS:,} characters were skipped and every other "
                f"'{field}' is empty")
    return f"every '{field}' is empty"


def load_examples(path: str | Path) -> tuple[list[Example], str, list[Example | None], list[dict]]:
    """Every row of the file (no sampling), as examples."""
    _regular(Path(path))
    rows = read_rows(path)
    fmt = detect_format(rows, Path(path).name)
    parsed = to_examples(rows, fmt)
    usable = [e for e in parsed if e is not None]
    if not usable:
        raise InputError(f"data file '{Path(path).name}' has no usable rows: {_why_unusable(rows, fmt)}")
    return usable, fmt, parsed, rows


def token_counts(tokenizer, texts: list[str], batch: int = 1024) -> list[int]:
    """Tokens per text (with the tokenizer's special tokens): in batches of ``batch`` when the tokenizer
    takes a list (a ``tokenizers`` Tokenizer, a transformers tokenizer: the loop runs in Rust, about
    twice as fast as one call per text), else one call per text."""
    if callable(getattr(tokenizer, "encode_batch", None)):  # tokenizers.Tokenizer
        return [len(e.ids) for i in range(0, len(texts), batch) for e in tokenizer.encode_batch(texts[i:i + batch])]
    if callable(getattr(tokenizer, "batch_decode", None)):  # a transformers tokenizer: a list in, a list out
        return [len(ids) for i in range(0, len(texts), batch) for ids in tokenizer(texts[i:i + batch])["input_ids"]]
    return [len(tokenizer(t)["input_ids"]) for t in texts]


def validate(source: str | Path | Sample, tokenizer, seq_len: int) -> tuple[DataReport, list[Example]]:
    """The data report of a file (read as ``load_sample`` reads it) or of a sample already read; the
    counts of a sampled file are the sample's, and the report says so."""
    sample = source if isinstance(source, Sample) else load_sample(source)
    usable, parsed, rows = sample.usable, sample.parsed, sample.rows
    seen, dupes = set(), 0
    for e in usable:
        key = (e.prompt, e.completion)
        dupes += key in seen
        seen.add(key)
    lengths = [n + 1 for n in token_counts(tokenizer, [e.prompt + e.completion for e in usable])]
    truncated = sum(n > seq_len for n in lengths) / len(lengths)
    problems = []
    empty = sum(e is None for e in parsed)
    if empty:
        problems.append(f"{empty} empty, malformed or over-long (> {runtime.MAX_FIELD_CHARS:,} characters) rows "
                        "are skipped" + (" (in the sample)" if sample.sampled else ""))
    if dupes:
        problems.append(f"{dupes} duplicate rows" + (" (in the sample)" if sample.sampled else ""))
    if truncated > 0.05:
        problems.append(f"{truncated:.0%} of examples are longer than seq_len {seq_len} and will be truncated")
    report = DataReport(sample.path, sample.format, sample.total_rows, empty, dupes, len(usable), lengths, seq_len,
                        truncated, problems, rows_read=len(rows))
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

    sample = load_sample(path)
    if tokenizer_file:
        from tuners.files import check_tokenizer

        check_tokenizer(Path(tokenizer_file).parent)
    tok = Tokenizer.from_file(str(tokenizer_file)) if tokenizer_file else \
        train_bpe([e.prompt + e.completion for e in sample.usable], 8192)
    report, _ = validate(sample, tok, seq_len)
    if not tokenizer_file:
        report.tokenizer = "approximate: a BPE trained on this data (the model has no tokenizer here)"
    return report


def for_steps(examples: list[Example], lengths: list[int], needed: int) -> list[Example]:
    """The examples a trial's steps use: the ``needed`` longest (``batches`` takes the longest first),
    so only those are encoded; all of them when there are no more."""
    if len(examples) <= needed:
        return examples
    longest = sorted(range(len(examples)), key=lambda i: -lengths[i])[:needed]
    return [examples[i] for i in sorted(longest)]


def batches(encoded: list[dict], batch_size: int, seq_len: int, pad_id: int, steps: int):
    """Yields ``steps`` padded batches of torch tensors, longest examples first, cycling over the data
    (the runtime's loader with one micro-batch per step). Every batch is padded to ``seq_len``."""
    settings = {"batch_size": batch_size, "grad_accum": 1}
    for group in runtime.loader(encoded, settings, pad_id, order="longest_first", steps=steps, pad_to=seq_len):
        yield group[0]
