"""Trials sample their data in one streaming pass (issue 27, item 9): the counts and the rows taken
agree with an independent reading of the file, across block boundaries, blank and CRLF lines and a
line longer than a block; memory stays bounded by a block and the sample; the token counts of the
data report are the same in batches as one text at a time."""
import json
import random
import re
import tracemalloc

import pytest

from tuners import data


def nonblank(raw: bytes) -> list[bytes]:
    """The non-blank lines of a file, as ``bytes.splitlines`` splits them (\\n, \\r\\n, \\r)."""
    return [line.strip() for line in re.split(rb"\r\n|\r|\n", raw) if line.strip()]


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 4 KiB and sampling from 16 KiB up, so a small file crosses many block boundaries."""
    monkeypatch.setattr(data, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(data, "WHOLE_FILE_BYTES", 16384)


def write_mixed(path, n, seed=0):
    rng = random.Random(seed)
    parts = []
    for i in range(n):
        if i % 97 == 0:
            parts.append("   \n\n\t\n")  # blank and whitespace-only lines are not rows
        size = 30_000 if i == n // 3 else rng.choice([1, 5, 40, 300])  # one line longer than a block
        parts.append(json.dumps({"input": f"q{i} " + "x" * size, "output": f"a{i}"}) + ("\r\n" if i % 3 else "\n"))
    path.write_bytes("".join(parts).encode())
    return path


def test_the_sample_agrees_with_an_independent_reading(tmp_path, small_blocks):
    path = write_mixed(tmp_path / "mixed.jsonl", 3000)
    lines = nonblank(path.read_bytes())
    limit = 100
    sample = data.load_sample(path, limit=limit)
    assert sample.total_rows == len(lines) == 3000 and sample.sampled
    taken = [int(r["input"].split()[0][1:]) for r in sample.rows]  # each row's own line number
    assert taken == sorted(set(taken))  # in file order, none twice
    assert [json.loads(lines[i]) for i in taken] == sample.rows  # exactly those lines, parsed
    longest = sorted(range(len(lines)), key=lambda i: (-len(lines[i]), i))[:data.LONGEST_ROWS]
    assert set(longest) <= set(taken)  # the longest rows are always in, the 30,000-character one too
    assert 3000 // 3 in taken
    assert len(taken) >= limit
    gaps = [b - a for a, b in zip([0, *taken], [*taken, len(lines)])]
    assert max(gaps) <= 2 * len(lines) / limit  # evenly spaced within one stride: no stretch of the file unseen


def test_a_bad_line_in_the_sample_is_named_and_a_small_count_reads_the_whole_file(tmp_path, small_blocks):
    rows = [json.dumps({"input": "x" * 400, "output": str(i)}) for i in range(200)]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(rows) + "\n")
    whole = data.load_sample(path, limit=1000)  # fewer rows than the sample: every row, the file read whole
    assert not whole.sampled and len(whole.rows) == 200
    rows[0] = "{not json"  # line 1 is always in an evenly spaced sample
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(data.InputError, match="non-blank line 1;"):
        data.load_sample(path, limit=20)


def test_memory_is_bounded_by_a_block_and_the_sample(tmp_path):
    """A 30 MB file: the whole-file reading it replaced held the file and a million line objects
    (~130 MB); the streaming pass holds a block and the sample."""
    path = tmp_path / "big.jsonl"
    path.write_text("".join(f'{{"input": "Q{i}?", "output": "blue"}}\n' for i in range(750_000)))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        sample = data.load_sample(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sample.total_rows == 750_000 and len(sample.rows) <= data.SAMPLE_ROWS + data.LONGEST_ROWS
    assert peak < 10 * data.CHUNK_BYTES < size / 1.4, (peak, size)  # the old reading: ~4x the file


def test_token_counts_in_batches_equal_one_text_at_a_time(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    texts = [f"Rewrite order {i} in our voice: {'shipped ' * (i % 7)}!" for i in range(2500)]
    bpe = data.train_bpe(texts, 300)
    one_by_one = [len(bpe.encode(t).ids) for t in texts]
    assert data.token_counts(bpe, texts, batch=256) == one_by_one
    assert isinstance(bpe, tokenizers.Tokenizer)
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<pad>")
    assert data.token_counts(fast, texts, batch=256) == [len(fast(t)["input_ids"]) for t in texts]
    assert data.token_counts(lambda t: {"input_ids": t.split()}, texts) == [len(t.split()) for t in texts]
