"""One builder: for every method, and for a plan with grad_accum 4, packing and 8-bit AdamW, the trial,
the exported train.py and the dry run (fake tensors) report the same trainable parameter names and
count, the same optimizer state bytes and the same number of micro-batches per optimizer step."""
import json
import subprocess
import sys

import pytest

from estimators.methods import REGISTRY
from estimators.plan import Plan

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from tuners import launch  # noqa: E402
from tuners.dryrun import SUPPORTED, dry_run  # noqa: E402

pytestmark = pytest.mark.slow


def settings_for(tiny, method: str, **extra) -> dict:
    values = {"batch_size": 2, "seq_len": 32, "precision": "bf16" if method == "qlora" else "fp32"}
    values.update({"lora_rank": 4} if "lora_rank" in REGISTRY[method].setting_names else {})
    values.update({"num_virtual_tokens": 4} if method == "prompt_tuning" else {})
    values.update({"adapter_size": 8} if method == "adapters" else {})
    values.update({"teacher": str(tiny / "teacher")} if method == "distillation" else {})
    return {**values, **extra}


CASES = [(m, {}) for m in REGISTRY] + [("full", {"grad_accum": 4, "packing": True, "optimizer": "adamw_8bit"})]


def comparable(report: dict) -> tuple:
    return (report["trainable_names"], report["trainable_params"], report["optimizer_state_bytes"],
            report["micro_batches_per_step"])


@pytest.mark.parametrize("method,extra", CASES, ids=[m + ("-accum4-packed-8bit" if e else "") for m, e in CASES])
def test_trial_export_and_dry_run_build_the_same_run(tiny_llama, tmp_path, method, extra):
    plan = Plan.create(str(tiny_llama / "model"), method, settings_for(tiny_llama, method, **extra),
                       data={"path": str(tiny_llama / "train.jsonl")})
    run_id, run_dir = launch.start({"plan": plan.to_json(), "steps": 3})
    trial = launch.follow(run_id, timeout=300)
    assert trial["status"] == "completed", trial["error"]
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(run_dir / "project" / "train.py"), "--tokenizer", str(run_dir / "tokenizer"),
                        "--output", str(out), "--max-steps", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    exported = json.loads((out / "train_log.json").read_text())
    expected_micro = extra.get("grad_accum", 1)
    assert trial["build"]["micro_batches_per_step"] == expected_micro  # counted as they ran, not echoed
    built = trial["build"]
    if extra.get("optimizer") is None:  # AdamW: two fp32 moments per trainable element, a 4-byte step per tensor
        assert built["optimizer_state_bytes"] == 8 * built["trainable_params"] + 4 * len(built["trainable_names"])
    else:  # 8-bit moments (one byte each) for the large tensors
        assert built["optimizer_state_bytes"] < 8 * built["trainable_params"]
    assert comparable(exported) == comparable(trial["build"])
    if method in SUPPORTED:
        config = json.loads((tiny_llama / "model" / "config.json").read_text())
        fake = dry_run(config, plan, device="cpu")["build"]
        assert comparable(fake) == comparable(trial["build"])
