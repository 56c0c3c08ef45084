"""The exact check: a fake-tensor step agrees with a real CPU step, and the analytic estimate agrees
with the exact check at a real architecture of ~0.5B parameters (no memory allocated)."""
import json
import subprocess
import sys
import warnings

import pytest

from estimators.catalog import model_by_id, model_configs
from estimators.memory import estimate_memory
from estimators.setup import TrainSetup
from estimators.spec import spec_from_config
from tests.conftest import ROOT

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tuners.dryrun import dry_run  # noqa: E402
from tuners.measure import measure_step_memory  # noqa: E402
from estimators.plan import Plan  # noqa: E402
from tuners import methods, runtime  # noqa: E402

pytestmark = pytest.mark.slow
TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 352, "vocab_size": 2048,
        "max_position_embeddings": 1024, "tie_word_embeddings": False}


@pytest.mark.parametrize("method", ["full", "lora", "prompt_tuning", "adapters", "dora"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_dry_run_matches_a_real_cpu_step_within_5_percent(method, checkpointing):
    setup = TrainSetup(method=method, batch_size=2, seq_len=128, precision="fp32", device="cpu",
                       gradient_checkpointing=checkpointing, lora_rank=8, num_virtual_tokens=10, adapter_size=16)
    plan = Plan.from_setup("tiny", setup)
    fake = dry_run(TINY, plan, device="cpu")
    conf = transformers.AutoConfig.for_model(**{k: v for k, v in TINY.items() if k != "architectures"})
    conf._attn_implementation = "sdpa"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        recipe = methods.recipe(plan, spec_from_config(TINY))
        model = runtime.prepare(transformers.LlamaForCausalLM(conf), recipe, plan.settings)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, TINY["vocab_size"], (2, 128))
    real = measure_step_memory(model, opt, {"input_ids": ids, "labels": ids})
    assert fake["peak_allocated"] == pytest.approx(real.peak_allocated, rel=0.05)


@pytest.mark.parametrize("method", ["full", "lora", "prompt_tuning"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_analytic_within_10_percent_of_dry_run_at_half_a_billion(method, checkpointing):
    setup = TrainSetup(method=method, batch_size=1, seq_len=512, gradient_checkpointing=checkpointing, device="cuda")
    exact = dry_run(model_configs()["qwen2.5-0.5b"], Plan.from_setup("qwen2.5-0.5b", setup))
    analytic = estimate_memory(model_by_id("qwen2.5-0.5b"), setup)
    assert analytic.peak_allocated == pytest.approx(exact["peak_allocated"], rel=0.10), exact


def test_cli_dry_run_json():
    r = subprocess.run([sys.executable, "-m", "advisor", "estimate", "--model", "smollm2-135m", "--method", "lora",
                        "--seq-len", "128", "--dry-run", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["dry_run"]["peak_allocated"] > 0 and abs(j["dry_run"]["analytic_vs_dry_run"]) < 0.1


def test_dry_run_refuses_qlora_with_a_clear_line():
    r = subprocess.run([sys.executable, "-m", "advisor", "estimate", "--model", "smollm2-135m", "--method", "qlora",
                        "--dry-run"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "needs a real trial run" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# GPT-2 (attention and residual dropout 0.1, gelu_new), T5, an encoder and the new families, at a real
# size: the analytic estimate within 5 % of the exact check as a GPU would run it.
@pytest.mark.parametrize("model_id,method,targets", [
    ("gpt2", "full", "all-linear"), ("gpt2", "lora", "q,v"), ("gpt2", "lora", "all-linear,lm_head"),
    ("gpt2", "prompt_tuning", "all-linear"), ("flan-t5-base", "lora", "all-linear"),
    ("bert-base-uncased", "full", "all-linear"), ("gemma-3-1b", "lora", "all-linear")])
def test_analytic_within_5_percent_of_gpu_exact_check(model_id, method, targets):
    setup = TrainSetup(method=method, batch_size=4, seq_len=256, lora_targets=targets)
    exact = dry_run(model_configs()[model_id], Plan.from_setup(model_id, setup))
    assert exact["kernels"].startswith("CUDA's fused")
    assert estimate_memory(model_by_id(model_id), setup).peak_allocated == pytest.approx(exact["peak_allocated"], rel=0.05)


def test_gpu_exact_check_keeps_no_attention_scores_for_gpt2():
    """With attention dropout (GPT-2: 0.1) a CPU's SDPA keeps s×s scores and masks; CUDA's fused kernels
    do not — the exact check for a GPU must grow linearly with the sequence."""
    def peak(seq):
        setup = TrainSetup(method="lora", batch_size=1, seq_len=seq, lora_targets="c_attn")
        return dry_run(model_configs()["gpt2"], Plan.from_setup("gpt2", setup))["peak_allocated"]

    base = peak(128)
    assert (peak(1024) - base) / (peak(512) - base) == pytest.approx((1024 - 128) / (512 - 128), rel=0.05)


def test_lora_dropout_masks_in_the_gpu_exact_check_and_the_estimate():
    """lora_dropout 0.1 on a real architecture: what the GPU exact check adds (CUDA's 1-byte masks, each
    layer's own dropped-out copy) is what the estimate adds."""
    peaks = {}
    for p in (0.0, 0.1):
        setup = TrainSetup(method="lora", batch_size=2, seq_len=512, lora_dropout=p, device="cuda")
        plan = Plan.from_setup("qwen2.5-0.5b", setup)
        assert plan.settings["lora_dropout"] == p
        exact = dry_run(model_configs()["qwen2.5-0.5b"], plan)["peak_allocated"]
        peaks[p] = (exact, estimate_memory(model_by_id("qwen2.5-0.5b"), setup).peak_allocated)
        assert peaks[p][1] == pytest.approx(exact, rel=0.01)
    exact_added, estimated_added = (peaks[0.1][i] - peaks[0.0][i] for i in (0, 1))
    assert exact_added > 0.2 * 2**30 and estimated_added == pytest.approx(exact_added, rel=0.03)
