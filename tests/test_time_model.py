"""The step-time model's terms (estimators/steptime.py) against figures computed here by other means:
a Monte Carlo of padded batches, the bytes an AdamW step moves, the bytes FSDP sends over a link;
the time range; and the calibrated repeat on this CPU through two real trials."""
import dataclasses
import math
import random

import pytest

from estimators.catalog import gpu_by_id, model_by_id
from estimators.errors import InputError
from estimators.plan import Plan
from estimators.setup import TrainSetup
from estimators.stepwork import constants
from estimators.steptime import efficiency_for, optimizer_seconds, padding_ratio, step_time
from estimators.throughput import estimate_time, flops_per_token

P8B = 8_030_261_248  # Llama-3.1-8B parameters (tests/test_estimators.py)


def monte_carlo_padding(p50, p95, cap, batch, draws=20000, seed=0):
    """Padded over real tokens of random batches padded to their longest: log-normal lengths through
    p50 and p95, truncated at ``cap``; sampled, not integrated."""
    rng = random.Random(seed)
    mu, sigma = math.log(p50), math.log(p95 / p50) / 1.6448536
    real = padded = 0.0
    for _ in range(draws):
        xs = [min(cap, math.exp(rng.gauss(mu, sigma))) for _ in range(batch)]
        real += sum(xs)
        padded += batch * max(xs)
    return padded / real


@pytest.mark.parametrize("batch, lengths, seq_len", [(8, (100, 1000, None), 4096), (2, (250, 700, None), 512),
                                                     (32, (110, 285, 1304), 2048)])
def test_padding_ratio_matches_sampled_batches(batch, lengths, seq_len):
    setup = TrainSetup(method="lora", batch_size=batch, seq_len=seq_len, length_quantiles=lengths)
    cap = min(seq_len, lengths[2] or seq_len)
    assert padding_ratio(setup) == pytest.approx(monte_carlo_padding(lengths[0], lengths[1], cap, batch), rel=0.03)


def test_a_skewed_length_distribution_costs_more_than_its_mean_says():
    spec, gpu = model_by_id("llama-3.1-8b"), gpu_by_id("a100-80gb")
    mean_only = TrainSetup(method="lora", batch_size=8, seq_len=4096, examples=10_000, tokens_per_example=300)
    skewed = dataclasses.replace(mean_only, length_quantiles=(150, 1500, 4000))
    a, b = estimate_time(spec, mean_only, gpu), estimate_time(spec, skewed, gpu)
    assert a.tokens == b.tokens == 3_000_000 and a.steps == b.steps == 1250
    # Every micro-batch of 8 is padded to its longest: the GPUs process the padding too.
    ratio = monte_carlo_padding(150, 1500, 4000, 8)
    assert b.padded_tokens / a.padded_tokens == pytest.approx(ratio, rel=0.03)
    assert b.seconds > 2 * a.seconds
    # Packing lays examples end to end in full rows: no padding, and fewer (fuller) steps.
    packed = estimate_time(spec, dataclasses.replace(skewed, packing=True), gpu)
    assert packed.steps == pytest.approx(3_000_000 / 4096 / 8)
    assert packed.padded_tokens == pytest.approx(3_000_000, rel=1e-6) and packed.seconds < b.seconds
    # Data parallelism: each rank waits for the slowest, so 4 ranks pay the longest of 32 examples.
    four = dataclasses.replace(skewed, num_gpus=4)
    assert padding_ratio(four) == pytest.approx(monte_carlo_padding(150, 1500, 4000, 32), rel=0.03)


def test_the_optimizer_step_grows_with_trainable_parameters_not_tokens():
    spec, gpu = model_by_id("llama-3.1-8b"), gpu_by_id("a100-80gb")
    full = TrainSetup(method="full")
    # Pure bf16 AdamW, torch's foreach path, counted kernel by kernel: weight decay and addcdiv read and
    # write the weights (4 passes); lerp and addcmul read the gradient (2); lerp, mul and addcmul read and
    # write a moment, sqrt and addcdiv read one (8); sqrt writes a temporary, div and add read and write it,
    # addcdiv reads it (6); the gradient-norm clip reads the gradients, then reads and writes them (3).
    bf16_bytes = 2 * (4 + 2 + 8 + 6 + 3)
    assert bf16_bytes == 46
    assert optimizer_seconds(spec, full, gpu) == pytest.approx(P8B * bf16_bytes / 2039e9)
    per_token = (lambda length: flops_per_token(spec, full, None, length))
    short = step_time(spec, full, gpu, 256, per_token, 0.33)
    long = step_time(spec, dataclasses.replace(full, batch_size=16), gpu, 4096, per_token, 0.33)
    assert short.optimizer == long.optimizer and long.compute > 100 * short.compute
    # LoRA's adapters live in fp32 (PEFT): the same passes at 4 bytes, proportional to the rank.
    r8, r64 = TrainSetup(method="lora", lora_rank=8), TrainSetup(method="lora", lora_rank=64)
    trainable_r8 = 8 * sum((lin.in_features + lin.out_features) * lin.count for lin in spec.linears
                           if lin.role in ("attn", "mlp"))
    assert optimizer_seconds(spec, r8, gpu) == pytest.approx(trainable_r8 * 2 * bf16_bytes / 2039e9)
    assert optimizer_seconds(spec, r64, gpu) == pytest.approx(8 * optimizer_seconds(spec, r8, gpu))
    # ZeRO/FSDP: each GPU updates its shard only.
    sharded = TrainSetup(method="full", num_gpus=8, sharding="fsdp")
    assert optimizer_seconds(spec, sharded, gpu) == pytest.approx(P8B * bf16_bytes / 2039e9 / 8)


def test_a_sliding_window_past_its_length_pays_the_masked_attention_kernel():
    """transformers hands SDPA an explicit mask once a sliding-window layer sees its window's length, so
    the flash kernel is off and every tile of the score square is computed: one more attention's worth
    of FLOPs (masked_attention_factor 2) on those layers, in every pass that runs attention."""
    gpu = gpu_by_id("a100-80gb")

    def extra(model, length, **kw):
        spec = model_by_id(model)
        setup = TrainSetup(method="full", batch_size=2, seq_len=length, gradient_checkpointing=True, **kw)
        per_token = (lambda n: flops_per_token(spec, setup, None, n))
        return step_time(spec, setup, gpu, length, per_token, 0.7).terms.get("masked_attention", 0.0)

    # Phi-3-mini (window 2047, 32 layers of 32 heads x 96): score and value matmuls, 2 x 2 FLOPs per
    # query, key and feature; forward, two backward products and the checkpointed forward = 4 passes.
    tokens, heads_dim, layers = 2 * 8192, 32 * 96, 32
    flops = tokens * 4 * heads_dim * 8192 * layers * 4
    assert extra("phi-3-mini-4k", 8192) == pytest.approx(flops / (312e12 * 0.7))
    assert extra("phi-3-mini-4k", 2000) == 0.0  # shorter than the window: is_causal, flash
    assert extra("phi-3-mini-4k", 8192, attention="eager") == 0.0  # eager is charged by its own term
    assert extra("llama-3.1-8b", 8192) == 0.0  # no sliding window
    # Gemma 2: only its local layers (every other one, 21 of 42) slide, window 4096.
    g = model_by_id("gemma-2-9b")
    local = tokens * 4 * g.heads * g.head_dim * 8192 * 21 * 4 / (312e12 * 0.7)
    assert extra("gemma-2-9b", 8192) == pytest.approx(local)
    assert extra("gemma-2-9b", 4000) == 0.0


def test_fsdp_communication_over_the_link():
    spec = model_by_id("llama-3.1-8b")
    setup = TrainSetup(method="full", num_gpus=8, sharding="fsdp", batch_size=1, seq_len=512)
    per_token = (lambda length: flops_per_token(spec, setup, None, length))
    # Per micro-batch each GPU sends 7/8 of: the bf16 weights gathered for forward and again for
    # backward (2 × 2 bytes) and the bf16 gradients reduce-scattered (2 bytes).
    sent = 7 / 8 * P8B * (2 * 2 + 2)
    pcie = step_time(spec, setup, gpu_by_id("l40s"), 512, per_token, 0.35)
    assert pcie.communication == pytest.approx(sent / 32e9 - pcie.micro_batch, rel=1e-6)  # PCIe 4.0: exposed
    nvlink = step_time(spec, setup, gpu_by_id("h100-sxm"), 512, per_token, 0.4)
    assert sent / 450e9 < pcie.communication and nvlink.total < pcie.total
    ddp_lora = step_time(spec, TrainSetup(method="lora", num_gpus=8), gpu_by_id("l40s"), 512,
                         lambda length: flops_per_token(spec, TrainSetup(method="lora"), None, length), 0.35)
    # adapter gradients hide under the backward but for DDP's last 25 MB bucket
    assert ddp_lora.communication == pytest.approx(2 * 7 / 8 * 25 * 2**20 / 32e9, rel=1e-6)


@pytest.mark.parametrize("gpu_id, method", [("a100-80gb", "lora"), ("a10g", "qlora"), ("l4", "full")])
def test_calibration_inverts_the_step_model(gpu_id, method):
    spec, gpu = model_by_id("llama-3.2-1b"), gpu_by_id(gpu_id)
    setup = TrainSetup(method=method, batch_size=4, seq_len=512)
    per_token = (lambda length: flops_per_token(spec, setup, None, length))
    measured = step_time(spec, setup, gpu, 512, per_token, 0.21).total
    assert efficiency_for(spec, setup, gpu, 512, per_token, measured) == pytest.approx(0.21, rel=1e-6)
    # A step faster than launches and the optimizer alone cannot be explained by any efficiency.
    floor = step_time(spec, setup, gpu, 512, per_token, 1e9).total
    assert efficiency_for(spec, setup, gpu, 512, per_token, floor * 0.5) is None


def test_time_range_and_its_narrowing_after_calibration():
    spec, gpu = model_by_id("llama-3.1-8b"), gpu_by_id("a100-80gb")
    setup = TrainSetup(method="lora", batch_size=4, examples=2000, tokens_per_example=300)
    t = estimate_time(spec, setup, gpu)
    assert t.seconds_low < t.seconds < t.seconds_high and "published runs" in t.range_basis
    assert t.cost_usd_low == pytest.approx(t.seconds_low / 3600 * 1.79)
    assert t.cost_usd_high == pytest.approx(t.seconds_high / 3600 * 1.79)
    c = estimate_time(spec, setup, gpu, efficiency=0.3)
    assert c.seconds_high / c.seconds_low < t.seconds_high / t.seconds_low and "calibrated" in c.range_basis
    # A GPU with a default (unfitted) efficiency gets a wider range than the fitted A100's, and says why.
    d = estimate_time(spec, setup, gpu_by_id("h100-sxm"))
    assert d.seconds_high / d.seconds_low > t.seconds_high / t.seconds_low and "default" in d.range_basis
    block = t.contract()
    assert {"tokens", "flops", "seconds", "seconds_low", "seconds_high", "step_seconds"} <= set(block)


def test_plan_token_lengths_reach_the_setup_and_bad_ones_are_refused():
    plan = Plan.create("llama-3.1-8b", "lora", {"batch_size": 4},
                       data={"num_examples": 100, "tokens_per_example": 300,
                             "token_lengths": {"mean": 300, "p50": 250, "p95": 900, "max": 2000}})
    assert plan.setup().length_quantiles == (250, 900, 2000)
    assert Plan.create("llama-3.1-8b", "lora", {"packing": True}).setup().packing is True
    with pytest.raises(InputError, match="length_quantiles"):
        TrainSetup(method="lora", length_quantiles=(900, 250, None))
    with pytest.raises(InputError, match="token_lengths.p50 900 exceeds p95 250"):
        Plan.create("llama-3.1-8b", "lora", data={"token_lengths": {"p50": 900, "p95": 250}})


# --- the calibrated repeat on this CPU: two tiny real trials --------------------------------------

@pytest.mark.slow
def test_on_a_cpu_dispatch_adds_to_compute_and_calibration_inverts_it():
    """A CPU runs the host's per-block and per-module work and the kernels on the same threads: the
    step is their sum (no overlap as on a GPU), inserted modules cost dispatch and per-token traffic,
    and the efficiency a trial calibrates reproduces its step exactly."""
    from estimators.catalog import GPU
    from estimators.steptime import trainable_tensors

    spec = model_by_id("llama-3.1-8b")
    cpu = GPU(id="cpu", name="CPU", memory_bytes=64 * 2**30, tflops={"fp32": 0.2, "bf16": 0.01, "fp16": 0.01},
              bandwidth_gbs=40.0, efficiency=0.65)
    lora = TrainSetup(method="lora", batch_size=2, seq_len=64, precision="fp32", device="cpu")
    full = dataclasses.replace(lora, method="full")
    per_token = (lambda length: flops_per_token(spec, lora, None, length))
    a = step_time(spec, lora, cpu, 64, per_token, 0.65)
    b = step_time(spec, full, cpu, 64, (lambda length: flops_per_token(spec, full, None, length)), 0.65)
    assert a.busy == pytest.approx(a.compute + a.module_traffic + a.terms["elementwise"] + a.terms["logits"] + a.launch)
    assert a.launch > b.launch > 0
    assert a.module_traffic > 0 == b.module_traffic
    # Full tuning visits every linear (7 per block), two norms per block, the final norm, embeddings, head.
    assert trainable_tensors(spec, full) == 32 * 9 + 3 and trainable_tensors(spec, lora) == 2 * 32 * 7
    assert efficiency_for(spec, lora, cpu, 64, per_token, a.total) == pytest.approx(0.65)
    # A CUDA device overlaps the host's launches with its work (smooth maximum, not a sum).
    gpu = step_time(spec, dataclasses.replace(lora, device="cuda"), gpu_by_id("a100-80gb"), 64, per_token, 0.4)
    work = sum(v for k, v in gpu.terms.items() if k not in gpu.added)
    assert max(work, gpu.launch) < gpu.busy < work + gpu.launch


@pytest.mark.slow  # two real trials (the fast tier has none)
def test_a_calibrated_trial_predicts_the_next_one_on_this_cpu(tmp_path, monkeypatch):
    """Calibrate on one trial, predict a second with another batch and length (same method family: a
    calibration carries only within one, issue 21). The issue's goal
    is 10 % (bench/time_accuracy.py --repeat reports it); a noisy shared 2-core machine gets 30 %."""
    pytest.importorskip("transformers")
    from bench.time_accuracy import REPEAT_PAIRS, tiny_model, timed_trial
    from tuners import store

    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path / "home"))
    # The benchmark's model and its pair that changes batch and length (full 4x64 -> full 2x128): steps of
    # tens of milliseconds, long enough that one scheduler hiccup does not decide the comparison.
    model, data = tiny_model(tmp_path)
    calibrating, predicted_settings = REPEAT_PAIRS[2]
    first = timed_trial(model, data, calibrating, steps=12)
    assert store.calibration_for("cpu", "full", "fp32").run_id == first["run_id"]
    second = timed_trial(model, data, predicted_settings, steps=12)
    assert first["run_id"] in second["estimate"]["calibrated"]
    busy = max(first["scatter"], second["scatter"])
    if busy > 2.0:  # the steps are alike: scattered times mean other work on this machine was timed
        pytest.skip(f"this machine is too busy to time steps (interquartile ratio {busy:.2f})")
    # The first trial once more: if this machine's speed moved between the trials (other work started or
    # stopped), the calibration no longer describes it and the comparison says nothing about the model.
    again = timed_trial(model, data, calibrating, steps=12)
    drift = again["measured"]["tokens_per_second"] / first["measured"]["tokens_per_second"]
    if not 0.8 <= drift <= 1.25:
        pytest.skip(f"this machine's speed moved by {drift - 1:+.0%} between the trials")
    predicted = second["estimate"]["throughput"]["tokens_per_second"]
    assert second["measured"]["tokens_per_second"] == pytest.approx(predicted, rel=0.30)


def test_packing_lays_examples_end_to_end_without_cross_example_targets():
    from tuners.runtime import pack

    encoded = [{"input_ids": list(range(10, 15)), "labels": [-100, -100, 12, 13, 14]},
               {"input_ids": list(range(20, 27)), "labels": list(range(20, 27))},
               {"input_ids": [30, 31, 32, 33], "labels": [30, 31, 32, 33]}]
    rows = pack(encoded, 4)
    assert [r["input_ids"] for r in rows] == [[10, 11, 12, 13], [14, 20, 21, 22], [23, 24, 25, 26], [30, 31, 32, 33]]
    # Each example's first token (positions 0, 5 and 12 of the stream) is no target.
    assert [r["labels"] for r in rows] == [[-100, -100, 12, 13], [14, -100, 21, 22], [23, 24, 25, 26],
                                           [-100, 31, 32, 33]]
    assert pack(encoded, 64) == [{"input_ids": sum((e["input_ids"] for e in encoded), []),
                                  "labels": [-100, -100, 12, 13, 14, -100, 21, 22, 23, 24, 25, 26, -100, 31, 32, 33]}]


# --- speed settings (issue 21) ------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["full", "lora", "prompt_tuning"])
def test_the_fused_chunked_loss_equals_the_models_own_loss_and_gradients(method):
    """runtime.fused_causal_lm_loss never builds the (tokens × vocab) logits, yet gives transformers'
    loss and the same gradients (a tiny random Llama; chunks of 7 tokens so several chunks run)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tuners import runtime

    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      intermediate_size=64, vocab_size=97, max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(config)
    if method != "full":
        import peft

        cfg = (peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]) if method == "lora" else
               peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
        model = peft.get_peft_model(model, cfg)
    ids = torch.randint(0, 97, (2, 12))
    labels = ids.clone()
    labels[0, :4] = -100  # a prompt without loss
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    trainable = [p for p in model.parameters() if p.requires_grad]
    reference = model(**batch).loss
    ref_grads = torch.autograd.grad(reference, trainable)
    original = runtime.chunked_cross_entropy.__defaults__
    runtime.chunked_cross_entropy.__defaults__ = (7,)
    try:
        fused = runtime.fused_causal_lm_loss(model, batch)
    finally:
        runtime.chunked_cross_entropy.__defaults__ = original
    grads = torch.autograd.grad(fused, trainable)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert isinstance(model.get_output_embeddings(), torch.nn.Linear)  # the head is back in place


def test_speed_settings_move_time_and_memory_the_way_they_should():
    """Fused cross-entropy removes the fp32 logits from memory and their passes from time; packing
    removes padding; compile fuses elementwise passes; optimizer in backward frees the gradients;
    activation offloading keeps about two blocks' activations on the GPU."""
    from estimators.estimate import estimate

    spec, gpu = model_by_id("llama-3.1-8b"), gpu_by_id("a100-80gb")
    base = TrainSetup(method="full", batch_size=4, seq_len=2048, examples=1000, tokens_per_example=600,
                      length_quantiles=(400, 1500, 2048))
    plain = estimate(spec, base, gpu)
    fused = estimate(spec, dataclasses.replace(base, fused_cross_entropy=True), gpu)
    # The logits buffers: 4 × 2048 tokens × 128,256 vocab × (2 + 4 + 4) bytes at the end of forward.
    assert plain.memory.peak_allocated - fused.memory.peak_allocated > 4 * 2048 * 128256 * 4
    assert fused.time.seconds < plain.time.seconds
    assert estimate(spec, dataclasses.replace(base, packing=True), gpu).time.seconds < plain.time.seconds
    assert estimate(spec, dataclasses.replace(base, compile=True), gpu).time.seconds < plain.time.seconds
    # At a short shape full tuning peaks in optimizer.step(): 2 B of gradients and 2 B of foreach temporary per
    # parameter, which updating in backward never holds at once.
    short = dataclasses.replace(base, batch_size=1, seq_len=256)
    oib = estimate(spec, dataclasses.replace(short, optimizer_in_backward=True), gpu)
    assert oib.memory.peak_allocated < estimate(spec, short, gpu).memory.peak_allocated - 3 * P8B
    off = estimate(spec, dataclasses.replace(base, activation_offloading=True, method="lora"), gpu)
    on = estimate(spec, dataclasses.replace(base, method="lora"), gpu)
    assert off.memory.peak_allocated < on.memory.peak_allocated and off.time.seconds >= on.time.seconds
    with pytest.raises(InputError, match="optimizer_in_backward"):
        TrainSetup(method="full", optimizer_in_backward=True, grad_accum=4)


def test_estimate_takes_the_speed_settings_and_a_data_file(tmp_path, capsys):
    """`estimate --packing --compile --fused-cross-entropy --data FILE`: the settings land in the plan and the
    data facts come from the file as the app's upload reads them (usable rows, mean and percentile lengths)."""
    import json

    from advisor.cli import main
    from tuners.datareport import report

    rows = [{"input": f"question {i} " * (1 + i % 5), "output": "answer " * (3 + i % 11)} for i in range(40)]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--gpu", "a100-80gb", "--packing",
                 "--compile", "--fused-cross-entropy", "--data", str(data), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    s, facts = out["plan"]["settings"], out["plan"]["data"]
    assert s["packing"] and s["compile"] and s["fused_cross_entropy"] and not s["optimizer_in_backward"]
    rep = report(data, 512)  # the app's path (ui/questionnaire.py): the same report at 512 tokens
    assert facts["num_examples"] == rep["usable_rows"] == 40
    assert facts["tokens_per_example"] == round(rep["mean_tokens"]) and facts["token_lengths"] == rep["token_lengths"]
    assert out["time"]["tokens"] == 40 * facts["tokens_per_example"]
    assert main(["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--data", str(data),
                 "--examples", "5"]) == 2  # one source of the data facts, said in one line
    assert "drop --examples" in capsys.readouterr().err


def test_the_trial_says_which_speed_settings_and_dtype_it_changes():
    from tuners.trial import adapt

    plan = Plan.create("llama-3.1-8b", "lora", {"compile": True, "fused_cross_entropy": True, "precision": "bf16"})
    ran, notes = adapt(plan, "cpu", scale_down=True)
    assert ran.settings["compile"] is False and ran.settings["fused_cross_entropy"] is True
    assert ran.settings["precision"] == "fp32" and any("fp32 on this CPU" in n for n in notes)
    assert any(n.startswith("compile off") for n in notes)
    qlora, notes = adapt(Plan.create("llama-3.1-8b", "qlora", {"precision": "bf16"}), "cpu", scale_down=True)
    assert qlora.settings["precision"] == "bf16"  # 4-bit bases compute in 16 bits: no fp32 run
    gpu, notes = adapt(plan, "cuda", scale_down=False)
    assert gpu.settings["precision"] == "bf16" and not any("fp32" in n for n in notes)


def test_lora_dropout_adds_its_counted_passes_and_kernels():
    """PEFT's lora_dropout drops out each adapted layer's own fp32 copy of its input: forward reads 4,
    writes 4 and a 1-byte mask, backward reads the gradient 4 and the mask 1 and writes 4 (18 B per
    input feature), recomputed under checkpointing; two kernels per adapted layer."""
    spec, gpu = model_by_id("llama-3.1-8b"), gpu_by_id("a100-80gb")
    per_token = (lambda length: flops_per_token(spec, TrainSetup(method="lora"), None, length))
    base = TrainSetup(method="lora", lora_rank=8, batch_size=2, seq_len=8192, gradient_checkpointing=True)
    tokens = 2 * 8192
    inputs_per_layer = 6 * 4096 + 14336  # q, k, v, o, gate, up read the 4,096-wide stream; down the MLP's 14,336
    modules = 7 * 32
    plain = step_time(spec, base, gpu, 8192, per_token, 0.5)
    for adapters_16bit, per_input in ((False, 18), (True, 10)):
        off = step_time(spec, dataclasses.replace(base, adapters_16bit=adapters_16bit), gpu, 8192, per_token, 0.5)
        on = step_time(spec, dataclasses.replace(base, adapters_16bit=adapters_16bit, lora_dropout=0.05), gpu, 8192,
                       per_token, 0.5)
        added = tokens * 32 * inputs_per_layer * per_input * 4 / 3 / 2039e9
        assert on.module_traffic - off.module_traffic == pytest.approx(added)
        launch = constants()["launch_seconds_per_kernel"]  # the fitted host cost of one kernel
        assert on.launch - off.launch == pytest.approx(modules * 2 * 4 / 3 * launch)
        assert on.total > off.total
    assert added > 0.1 and plain.module_traffic > 0  # a third of a second per 16k tokens: not a rounding error
    for bad in (1.0, -0.1, "0.1", True):
        with pytest.raises(InputError, match="lora_dropout"):
            TrainSetup(method="lora", lora_dropout=bad)
    for method in ("full", "dora", "prompt_tuning"):  # nothing to drop out; DoRA would run its base twice
        with pytest.raises(InputError, match="lora_dropout applies to lora, qlora"):
            TrainSetup(method=method, lora_dropout=0.1)
