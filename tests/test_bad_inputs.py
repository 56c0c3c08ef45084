"""Bad input, table-driven: every case ends with exit status 2 and one line on stderr that names the
problem — never a traceback, never "internal error", never a silent success.

The CLI runs in this process (``advisor.cli.main``), so 150+ cases take seconds. Files a case needs are
written to a temporary folder first: ``{cfg}`` in an argument is replaced by that case's file path.
"""
import json

import pytest

from advisor.cli import main

GOOD_CFG = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 128, "vocab_size": 1000}
GOOD_ANSWERS = {"task": "chat", "goals": ["style"], "num_examples": 2000, "domain_distance": "moderate",
                "model": "llama-3.2-1b", "gpu": "l4"}
EST = ["estimate", "--model", "llama-3.2-1b", "--method", "lora"]


def cfg(**changes):
    out = {**GOOD_CFG, **changes}
    return {k: v for k, v in out.items() if v is not DROP}


def answers(**changes):
    out = {**GOOD_ANSWERS, **changes}
    return {k: v for k, v in out.items() if v is not DROP}


DROP = object()

# (argv, needle expected in the message)
OPTIONS = [
    # numbers: non-numbers, zero, negative, non-finite, absurd sizes
    (EST + ["--batch-size", "0"], "batch-size"), (EST + ["--batch-size", "-1"], "batch-size"),
    (EST + ["--batch-size", "abc"], "batch-size"), (EST + ["--batch-size", "1e20"], "batch-size"),
    (EST + ["--batch-size", "70000"], "batch"), (EST + ["--batch-size", "2.5"], "batch-size"),
    (EST + ["--seq-len", "0"], "seq-len"), (EST + ["--seq-len", "1e12"], "seq-len"),
    (EST + ["--seq-len", "20000000"], "seq_len"), (EST + ["--seq-len", "nan"], "seq-len"),
    (EST + ["--lora-rank", "0"], "lora-rank"), (EST + ["--lora-rank", "1000000000"], "lora_rank"),
    (EST + ["--lora-rank", "4096"], "rank"),
    (EST + ["--examples", "1e30"], "examples"), (EST + ["--examples", "nan"], "examples"),
    (EST + ["--examples", "-3"], "examples"), (EST + ["--examples", str(10**30)], "examples"),
    (EST + ["--tokens-per-example", "0"], "tokens-per-example"),
    (EST + ["--tokens-per-example", str(10**9)], "tokens_per_example"),
    (EST + ["--epochs", "nan"], "epochs"), (EST + ["--epochs", "inf"], "epochs"), (EST + ["--epochs", "-1"], "epochs"),
    (EST + ["--epochs", "0"], "epochs"), (EST + ["--epochs", "1e9"], "epochs"),
    (EST + ["--price-per-hour", "nan"], "price-per-hour"), (EST + ["--price-per-hour", "inf"], "price-per-hour"),
    (EST + ["--price-per-hour", "-1"], "price-per-hour"), (EST + ["--price-per-hour", "1e12"], "price_per_hour"),
    (EST + ["--gpu-memory-gib", "nan", "--gpu-tflops", "100"], "gpu-memory-gib"),
    (EST + ["--gpu-memory-gib", "0", "--gpu-tflops", "100"], "gpu-memory-gib"),
    (EST + ["--gpu-memory-gib", "24", "--gpu-tflops", "inf"], "gpu-tflops"),
    (EST + ["--gpu-memory-gib", "24"], "gpu"), (EST + ["--gpu-tflops", "100"], "gpu"),
    (EST + ["--gpu", "l4", "--gpu-memory-gib", "24", "--gpu-tflops", "100"], "either"),
    (EST + ["--num-gpus", "0"], "num-gpus"), (EST + ["--num-gpus", "1000000"], "num_gpus"),
    (EST + ["--grad-accum", "0"], "grad-accum"), (EST + ["--grad-accum", "1e9"], "grad-accum"),
    (EST + ["--tasks", "0"], "tasks"), (EST + ["--tasks", "10000000"], "tasks"),
    (EST + ["--num-virtual-tokens", "5"], "num-virtual-tokens"),
    (EST + ["--adapter-size", "0"], "adapter-size"),
    (EST + ["--quant-bits", "3"], "quant-bits"), (EST + ["--teacher-quant-bits", "2"], "teacher-quant-bits"),
    (EST + ["--gpu", "nosuch"], "nosuch"), (EST + ["--gpu", ""], "gpu"),
    (EST + ["--precision", "fp8"], "precision"), (EST + ["--optimizer", "sgd9"], "optimizer"),
    (EST + ["--attention", "flash9"], "attention"), (EST + ["--sharding", "zero9"], "sharding"),
    (EST + ["--sharding", "fsdp"], "sharding"),
    (EST + ["--lora-targets", ""], "lora"), (EST + ["--lora-targets", "nosuch"], "nosuch"),
    (EST + ["--lora-targets", "q,,v"], "lora"),
    # run settings: bounds, and options that do not apply to the method
    (EST + ["--lr", "nan"], "lr"), (EST + ["--lr", "inf"], "lr"), (EST + ["--lr", "-1"], "lr"),
    (EST + ["--lr", "0"], "lr"), (EST + ["--lr", "100"], "lr"),
    (EST + ["--lora-alpha", "nan"], "lora-alpha"), (EST + ["--lora-alpha", "-5"], "lora-alpha"),
    (EST + ["--lora-alpha", "1e9"], "lora_alpha"),
    (EST + ["--teacher-quant-bits", "4"], "teacher-quant-bits"), (EST + ["--temperature", "2"], "temperature"),
    (EST + ["--alpha", "0.5"], "alpha"), (EST + ["--teacher", "llama-3.1-8b"], "teacher"),
    (EST + ["--prompt-init", "text"], "prompt-init"), (EST + ["--num-virtual-tokens", "30"], "num-virtual-tokens"),
    (EST + ["--adapter-size", "32"], "adapter-size"), (EST + ["--quant-bits", "8"], "quant-bits"),
    (EST + ["--no-double-quant"], "double-quant"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "full", "--lora-rank", "8"], "lora-rank"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "full", "--lora-targets", "q,v"], "lora-targets"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "distillation", "--teacher", "llama-3.1-8b",
      "--alpha", "-5"], "alpha"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "distillation", "--teacher", "llama-3.1-8b",
      "--alpha", "nan"], "alpha"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "distillation", "--teacher", "llama-3.1-8b",
      "--alpha", "2"], "alpha"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "distillation", "--teacher", "llama-3.1-8b",
      "--temperature", "inf"], "temperature"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "distillation", "--teacher", "llama-3.1-8b",
      "--temperature", "0"], "temperature"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "distillation", "--teacher", "nosuch-teacher"], "nosuch"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "distillation"], "teacher"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "prompt_tuning", "--prompt-init", "bogus"], "prompt-init"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "qlora", "--precision", "fp32"], "qlora"),
    # models, methods, commands
    (["estimate", "--model", "nosuch-model", "--method", "lora"], "nosuch-model"),
    (["estimate", "--model", "", "--method", "lora"], "model"),
    (["estimate", "--model", "/nonexistent/config.json", "--method", "lora"], "config"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "nosuch"], "method"),
    (["estimate", "--model", "llama-3.2-1b"], "method"), (["estimate", "--method", "lora"], "model"),
    (["estimate"], "model"), (["nosuch-command"], "nosuch-command"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "qlora", "--dry-run"], "exact check"),
    (EST + ["--min-gpus", "--max-hours", "nan"], "max-hours"), (EST + ["--min-gpus", "--max-cost", "-1"], "max-cost"),
    (EST + ["--max-hours", "2"], "--min-gpus"),
    (EST + ["--bogus-flag"], "bogus-flag"),
    # runs, export, trial options (checked before anything starts)
    (["runs", "--limit", "1e20"], "limit"), (["runs", "--limit", "0"], "limit"), (["runs", "--limit", "-1"], "limit"),
    (["runs", "--limit", "abc"], "limit"), (["runs", "--limit", str(10**20)], "limit"),
    (["export", "--out", "x"], "plan"), (["export", "--plan", "/nonexistent/plan.json", "--out", "x"], "plan"),
    (["trial", "--model", "llama-3.2-1b", "--method", "lora", "--steps", "0"], "steps"),
    (["trial", "--model", "llama-3.2-1b", "--method", "lora", "--steps", "100000000"], "steps"),
    (["trial", "--model", "llama-3.2-1b", "--method", "lora", "--timeout", "nan"], "timeout"),
    (["trial", "--model", "llama-3.2-1b", "--method", "lora", "--timeout", "0"], "timeout"),
    (["trial", "--model", "llama-3.2-1b", "--method", "lora", "--timeout", "-5"], "timeout"),
    (["trial", "--model", "llama-3.2-1b", "--method", "lora", "--nproc", "0"], "nproc"),
    (["trial", "--model", "llama-3.2-1b", "--method", "lora", "--nproc", "100000"], "nproc"),
    (["trial", "--model", "llama-3.2-1b", "--method", "lora"], "--data"),
    (["trial", "--model", "llama-3.2-1b", "--method", "lora", "--data", "/nonexistent.jsonl"], "not found"),
    (["trial", "--model", "llama-3.2-1b", "--method", "lora", "--lr", "nan", "--data", "x.jsonl"], "lr"),
    (["trial", "--model", "llama-3.2-1b", "--method", "lora", "--lora-alpha", "nan", "--data", "x.jsonl"], "alpha"),
]

# (name, file content, argv with {f} for the file, needle)
CONFIGS = [
    ("model_type list", cfg(model_type=["llama"]), "model_type"),
    ("model_type number", cfg(model_type=7), "model_type"),
    ("model_type missing", cfg(model_type=DROP), "model_type"),
    ("model_type unknown", cfg(model_type="nosuchfamily"), "model_type"),
    ("experts text", cfg(model_type="mixtral", num_local_experts="eight", num_experts_per_tok=2), "num_local_experts"),
    ("experts negative", cfg(model_type="mixtral", num_local_experts=-4, num_experts_per_tok=2), "num_local_experts"),
    ("experts per token > experts", cfg(model_type="mixtral", num_local_experts=4, num_experts_per_tok=8), "experts"),
    ("hidden float", cfg(hidden_size=1e9), "hidden_size"), ("hidden huge", cfg(hidden_size=10**9), "hidden_size"),
    ("hidden text", cfg(hidden_size="4096"), "hidden_size"), ("hidden zero", cfg(hidden_size=0), "hidden_size"),
    ("hidden bool", cfg(hidden_size=True), "hidden_size"), ("hidden missing", cfg(hidden_size=DROP), "hidden_size"),
    ("layers negative", cfg(num_hidden_layers=-1), "num_hidden_layers"),
    ("layers huge", cfg(num_hidden_layers=10**7), "num_hidden_layers"),
    ("vocab bool", cfg(vocab_size=True), "vocab_size"), ("vocab huge", cfg(vocab_size=10**12), "vocab_size"),
    ("heads zero", cfg(num_attention_heads=0), "num_attention_heads"),
    ("heads do not divide", cfg(num_attention_heads=5), "num_attention_heads"),
    ("kv heads > heads", cfg(num_key_value_heads=8), "num_key_value_heads"),
    ("kv heads do not divide", cfg(num_key_value_heads=3), "num_key_value_heads"),
    ("intermediate null", cfg(intermediate_size="big"), "intermediate_size"),
    ("intermediate list", cfg(intermediate_size=[128]), "intermediate_size"),
    ("tie text", cfg(tie_word_embeddings="yes"), "tie_word_embeddings"),
    ("not an object", [GOOD_CFG], "object"), ("a string", "llama", "object"), ("null", None, "object"),
    ("gpt2 no n_embd", {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "vocab_size": 100}, "n_embd"),
    ("t5 text d_model", {"model_type": "t5", "d_model": "512", "num_layers": 2, "num_heads": 8, "d_ff": 64,
                         "d_kv": 64, "vocab_size": 100}, "d_model"),
    ("bert negative", {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "intermediate_size": -1, "vocab_size": 100}, "intermediate_size"),
]

RAW_FILES = [  # (name, bytes, needle)
    ("binary", bytes(range(256)) * 4, "UTF-8"), ("empty", b"", "JSON"), ("truncated", b'{"model_type": "lla', "JSON"),
    ("NaN value", b'{"model_type": "llama", "hidden_size": NaN}', "NaN"),
    ("Infinity", b'{"model_type": "llama", "hidden_size": Infinity}', "Infinity"),
    ("utf16", '{"model_type": "llama"}'.encode("utf-16"), "UTF-8"),
    ("trailing garbage", b'{"model_type": "llama"} xx', "JSON"),
]

ANSWERS = [
    ("task unknown", answers(task="poetry"), "task"), ("task number", answers(task=5), "task"),
    ("goals empty", answers(goals=[]), "goals"), ("goals string", answers(goals="style"), "goals"),
    ("goal unknown", answers(goals=["fame"]), "fame"), ("goal number", answers(goals=[3]), "goal"),
    ("examples huge", answers(num_examples=10**30), "num_examples"),
    ("examples float", answers(num_examples=1e30), "num_examples"),
    ("examples zero", answers(num_examples=0), "num_examples"),
    ("examples text", answers(num_examples="many"), "num_examples"),
    ("tokens zero", answers(avg_tokens_per_example=0), "avg_tokens_per_example"),
    ("tokens huge", answers(avg_tokens_per_example=10**9), "avg_tokens_per_example"),
    ("distance unknown", answers(domain_distance="galactic"), "domain_distance"),
    ("priority unknown", answers(priority="speed"), "priority"),
    ("gpus zero", answers(num_gpus=0), "num_gpus"), ("gpus huge", answers(num_gpus=10**7), "num_gpus"),
    ("tasks bool", answers(num_tasks=True), "num_tasks"),
    ("hours negative", answers(max_hours=-1), "max_hours"), ("cost zero", answers(max_cost_usd=0), "max_cost_usd"),
    ("hours text", answers(max_hours="soon"), "max_hours"), ("epochs huge", answers(epochs=1e9), "epochs"),
    ("unknown field", answers(colour="red"), "colour"), ("missing task", answers(task=DROP), "task"),
    ("missing model", answers(model=DROP), "model"), ("model unknown", answers(model="nosuch-model"), "nosuch-model"),
    ("gpu unknown", answers(gpu="nosuch-gpu"), "nosuch-gpu"), ("gpu number", answers(gpu=4), "gpu"),
    ("model list", answers(model=["llama-3.2-1b"]), "model"),
    ("teacher unknown", answers(teacher="nosuch-teacher"), "nosuch-teacher"),
    ("not an object", [GOOD_ANSWERS], "object"), ("a number", 3, "object"),
]
RAW_ANSWERS = [
    ("binary", bytes(range(256)), "UTF-8"), ("empty", b"", "JSON"),
    ("NaN epochs", json.dumps(answers()).replace("}", ', "epochs": NaN}').encode(), "NaN"),
    ("Infinity hours", json.dumps(answers()).replace("}", ', "max_hours": Infinity}').encode(), "Infinity"),
]

PLANS = [  # plan files given to `estimate --plan` and `export --plan`
    ("not an object", [1, 2], "plan"), ("no method", {"model": "llama-3.2-1b", "settings": {}}, "method"),
    ("unknown method", {"model": "llama-3.2-1b", "method": "magic"}, "magic"),
    ("batch text", {"model": "llama-3.2-1b", "method": "lora", "settings": {"batch_size": "4"}}, "batch_size"),
    ("batch huge", {"model": "llama-3.2-1b", "method": "lora", "settings": {"batch_size": 10**6}}, "batch_size"),
    ("seq huge", {"model": "llama-3.2-1b", "method": "lora", "settings": {"seq_len": 10**8}}, "seq_len"),
    ("rank above hidden", {"model": "llama-3.2-1b", "method": "lora", "settings": {"lora_rank": 100000}}, "rank"),
    ("unknown setting", {"model": "llama-3.2-1b", "method": "lora", "settings": {"teacher": "x"}}, "teacher"),
    ("settings list", {"model": "llama-3.2-1b", "method": "lora", "settings": [1]}, "settings"),
    ("gpu unknown", {"model": "llama-3.2-1b", "method": "lora", "hardware": {"gpu": "nosuch-gpu"}}, "nosuch-gpu"),
    ("custom gpu half", {"model": "llama-3.2-1b", "method": "lora", "hardware": {"gpu": "custom"}}, "custom"),
    ("tasks zero", {"model": "llama-3.2-1b", "method": "lora", "tasks": 0}, "tasks"),
    ("token lengths text", {"model": "llama-3.2-1b", "method": "lora", "data": {"token_lengths": "long"}}, "token_lengths"),
    ("token lengths negative", {"model": "llama-3.2-1b", "method": "lora", "data": {"token_lengths": {"mean": -1}}},
     "token_lengths"),
    ("examples zero", {"model": "llama-3.2-1b", "method": "lora", "data": {"num_examples": 0}}, "num_examples"),
    ("model empty", {"model": " ", "method": "lora"}, "model"),
    ("model unknown", {"model": "nosuch-model", "method": "lora"}, "nosuch-model"),
    ("version from the future", {"version": 99, "model": "llama-3.2-1b", "method": "lora"}, "version"),
]


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content))
    return str(path)


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line_error(code, err, needle):
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert needle.lower() in err.lower(), (needle, err)


@pytest.mark.parametrize("argv,needle", OPTIONS, ids=[" ".join(a[4:] or a)[:60] for a, _ in OPTIONS])
def test_bad_options(argv, needle, capsys):
    try:
        code, err = run_cli(argv, capsys)
    except SystemExit as exc:  # argparse refuses before main's handler: still exit 2, one line
        code, err = exc.code, capsys.readouterr().err
    assert_one_line_error(code, err, needle)


@pytest.mark.parametrize("name,content,needle", CONFIGS + RAW_FILES, ids=[c[0] for c in CONFIGS + RAW_FILES])
def test_bad_model_configs(name, content, needle, tmp_path, capsys):
    path = _write(tmp_path / "config.json", content)
    for argv in (["estimate", "--model", path, "--method", "lora"],
                 ["estimate", "--model", str(tmp_path), "--method", "full", "--dry-run"]):
        code, err = run_cli(argv, capsys)
        assert_one_line_error(code, err, needle)
        assert "secret" not in err


@pytest.mark.parametrize("name,content,needle", ANSWERS + RAW_ANSWERS, ids=[c[0] for c in ANSWERS + RAW_ANSWERS])
def test_bad_answers(name, content, needle, tmp_path, capsys):
    path = _write(tmp_path / "answers.json", content)
    code, err = run_cli(["recommend", "--answers", path], capsys)
    assert_one_line_error(code, err, needle)


@pytest.mark.parametrize("name,content,needle", PLANS + RAW_FILES[:4], ids=[c[0] for c in PLANS + RAW_FILES[:4]])
def test_bad_plans(name, content, needle, tmp_path, capsys):
    path = _write(tmp_path / "plan.json", content)
    for argv in (["estimate", "--plan", path], ["export", "--plan", path, "--out", str(tmp_path / "out")]):
        code, err = run_cli(argv, capsys)
        assert_one_line_error(code, err, needle)
    assert not (tmp_path / "out").exists()


def test_a_secret_in_a_config_is_never_echoed(tmp_path, capsys):
    secret = "sk-live-0123456789abcdef"
    for field in ("model_type", "hidden_size", "intermediate_size"):
        path = _write(tmp_path / "config.json", cfg(**{field: secret}))
        code, err = run_cli(["estimate", "--model", path, "--method", "lora"], capsys)
        assert code == 2 and secret not in err and field in err, err


def test_case_count():
    total = len(OPTIONS) + len(CONFIGS + RAW_FILES) + len(ANSWERS + RAW_ANSWERS) + len(PLANS) + 4
    assert total >= 150, total


SECRET = "sk-private-4242"
DATA_FILES = [  # (name, file name, bytes, needle): every one refused with one line that quotes nothing of it
    ("binary", "d.jsonl", bytes(range(256)) * 8, "UTF-8"), ("utf16", "d.jsonl", f'{{"text": "{SECRET}"}}'.encode("utf-16"), "UTF-8"),
    ("empty", "d.jsonl", b"", "no rows"), ("blank lines", "d.jsonl", b"\n\n  \n", "no rows"),
    ("unsupported type", "d.txt", SECRET.encode(), "unsupported"),
    ("unknown columns", "d.jsonl", f'{{"{SECRET}": 1}}\n'.encode(), "columns"),
    ("empty completions", "d.jsonl", b'{"input": "a", "output": ""}\n{"input": "b", "output": "  "}\n', "usable"),
    ("bad json line", "d.jsonl", f'{{"text": "ok"}}\n{{"text": {SECRET}\n'.encode(), "line 2"),
    ("array of numbers", "d.json", b"[1, 2, 3]", "object"), ("array with a number", "d.json", b'[{"text": "x"}, 5]', "object"),
    ("jsonl of lists", "d.jsonl", b"[1]\n[2]\n", "object"),
    ("csv unclosed quote", "d.csv", f'input,output\n"{SECRET},b\nc,d\n'.encode(), "quote"),
    ("csv header only", "d.csv", b"input,output\n", "rows"),
    ("csv unknown columns", "d.csv", f"{SECRET},b\n1,2\n".encode(), "columns"),
    ("parquet garbage", "d.parquet", SECRET.encode() * 10, "parsed"),
    ("one huge line", "d.jsonl", b'{"text": "' + b"x" * 1_100_000 + b'"}\n', "usable"),
    ("messages without assistant", "d.jsonl", b'{"messages": [{"role": "user", "content": "hi"}]}\n', "usable"),
    ("NaN only", "d.jsonl", b'{"text": NaN}\n', "NaN"),
]


@pytest.mark.parametrize("name,filename,content,needle", DATA_FILES, ids=[d[0] for d in DATA_FILES])
def test_bad_data_files(name, filename, content, needle, tmp_path):
    from estimators.errors import InputError
    from tuners.data import quick_report

    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        quick_report(path, 128)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and needle.lower() in message.lower(), message
    assert SECRET not in message


def test_data_folders_and_missing_files_are_refused(tmp_path):
    from estimators.errors import InputError
    from tuners.data import load_examples

    for path in (tmp_path, tmp_path / "missing.jsonl"):
        with pytest.raises(InputError, match="not found"):
            load_examples(path)


def test_over_long_rows_are_skipped_and_counted(tmp_path):
    from tuners.data import quick_report

    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([json.dumps({"text": "short example %d" % i}) for i in range(20)]
                              + [json.dumps({"text": "y" * 1_200_000})]))
    report = quick_report(path, 64)
    assert report.rows == 21 and report.usable_rows == 20 and report.empty_rows == 1
    assert any("over-long" in p for p in report.problems)


# --- the app's inputs: each bad one is an st.error of one line, the page never raises ------------

APP_CASES = [  # (name, [(widget kind, key, value), ...], needle)
    ("pasted text", [("radio", "model_mode", "Paste config.json"), ("text_area", "model_config", "not json")], "JSON"),
    ("pasted list", [("radio", "model_mode", "Paste config.json"), ("text_area", "model_config", "[1]")], "object"),
    ("pasted secret type", [("radio", "model_mode", "Paste config.json"),
                            ("text_area", "model_config", json.dumps(cfg(model_type=SECRET)))], "model_type"),
    ("pasted negative experts", [("radio", "model_mode", "Paste config.json"),
                                 ("text_area", "model_config", json.dumps(cfg(model_type="mixtral", num_local_experts=-4,
                                                                              num_experts_per_tok=2)))], "experts"),
    ("pasted NaN", [("radio", "model_mode", "Paste config.json"),
                    ("text_area", "model_config", '{"model_type": "llama", "hidden_size": NaN}')], "NaN"),
    ("missing folder", [("radio", "model_mode", "Local folder"), ("text_input", "model_folder", "/no/such/folder")],
     "no/such/folder"),
    ("missing data file", [("radio", "data_mode", "File path"), ("text_input", "data_file", "/no/such.jsonl")],
     "not found"),
    ("data of another type", [("radio", "data_mode", "File path"), ("text_input", "data_file", "{tmp}/d.txt")],
     "unsupported"),
    ("csv unclosed quote", [("radio", "data_mode", "File path"), ("text_input", "data_file", "{tmp}/d.csv")], "quote"),
    ("no goals", [("multiselect", "goals", [])], "goal"),
]


@pytest.mark.parametrize("name,steps,needle", APP_CASES, ids=[c[0] for c in APP_CASES])
def test_bad_app_inputs(name, steps, needle, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path / "home"))
    (tmp_path / "d.txt").write_text(SECRET)
    (tmp_path / "d.csv").write_text(f'input,output\n"{SECRET},b\n')
    at = AppTest.from_file(str(ROOT / "advisor_app.py"), default_timeout=90).run()
    for kind, key, value in steps:
        getattr(at, kind)(key=key).set_value(value.replace("{tmp}", str(tmp_path)) if isinstance(value, str) else value)
        at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and all(len(e.splitlines()) == 1 for e in errors), errors
    assert needle.lower() in " ".join(errors).lower() and SECRET not in " ".join(errors), errors
