"""The exported project as a user takes it away (issue 26): relocatable (moved to another folder, its
bundled data still found), a training loop with a warm-up schedule, clipping, an eval loss, checkpoints
and ``--resume`` that continues exactly where a run stopped, and one clear line for a model folder
without a tokenizer."""
import json
import math
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from estimators.plan import Plan
from tuners import trainloop


def test_lr_factor_warms_up_then_decays_to_zero():
    # 10 steps, 2 warm-up: steps 0 and 1 ramp (1/3, 2/3), step 2 is the peak, the midpoint of the decay
    # (step 6: (6-2)/(10-2) = 0.5) is half way for linear and 0.5·(1+cos(π/2)) = 0.5 for cosine.
    for schedule in ("cosine", "linear"):
        f = [trainloop.lr_factor(i, schedule, 2, 10) for i in range(11)]
        assert f[0] == pytest.approx(1 / 3) and f[1] == pytest.approx(2 / 3) and f[2] == 1.0
        assert f[6] == pytest.approx(0.5) and f[10] == 0.0
        assert all(a >= b for a, b in zip(f[2:], f[3:]))  # no rise after the warm-up
    assert trainloop.lr_factor(4, "cosine", 2, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert trainloop.lr_factor(9, "constant", 2, 10) == 1.0
    assert trainloop.warmup_steps(SimpleNamespace(warmup_steps=None, warmup_ratio=0.03), 1000) == 30


def test_eval_split_is_seeded_and_leaves_a_step_of_training():
    rows = list(range(100))
    train, held = trainloop.split_eval(rows, 0.1, 4, seed=1)
    assert len(held) == 10 and sorted(train + held) == rows and not set(train) & set(held)
    assert trainloop.split_eval(rows, 0.1, 4, seed=1)[1] == held  # the same split on a resume
    assert trainloop.split_eval(rows[:5], 0.5, 4) == (rows[:5], [])  # 5 - 2 held out < one step of 4


def test_tokenizer_problem_names_the_folder_and_the_fix(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    problem = trainloop.tokenizer_problem(tmp_path)
    assert str(tmp_path) in problem and "--tokenizer" in problem
    (tmp_path / "tokenizer.json").write_text("{}")
    assert trainloop.tokenizer_problem(tmp_path) is None
    assert trainloop.tokenizer_problem("meta-llama/Llama-3.1-8B") is None  # a hub id: transformers' business


def test_export_bundles_data_and_never_points_into_the_tools_folders(tmp_path):
    from tuners import store
    from tuners.export import write_project

    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps({"text": f"row {i}"}) for i in range(8)))
    out = write_project(Plan.create("llama-3.1-8b", "lora", {}, data={"path": str(data)}), tmp_path / "p")
    doc = json.loads((out / "plan.json").read_text())
    assert doc["data"]["path"] == "data/mine.jsonl" and (out / "data" / "mine.jsonl").read_text() == data.read_text()
    assert doc["model_source"] == "meta-llama/Llama-3.1-8B" and doc["training"]["lr_schedule"] == "cosine"
    assert (out / "trainloop.py").is_file() and (out / "traindata.py").is_file()
    # A file in the tool's own run folders, too big to bundle: named by the user, never the temp path.
    inside = store.home() / "runs" / "r1" / "data"
    inside.mkdir(parents=True, exist_ok=True)
    big = inside / "0123456789ab-big.jsonl"
    with open(big, "wb") as f:
        f.truncate(51 * 1024**2)
    out2 = write_project(Plan.create("llama-3.1-8b", "lora", {}, data={"path": str(big)}), tmp_path / "p2")
    assert json.loads((out2 / "plan.json").read_text())["data"]["path"] is None
    launch = (out2 / "launch.sh").read_text()
    assert str(store.home()) not in launch and 'DATA="${DATA:-}"' in launch and "set DATA to your training file" in launch
    r = subprocess.run(["bash", str(out2 / "launch.sh")], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k not in ("DATA", "MODEL")})
    assert r.returncode == 2 and "set DATA" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    """A tiny Llama with its tokenizer in one folder, a data file, and the LoRA plan's exported project,
    moved to another folder after export with the original data file deleted."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from transformers import PreTrainedTokenizerFast

    from tuners.data import train_bpe
    from tuners.export import write_project

    root = tmp_path_factory.mktemp("relocate")
    rows = [{"input": f"Q{i % 4}: the colour?", "output": f"It is {['red', 'green', 'blue', 'gold'][i % 4]}."}
            for i in range(40)]
    data = root / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=128, vocab_size=320, max_position_embeddings=128)
    transformers.LlamaForCausalLM(cfg).save_pretrained(root / "model")
    bpe = train_bpe([r["input"] + r["output"] for r in rows], 300)
    PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                            unk_token="<unk>").save_pretrained(root / "model")
    plan = Plan.create(str(root / "model"), "lora", {"batch_size": 2, "seq_len": 32, "precision": "fp32", "lr": 5e-3,
                                                     "lora_rank": 4}, data={"path": str(data)})
    write_project(plan, root / "exported")
    moved = root / "elsewhere" / "project"
    moved.parent.mkdir()
    shutil.move(root / "exported", moved)
    data.unlink()  # the project carries its own copy
    return root, moved


def train(project, cwd, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no Tuning Advisor on the path
    return subprocess.run([sys.executable, str(project / "train.py"), *args], capture_output=True, text=True,
                          cwd=cwd, env=env)


@pytest.mark.slow
def test_moved_project_trains_checkpoints_and_resumes_where_it_stopped(tiny_project, tmp_path):
    root, project = tiny_project
    # One uninterrupted run of 4 steps with checkpoints at 2 and 4 ...
    full = train(project, tmp_path, "--max-steps", "4", "--eval-every", "2", "--save-every", "2", "--output", "full")
    assert full.returncode == 0, full.stderr[-3000:]
    log = json.loads((tmp_path / "full" / "train_log.json").read_text())
    assert log["steps"] == 4 and [e["step"] for e in log["eval"]] == [2, 4]
    assert "tokens/s" in full.stdout and "ETA" in full.stdout and "grad norm" in full.stdout
    assert {p.name for p in (tmp_path / "full" / "checkpoints").iterdir()} == {"step-2", "step-4"}
    # ... and the same run stopped after step 2 (its step-2 checkpoint), then resumed with the command.
    (tmp_path / "cut" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-2", tmp_path / "cut" / "checkpoints" / "step-2")
    resumed = train(project, tmp_path, "--max-steps", "4", "--eval-every", "2", "--resume", "--output", "cut")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "(step 2 of 4)" in resumed.stdout
    assert "step 3/4" in resumed.stdout and "step 1/4" not in resumed.stdout
    assert "eval loss" in resumed.stdout and (tmp_path / "cut" / "checkpoints" / "step-4" / "trainable.pt").is_file()
    again = json.loads((tmp_path / "cut" / "train_log.json").read_text())
    assert again["resumed_from_step"] == 2 and again["steps"] == 4
    # Same data order, schedule, optimizer state and random state: the resumed steps repeat the full run's.
    assert again["losses"] == pytest.approx(log["losses"], rel=1e-5)
    assert again["eval"][-1]["loss"] == pytest.approx(log["eval"][-1]["loss"], rel=1e-5)


@pytest.mark.slow
def test_a_model_folder_without_tokenizer_is_one_clear_line(tiny_project, tmp_path):
    root, project = tiny_project
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in (root / "model").iterdir():
        if not f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, bare / f.name)
    r = train(project, tmp_path, "--model", str(bare), "--max-steps", "1")
    assert r.returncode == 2 and "has no tokenizer files" in r.stderr and "--tokenizer" in r.stderr
    assert "Traceback" not in r.stderr and "sentencepiece" not in r.stderr
