"""The CLI contract: commands, --json shapes, and one-line errors with exit status 2.

The commands run in this process (``advisor.cli.main``, as tests/test_bad_inputs.py runs them), which
saves a Python start per case; ``test_the_entry_points_run_as_processes`` runs the real entry points."""
import contextlib
import io
import json
import subprocess
import sys

import pytest

from advisor.cli import main
from tests.conftest import ROOT


def cli(*args) -> subprocess.CompletedProcess:
    """``tuning-advisor ARGS`` in this process: its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def process(module: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT)


def test_the_entry_points_run_as_processes():
    """``python -m advisor`` and ``python -m advisor.cli`` (what the tuning-advisor script runs)."""
    r = process("advisor", "gpus", "--json")
    assert r.returncode == 0 and json.loads(r.stdout), r.stderr
    r = process("advisor.cli", "estimate", "--model", "gpt2", "--method", "lora", "--batch-size", "0")
    assert r.returncode == 2 and "--batch-size" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = process("advisor")
    assert r.returncode == 2 and "give a command" in r.stderr


ACCEPTANCE = ["estimate", "--model", "llama-3.1-8b", "--method", "qlora", "--gpu", "l4", "--examples", "5000",
              "--tokens-per-example", "400", "--epochs", "2"]


def test_estimate_json_contract():
    r = cli(*ACCEPTANCE, "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert (j["model"], j["method"]) == ("llama-3.1-8b", "qlora")
    assert j["params"]["total"] == 8_030_261_248 and j["params"]["trainable"] == 41_943_040
    for key in ("weights", "gradients", "optimizer", "activations", "other", "peak_allocated", "overhead", "total"):
        assert isinstance(j["memory"][key], int) and j["memory"][key] > 0, key
    assert j["memory"]["total"] == j["memory"]["peak_allocated"] + j["memory"]["overhead"]
    assert j["fits"] is True
    assert j["time"]["tokens"] == 5000 * 400 * 2 and j["time"]["flops"] > 0 and j["time"]["seconds"] > 0
    assert j["cost_usd"] > 0 and j["artifact_bytes"] == 41_943_040 * 4
    assert j["assumptions"] and all(isinstance(a, str) for a in j["assumptions"])


def test_estimate_text_table():
    r = cli(*ACCEPTANCE)
    assert r.returncode == 0, r.stderr
    for word in ("Memory per GPU", "peak allocated", "fits on 1× NVIDIA L4", "cost", "Assumptions"):
        assert word in r.stdout


def test_no_gpu_means_fits_null_and_no_time():
    j = json.loads(cli("estimate", "--model", "gpt2", "--method", "full", "--json").stdout)
    assert j["fits"] is None and j["time"]["seconds"] is None and j["cost_usd"] is None


def test_models_and_gpus():
    models = json.loads(cli("models", "--json").stdout)
    assert len(models) >= 25 and {"id", "params", "source"} <= set(models[0])
    gpus = json.loads(cli("gpus", "--json").stdout)
    assert len(gpus) >= 12 and all(g["source"] for g in gpus)
    assert "llama-3.1-8b" in cli("models").stdout and "h100-sxm" in cli("gpus").stdout


def test_model_from_config_path_and_folder(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 128, "vocab_size": 1000}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    for ref in (str(tmp_path / "config.json"), str(tmp_path)):
        j = json.loads(cli("estimate", "--model", ref, "--method", "lora", "--json").stdout)
        assert j["params"]["total"] == 1000 * 64 * 2 + 2 * (4 * 64 * 64 + 3 * 64 * 128 + 128) + 64


def test_custom_gpu():
    j = json.loads(cli("estimate", "--model", "gpt2", "--method", "full", "--gpu-memory-gib", "8",
                       "--gpu-tflops", "50", "--price-per-hour", "0.5", "--examples", "100",
                       "--tokens-per-example", "100", "--json").stdout)
    assert j["fits"] is True and j["gpu"]["id"] == "custom" and j["cost_usd"] > 0


@pytest.mark.parametrize("args,needle", [
    (["estimate", "--model", "nope-7b", "--method", "lora"], "unknown model 'nope-7b'"),
    (["estimate", "--model", "gpt2", "--method", "lora", "--gpu", "tpu9"], "unknown GPU 'tpu9'"),
    (["estimate", "--model", "gpt2", "--method", "lora", "--batch-size", "-3"], "positive integer"),
    (["estimate", "--model", "gpt2", "--method", "lora", "--seq-len", "0"], "positive integer"),
    (["estimate", "--model", "gpt2", "--method", "magic"], "invalid choice"),
    (["estimate", "--model", "llama-3.2-1b", "--method", "distillation"], "needs a teacher"),
    (["estimate", "--model", "gpt2", "--method", "lora", "--sharding", "fsdp"], "needs more than one GPU"),
    # (issue 11: prompt tuning now estimates on encoders; a teacher with another tokenizer is the bad pairing)
    (["estimate", "--model", "tinyllama-1.1b", "--method", "distillation", "--teacher", "mixtral-8x7b-v0.1"],
     "must share a tokenizer"),
    (["estimate", "--model", "gpt2", "--method", "lora", "--lora-targets", "zz"], "not found"),
    (["estimate", "--method", "lora"], "--model"),
])
def test_bad_input_exits_2_with_one_line(args, needle):
    r = cli(*args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_malformed_config_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    r = cli("estimate", "--model", str(bad), "--method", "lora")
    assert r.returncode == 2 and "not valid JSON" in r.stderr and len(r.stderr.splitlines()) == 1
    bad.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    r = cli("estimate", "--model", str(bad), "--method", "lora")
    assert r.returncode == 2 and "missing 'num_hidden_layers'" in r.stderr and "missing 'vocab_size'" in r.stderr


def test_help_teaches():
    r = cli("--help")
    assert r.returncode == 0 and "estimate" in r.stdout and "--json" in r.stdout
    r = cli("estimate", "--help")
    assert "--lora-targets" in r.stdout and "--sharding" in r.stdout and "default" in r.stdout


def test_estimate_plan_min_gpus(tmp_path):
    plan = {"model": "llama-3.1-70b", "method": "qlora", "settings": {"gradient_checkpointing": True},
            "hardware": {"gpu": "rtx-4090"}, "data": {"num_examples": 2000, "tokens_per_example": 400}}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    r = cli("estimate", "--plan", str(tmp_path / "plan.json"), "--min-gpus", "--json")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)["min_gpus"]
    assert m["gpu"] == "rtx-4090" and m["by_sharding"]["none"] is None  # 70B in 4 bits is ~37 GiB: no 24 GB replica
    assert m["by_sharding"]["fsdp"]["num_gpus"] >= 2 and m["by_sharding"]["fsdp"]["memory_per_gpu"] < 24 * 2**30
    text = cli("estimate", "--plan", str(tmp_path / "plan.json"), "--min-gpus")
    assert "How many rtx-4090 GPUs" in text.stdout and "Cheapest" in text.stdout


@pytest.mark.parametrize("args,needle", [
    (["--price-per-hour", "nan"], "price-per-hour"),
    (["--epochs", "inf"], "epochs"),
    (["--gpu-memory-gib", "nan", "--gpu-tflops", "100"], "gpu-memory-gib"),
    (["--lr", "inf"], "lr"),
    (["--lr", "nan"], "lr"),
])
def test_non_finite_numbers_are_refused(args, needle):
    r = cli("estimate", "--model", "llama-3.2-1b", "--method", "lora", *args)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("extra,needle", [(["--alpha", "nan"], "alpha"), (["--alpha", "-5"], "alpha"),
                                          (["--temperature", "inf"], "temperature")])
def test_distillation_options_are_validated_before_anything_runs(extra, needle):
    r = cli("estimate", "--model", "llama-3.2-1b", "--method", "distillation", "--teacher", "llama-3.1-8b", *extra)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.skipif(__import__("shutil").which("nvidia-smi") is not None, reason="a GPU machine: its memory decides")
def test_a_trial_larger_than_this_machine_needs_force(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n')
    r = cli("trial", "--model", "llama-3.1-70b", "--method", "full", "--data", str(data), "--steps", "3")
    assert r.returncode == 2 and "--force" in r.stderr and "GiB" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
