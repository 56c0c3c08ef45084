"""Serving: KV cache bytes by hand from the configs, weights as served per method, decode arithmetic,
GPUs for a traffic, the traffic answers' bounds, and total cost in the recommendation (issue 24)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.answers import Answers
from advisor.recommend import recommend
from estimators.catalog import gpu_by_id, load_model, model_configs
from estimators.errors import InputError
from estimators.kvcache import kv_cache
from estimators.serving import Traffic, constants, host, served, step_seconds
from estimators.setup import TrainSetup

# --- KV cache: five architectures, computed by hand from each config.json -------------------------


def _cfg(model):
    return model_configs()[model]


def test_kv_gqa_llama():
    c = _cfg("llama-3.1-8b")  # 32 layers, 8 KV heads, head_dim 4096 / 32 = 128, bf16
    assert (c["num_hidden_layers"], c["num_key_value_heads"], c["hidden_size"] // c["num_attention_heads"]) == (32, 8, 128)
    per_token = 32 * 2 * 8 * 128 * 2  # layers × (K and V) × kv heads × head_dim × 2 bytes = 131,072
    assert kv_cache(load_model("llama-3.1-8b")).bytes_for(1000) == 1000 * per_token == 131_072_000


def test_kv_mla_latent_and_transformers_layout():
    c = _cfg("deepseek-v3")  # 61 layers; latent 512 + rope key 64 per layer
    assert (c["num_hidden_layers"], c["kv_lora_rank"], c["qk_rope_head_dim"]) == (61, 512, 64)
    assert kv_cache(load_model("deepseek-v3")).bytes_for(1000) == 1000 * 61 * (512 + 64) * 2 == 70_272_000
    lite = _cfg("deepseek-v2-lite")  # DynamicCache keeps decompressed K (nope 128 + rope 64) and V (128) per head
    per_token = 27 * 16 * (128 + 64 + 128) * 2
    assert (lite["num_hidden_layers"], lite["num_attention_heads"]) == (27, 16)
    assert kv_cache(load_model("deepseek-v2-lite"), layout="transformers").bytes_per_token == per_token == 276_480


def test_kv_sliding_window_gemma2_alternates():
    # Gemma 2 9B: 42 layers, layers 0, 2, ..., 40 slide (21) over 4096 tokens; 8 KV heads × 256
    layer = 2 * 8 * 256 * 2
    assert kv_cache(load_model("gemma-2-9b")).bytes_for(10_000) == layer * (21 * 10_000 + 21 * 4096) == 2_424_963_072


def test_kv_sliding_window_gemma3_five_of_six():
    # Gemma 3 12B: 48 layers, every 6th global (8), 40 slide over 1024 tokens; 8 KV heads × 256
    layer = 2 * 8 * 256 * 2
    assert kv_cache(load_model("gemma-3-12b")).bytes_for(8192) == layer * (8 * 8192 + 40 * 1024) == 872_415_232


def test_kv_layer_types_gpt_oss():
    types = _cfg("gpt-oss-20b")["layer_types"]
    assert types.count("sliding_attention") == 12 and len(types) == 24
    layer = 2 * 8 * 64 * 2  # 8 KV heads × head_dim 64
    assert kv_cache(load_model("gpt-oss-20b")).bytes_for(4096) == layer * (12 * 4096 + 12 * 128) == 103_809_024


def test_kv_no_window_when_disabled_and_encoders():
    # Qwen2.5-7B carries sliding_window but use_sliding_window false: every layer keeps every token
    assert kv_cache(load_model("qwen2.5-7b")).bytes_for(200_000) == 200_000 * 28 * 2 * 4 * 128 * 2
    assert kv_cache(load_model("bert-base-uncased")).bytes_per_token == 0
    t5 = kv_cache(load_model("flan-t5-base"))  # 12 decoder layers × (self + cross) K/V of 12 heads × 64
    assert t5.bytes_per_token == 12 * 2 * 12 * 64 * 2
    assert kv_cache(load_model("llama-3.1-8b"), "fp8").bytes_per_token == 65_536
    with pytest.raises(InputError, match="KV cache dtype"):
        kv_cache(load_model("llama-3.1-8b"), "int3")


# --- weights as served --------------------------------------------------------------------------

LLAMA = load_model("llama-3.1-8b")
H100 = gpu_by_id("h100-sxm")


def test_served_per_method():
    base = LLAMA.total_params * 2
    merged = served(LLAMA, TrainSetup(method="lora"), 1)
    assert (merged.weights_bytes, merged.deployments, merged.step_penalty) == (base, 1, 0)
    multi = served(LLAMA, TrainSetup(method="lora"), 2000)
    adapter = 41_943_040 * 2  # rank 16 all-linear on Llama-3.1-8B: 41.9M parameters in 16 bits
    assert multi.adapter_bytes == adapter and multi.host_bytes == 2000 * adapter and multi.deployments == 1
    assert multi.step_penalty == constants()["multi_lora_penalty"]
    full = served(LLAMA, TrainSetup(method="full"), 2000)
    assert (full.deployments, full.weights_bytes) == (2000, base)
    prompt = served(LLAMA, TrainSetup(method="prompt_tuning", num_virtual_tokens=30), 5)
    assert prompt.virtual_tokens == 30 and prompt.deployments == 1
    q = served(LLAMA, TrainSetup(method="qlora"), 10)  # 4-bit base kept for several tasks
    linear = LLAMA.linear_params()
    assert q.weights_bytes == int(linear * 4.127 / 8 + (LLAMA.total_params - linear) * 2) < base / 2
    assert served(LLAMA, TrainSetup(method="qlora"), 1).weights_bytes == base  # one task: merged to 16 bits
    assert served(LLAMA, TrainSetup(method="adapters"), 1).added_modules == 2 * 32


def test_decode_step_by_hand():
    c = constants()
    s = served(LLAMA, TrainSetup(method="lora"), 1)
    kv = kv_cache(LLAMA)
    read = (LLAMA.total_params - 128_256 * 4096) * 2 + 1 * 1000 * 131_072  # untied embedding not read; one sequence
    expected = read / (3350e9 * c["bandwidth_efficiency"]) + 32 * c["layer_overhead_seconds"] + c["step_overhead_seconds"]
    assert step_seconds(LLAMA, s, H100, 1, 1, 1000, kv) == pytest.approx(expected, rel=1e-9)
    # Tensor parallel over 2 halves the reads and adds two all-reduces per layer.
    two = step_seconds(LLAMA, s, H100, 2, 1, 1000, kv)
    assert two < expected and two > read / 2 / (3350e9 * c["bandwidth_efficiency"])


# --- GPUs for a traffic -----------------------------------------------------------------------------


def test_many_tenants_multi_lora_cheaper_than_whole_models():
    t = Traffic(200_000, 600, 200)
    lora = host(LLAMA, TrainSetup(method="lora"), t, H100, tasks=2000)
    full = host(LLAMA, TrainSetup(method="full"), t, H100, tasks=2000)
    # 2,000 whole 16 GB models need at least 2,000 × 16.06 GB / (0.9 × 80 GB) GPUs just to stay loaded.
    assert full.gpus >= math.ceil(2000 / (H100.memory_bytes * 0.9 // (LLAMA.total_params * 2)))
    assert lora.gpus < full.gpus / 100 and lora.usd_per_month < full.usd_per_month / 100
    assert lora.usd_per_month == pytest.approx(lora.gpus * 2.99 * 730)


def test_more_traffic_more_gpus_and_latency_target():
    small = host(LLAMA, TrainSetup(method="lora"), Traffic(10_000, 500, 200), H100)
    big = host(LLAMA, TrainSetup(method="lora"), Traffic(20_000_000, 500, 200), H100)
    assert small.gpus == 1 and big.gpus > small.gpus and big.replicas > 1
    tight = host(LLAMA, TrainSetup(method="lora"), Traffic(20_000_000, 500, 200, tpot_ms=10), H100)
    assert tight.meets_latency and tight.replica.tpot_s <= 0.010 and tight.gpus >= big.gpus
    impossible = host(LLAMA, TrainSetup(method="lora"), Traffic(1000, 500, 200, tpot_ms=0.5), H100)
    assert impossible.meets_latency is False and impossible.notes
    seventy = host(load_model("llama-3.1-70b"), TrainSetup(method="lora"), Traffic(1000, 500, 200), H100)
    assert seventy.tp == 2  # 141 GB of bf16 weights need two 80 GB GPUs per replica


@pytest.mark.parametrize("bad", [dict(requests_per_day=-5), dict(requests_per_day=0), dict(requests_per_day=math.nan),
                                 dict(requests_per_day=math.inf), dict(requests_per_day=True),
                                 dict(requests_per_day=10, tokens_out=0), dict(requests_per_day=10, tokens_in=-1),
                                 dict(requests_per_day=10, tokens_in=2.5), dict(requests_per_day=10, p50_tpot_ms=math.nan),
                                 dict(requests_per_day=10, peak_concurrency=0), dict(requests_per_day=10, retunes=0),
                                 dict(requests_per_day=10, horizon_months=-1), dict(requests_per_day=10, serving_gpu="h900"),
                                 dict(tokens_in=500)])
def test_traffic_answers_refused(bad):
    with pytest.raises(InputError) as exc:
        Answers.from_dict({**BASE, **bad})
    assert "\n" not in str(exc.value) and list(bad)[-1] in str(exc.value)


BASE = dict(task="chat", goals=["multi_task", "style"], num_examples=2000, avg_tokens_per_example=400,
            domain_distance="close", model="llama-3.1-8b", gpu="a100-80gb")


def test_cli_bad_traffic_one_line_exit_2(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({**BASE, "requests_per_day": -1}))
    run = subprocess.run([sys.executable, "-m", "advisor", "recommend", "--answers", str(path)], capture_output=True,
                         text=True)
    assert run.returncode == 2 and "requests_per_day" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


# --- total cost in the recommendation ----------------------------------------------------------------


def test_no_traffic_ranks_as_before_and_says_not_priced():
    plain = recommend(Answers.from_dict(BASE))
    assert plain.hosting["priced"] is False and "not priced" in plain.summary
    assert all(a.total_cost is None for a in plain.recommendations)
    j = plain.to_json()["recommendations"][0]["estimate"]["serving"]
    assert j["kv_bytes_per_token"] == 131_072 and j["usd_per_month"] is None and j["gpus"]["type"] == "a100-80gb"
    priced = recommend(Answers.from_dict({**BASE, "requests_per_day": 50_000}))  # balanced: order kept
    assert [a.method for a in priced.recommendations] == [a.method for a in plain.recommendations]


def test_two_thousand_tenants_total_for_all():
    a = Answers.from_dict({**BASE, "num_tasks": 2000, "priority": "cost", "requests_per_day": 200_000,
                           "tokens_in": 600, "tokens_out": 200, "serving_gpu": "h100-sxm", "horizon_months": 12})
    rec = recommend(a)
    by = {r.method: r for r in rec.recommendations}
    lora = by["lora"].total_cost
    assert lora["tuning_usd"] == pytest.approx(by["lora"].estimate["cost_usd"] * 2000, rel=1e-3)
    assert lora["usd"] == pytest.approx(lora["tuning_usd"] + lora["usd_per_month"] * 12, abs=0.05)
    # Full tuning is planned as one multi-task model for 2,000 tenants (C6.22): one model hosted; the
    # hosting summary prices the per-tenant form, 2,000 whole models, beside it.
    assert by["full"].to_json()["estimate"]["serving"]["gpus"]["deployments"] == 1
    separate = rec.hosting["separate_models"]
    assert separate["serving"]["gpus"]["count"] >= 2000 // 4 and separate["serving"]["gpus"]["type"] == "h100-sxm"
    assert lora["usd"] < separate["total_cost"]["usd"] / 100 and "2,000 separately tuned" in rec.summary
    assert rec.best.method in ("lora", "qlora", "dora", "adapters", "prompt_tuning")
    assert len(lora["cumulative_usd"]) == 13 and lora["cumulative_usd"][-1] == pytest.approx(lora["usd"], abs=1)
    assert any(r["rule"] == "hosting-cost" and r["criterion"] == "C3.6" for r in by["lora"].reasons)


def test_reduce_inference_cost_ranks_distillation_by_total():
    a = Answers.from_dict({**BASE, "goals": ["reduce_inference_cost", "specialization"], "model": "llama-3.1-70b",
                           "gpu": "h100-sxm", "num_gpus": 8, "num_examples": 20_000, "avg_tokens_per_example": 500,
                           "domain_distance": "moderate", "priority": "cost", "requests_per_day": 500_000,
                           "tokens_in": 800, "tokens_out": 300})
    rec = recommend(a)
    best = rec.best
    assert best.method == "distillation" and best.model == "llama-3.1-8b" and rec.hosting["ranked_by_total"]
    lora = next(r for r in rec.recommendations if r.method == "lora")
    assert best.total_cost["usd_per_month"] < lora.total_cost["usd_per_month"] / 3
    assert "lora" in best.total_cost["payoff"]["versus"] and best.total_cost["payoff"]["within_horizon"]
    assert any(r["criterion"] == "C2.7" and r["rule"] == "hosting-cost" for r in best.reasons)
    j = rec.to_json()["recommendations"][0]
    assert {"usd", "tuning_usd", "hosting_usd", "months"} <= set(j["total_cost"])
    assert {"kv_bytes_per_token", "gpus", "decode_tokens_per_second", "usd_per_month"} <= set(j["estimate"]["serving"])


def test_app_prices_hosting_and_draws_the_chart(tmp_path, monkeypatch):
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path / "home"))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "advisor_app.py"), default_timeout=120).run()
    assert not at.exception
    at.radio(key="view").set_value("Charts").run()
    assert any("not priced" in c.value for c in at.caption)  # no traffic yet: says so, no chart
    at.number_input(key="num_tasks").set_value(200)
    at.number_input(key="requests_per_day").set_value(100_000.0).run()
    at.selectbox(key="serving_gpu").set_value("h100-sxm").run()
    assert not at.exception and not at.error
    table = next(d.value for d in at.dataframe if "serving GPUs" in d.value.columns)
    assert "LoRA" in set(table["method"]) and table["ms / output token"].notna().all()
    assert any("costs least in total" in c.value for c in at.caption)


def test_prompt_tuned_smaller_base_priced_beside_the_ranking():
    a = Answers.from_dict({**BASE, "goals": ["reduce_inference_cost"], "model": "llama-3.1-70b", "gpu": "h100-sxm",
                           "num_gpus": 8, "requests_per_day": 100_000})
    small = recommend(a).hosting["smaller_base"]
    assert (small["method"], small["model"], small["criterion"]) == ("prompt_tuning", "llama-3.1-8b", "C4.1")
    assert small["total_cost"]["usd"] == pytest.approx(small["total_cost"]["tuning_usd"]
                                                       + small["total_cost"]["hosting_usd"], abs=0.05)
