"""Data loading, format detection, validation report and loss masking (no model needed)."""
import json

import pytest

from estimators.errors import InputError
from tuners.data import DataReport, detect_format, encode, load_examples, quick_report, read_rows, to_examples


class CharTokenizer:
    """One token per character: lengths are easy to reason about."""
    eos_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) % 250 + 1 for c in text]}


def write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_formats_are_detected(tmp_path):
    assert detect_format([{"input": "a", "output": "b"}]) == "input_output"
    assert detect_format([{"prompt": "a", "completion": "b"}]) == "prompt_completion"
    assert detect_format([{"messages": []}]) == "messages"
    assert detect_format([{"text": "a"}]) == "text"
    with pytest.raises(InputError, match="none of its"):
        detect_format([{"question": "a"}])


def test_csv_and_parquet_and_chat(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"prompt": ["hi", "yo"], "completion": ["there", None]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        usable, fmt, parsed, rows = load_examples(tmp_path / name)
        assert fmt == "prompt_completion" and len(rows) == 2 and len(usable) == 1 and parsed[1] is None
    chat = [{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "hello"}]}, {"messages": [{"role": "user", "content": "x"}]}]
    examples = to_examples(chat, "messages")
    assert examples[0].completion == "hello" and "<|user|>\nhi" in examples[0].prompt and examples[1] is None


def test_report_counts_empty_duplicates_and_truncation(tmp_path):
    path = write(tmp_path / "d.jsonl", [{"input": "ab", "output": "cd"}, {"input": "ab", "output": "cd"},
                                       {"input": "x", "output": ""}, {"input": "", "output": "y" * 50}])
    from tuners.data import validate

    report, usable = validate(path, CharTokenizer(), seq_len=20)
    assert (report.rows, report.empty_rows, report.duplicate_rows, report.usable_rows) == (4, 1, 1, 3)
    assert report.token_lengths == [5, 5, 51] and report.truncated_share == pytest.approx(1 / 3)
    assert any("truncated" in p for p in report.problems)
    hist = report.histogram()
    assert sum(b["count"] for b in hist) == 3 and hist[-1]["fits"] == "truncated"


def test_loss_only_on_the_output_part():
    [enc] = encode(to_examples([{"input": "abc", "output": "de"}], "input_output"), CharTokenizer(), seq_len=10)
    assert len(enc["input_ids"]) == 6  # 3 prompt + 2 output + eos
    assert enc["labels"][:3] == [-100] * 3 and enc["labels"][3:] == enc["input_ids"][3:]
    [cut] = encode(to_examples([{"input": "a" * 12, "output": "b"}], "input_output"), CharTokenizer(), seq_len=8)
    assert len(cut["input_ids"]) == 8 and cut["labels"] == cut["input_ids"]  # prompt fills the window: learn it


@pytest.mark.parametrize("content,needle", [
    ('{"input": "a", "output": "b"}\n{bad', "line 2 is not valid JSON"),
    ("", "has no rows"),
    ('{"text": ""}\n{"text": "  "}', "no usable rows"),
])
def test_unusable_files(tmp_path, content, needle):
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=needle):
        load_examples(path)


def test_unsupported_and_missing_files(tmp_path):
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(InputError, match="unsupported type"):
        read_rows(tmp_path / "d.xlsx")
    with pytest.raises(InputError, match="not found"):
        read_rows(tmp_path / "nope.jsonl")


def test_quick_report_without_torch(tmp_path):
    path = write(tmp_path / "d.jsonl", [{"text": f"sample number {i} of the data"} for i in range(20)])
    report = quick_report(path, seq_len=64)
    assert isinstance(report, DataReport) and report.usable_rows == 20 and report.truncated_share == 0
