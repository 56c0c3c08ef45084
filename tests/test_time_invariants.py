"""Relations the step-time model must keep on every catalog model × every catalog GPU × a grid of shapes
(issue 21). Each is physics, not a fitted figure: a frozen base skips every weight gradient, a bigger
micro-batch amortises the same weight reads and launches, a quantized base adds dequantization to
LoRA's work, virtual tokens are tokens. A failure names the model, the GPU and the shape.

"Frozen-base methods are never slower than full tuning at equal shape" holds where the weight gradients
a frozen base skips outweigh what its method adds. What it adds is real and counted
(estimators/steptime.py): PEFT's LoRA layer issues ~18 kernels and, with its default fp32 adapters on a
16-bit model, casts, scales and adds in fp32 around every adapted linear. So the property is asserted
where launches hide under the GPU's work (the method's launches at most half of full tuning's GPU time)
on models at least 3,072 wide (MIN_HIDDEN), for bottleneck adapters and for LoRA/QLoRA with 16-bit adapters
(litgpt's and torchtune's layout). Outside that — launch-bound micro-batches, small models, PEFT's fp32
adapters on GPUs with a weak fp32 peak — LoRA can be slower than full tuning, as PEFT's maintainers and
users report (huggingface/peft#925 and #664: "PEFT methods are not really meant to accelerate training
for small models"; jingyaogong/minimind#88: all-linear LoRA 260 min vs full 150 min on a 512-wide model);
``test_peft_lora_can_lose_to_full_where_its_overhead_dominates`` keeps that side honest.

``run_properties`` reads the step-time model it is given by import, so the same checks can be run
against another version of the model (the note of issue 21 runs them against main 544f971:
bench/results/time-invariants-before-544f971.txt).
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import pytest

from estimators.catalog import gpu_by_id, gpus, model_by_id, model_configs
from estimators.errors import InputError
from estimators.setup import TrainSetup
from estimators.steptime import step_time
from estimators.throughput import estimate_time, flops_per_token

BATCHES = (1, 4, 16)
LENGTHS = (128, 2048)
CHECKPOINTING = (False, True)
FROZEN = ("lora", "qlora", "prompt_tuning", "adapters", "dora")
MIN_HIDDEN = 3072
"""A LoRA layer's passes grow with its linear's in + out features (bytes over bandwidth), the weight gradient
it saves with their product (FLOPs over the math rate): it saves time once the width exceeds about the
GPU's FLOP-per-byte ratio times the passes' bytes per feature over two — ~1,000-2,500 on an L40S or an
H100 PCIe. Below ~3k the two are within a few per cent there (2,048-wide 1-3B models at 2,048 tokens with
checkpointing), so the property is asserted from 3,072 on."""
FROZEN_TOLERANCE = 0.05
"""Frozen-base steps may exceed full tuning's by this share at the same shape: PEFT's unfused passes are
memory-bound and the weight-gradient GEMM they save is compute-bound, so on a GPU with a high measured
FLOP-per-byte ratio (L40S: ~270 TFLOP/s bf16 GEMMs on 864 GB/s, gpus.json gemm_bf16_tflops) the two come
within a few per cent at 16 x 2,048 tokens for 3-4k-wide models (the model gives up to +3.5 %). Published
runs go further: universal-llm-trainer's PEFT LoRA on q,k,v is 1.4x slower than its full tuning at the same
shape on an A100 and an H100 (bench/data/throughput-records.json)."""
NEVER_SLOWER = ("lora", "adapters")
"""DoRA recomputes each adapted weight's norm per forward and prompt tuning adds tokens; QLoRA trades time
for memory: at tiny micro-batches its dequantization (every base weight expanded to 16 bits in each
forward and backward) outweighs full tuning's per-weight optimizer traffic. Each may cost more than full
tuning by design; they are checked by their own properties (QLoRA >= LoRA, virtual tokens cost)."""
MOE_FACTOR = 4.0
"""LoRA on a MoE model may cost up to this many times full tuning at the same shape: PEFT folds every
expert bank into a full weight per forward (an fp32 einsum over all experts) and trains through it, the
experts' weight gradients included (estimators/steptime.py); full tuning pays the optimizer over every
expert instead. Worked number, DeepSeek-V3 on a B200 at 1 x 128: the fold moves ~656 G expert weights x
30 bytes (2.5 s) and does 6 x 656 G x rank FLOPs in fp32 (~3 s), while full tuning's AdamW moves 671 G
parameters x 18 bytes (1.5 s)."""


@lru_cache(maxsize=None)
def _models():
    return tuple(model_by_id(m) for m in model_configs())


@lru_cache(maxsize=None)
def _gpus():
    return tuple(gpus().values())


def _setup(spec, method, batch, length, ckpt, **extra):
    try:
        return TrainSetup(method=method, batch_size=batch, seq_len=length, gradient_checkpointing=ckpt, **extra)
    except InputError:
        return None


def _step(spec, gpu, setup):
    fpt = (lambda length: flops_per_token(spec, setup, None, length))
    return step_time(spec, setup, gpu, setup.tokens_per_sequence, fpt, gpu.efficiency)


def _seconds(spec, gpu, setup):
    return _step(spec, gpu, setup).total


def _applies(spec, method):
    from estimators.methods import get

    return spec.kind == "decoder" or get(method).encoders


def run_properties() -> dict[str, list[str]]:
    """Every property over the whole grid: ``name -> failures`` (each naming model, GPU and shape)."""
    fails: dict[str, list[str]] = {k: [] for k in ("frozen_not_slower", "tps_rises_with_batch", "moe_lora_near_full",
                                                   "qlora_not_faster", "linear_in_tokens", "virtual_tokens_cost",
                                                   "dropout_costs")}
    for spec in _models():
        for gpu in _gpus():
            for length in LENGTHS:
                for ckpt in CHECKPOINTING:
                    previous = {}
                    for batch in BATCHES:
                        where = f"{spec.id} on {gpu.id}, batch {batch} x {length}{', checkpointing' if ckpt else ''}"
                        full = _setup(spec, "full", batch, length, ckpt)
                        full_step = _step(spec, gpu, full)
                        t_full = full_step.total
                        times = {"full": t_full}
                        for method in FROZEN:
                            if not _applies(spec, method):
                                continue
                            setup = _setup(spec, method, batch, length, ckpt)
                            if setup is None:
                                continue
                            times[method] = _seconds(spec, gpu, setup)
                            if method not in NEVER_SLOWER or spec.is_moe or spec.hidden < MIN_HIDDEN:
                                continue
                            sixteen = (dataclasses.replace(setup, adapters_16bit=True)
                                       if "adapters_16bit" in TrainSetup.__dataclass_fields__ else setup)
                            step = _step(spec, gpu, sixteen)
                            if step.launch <= 0.5 * full_step.busy and step.total > t_full * (1 + FROZEN_TOLERANCE):
                                fails["frozen_not_slower"].append(
                                    f"{method} {step.total:.4g} s > full {t_full:.4g} s: {where}")
                        for method in ("lora", "qlora"):  # a dropout pass and its mask are never free
                            if method in times and "lora_dropout" in TrainSetup.__dataclass_fields__:
                                dropped = _setup(spec, method, batch, length, ckpt, lora_dropout=0.1)
                                if dropped is not None and not _seconds(spec, gpu, dropped) > times[method]:
                                    fails["dropout_costs"].append(
                                        f"{method} with lora_dropout 0.1 no slower than without: {where}")
                        if spec.is_moe and "lora" in times and times["lora"] > MOE_FACTOR * t_full:
                            fails["moe_lora_near_full"].append(
                                f"lora {times['lora']:.4g} s > {MOE_FACTOR}x full {t_full:.4g} s: {where}")
                        if "qlora" in times and times["qlora"] < times["lora"] * (1 - 1e-9):
                            fails["qlora_not_faster"].append(
                                f"qlora {times['qlora']:.4g} s < lora {times['lora']:.4g} s: {where}")
                        for method, t in times.items():
                            tps = batch * length / t
                            if method in previous and tps < previous[method] * (1 - 1e-9):
                                fails["tps_rises_with_batch"].append(
                                    f"{method} {tps:.4g} tok/s < {previous[method]:.4g} at half the batch: {where}")
                            previous[method] = tps
                    if _applies(spec, "prompt_tuning"):
                        short = _setup(spec, "prompt_tuning", 4, length, ckpt, num_virtual_tokens=20)
                        long = _setup(spec, "prompt_tuning", 4, length, ckpt, num_virtual_tokens=200)
                        a, b = _seconds(spec, gpu, short), _seconds(spec, gpu, long)
                        if not b > a:
                            fails["virtual_tokens_cost"].append(
                                f"200 virtual tokens {b:.4g} s <= 20 virtual tokens {a:.4g} s: {spec.id} on {gpu.id}, "
                                f"batch 4 x {length}{', checkpointing' if ckpt else ''}")
        gpu = gpu_by_id("a100-80gb")
        for method in ("full", "lora", "prompt_tuning"):
            if not _applies(spec, method):
                continue
            one = TrainSetup(method=method, batch_size=4, seq_len=512, examples=1000, tokens_per_example=300,
                             length_quantiles=(250, 700, None))
            for change in ({"examples": 3000}, {"epochs": 3}):
                a, b = estimate_time(spec, one, gpu), estimate_time(spec, dataclasses.replace(one, **change), gpu)
                if abs(b.seconds / a.seconds - 3) > 1e-6 or abs(b.tokens / a.tokens - 3) > 1e-6:
                    fails["linear_in_tokens"].append(f"{method} x3 {change}: time x{b.seconds / a.seconds:.4f}, "
                                                     f"tokens x{b.tokens / a.tokens:.4f}: {spec.id} on {gpu.id}")
    return fails


@lru_cache(maxsize=1)
def _results():
    return run_properties()


@pytest.mark.parametrize("name", ["frozen_not_slower", "tps_rises_with_batch", "moe_lora_near_full",
                                  "qlora_not_faster", "linear_in_tokens", "virtual_tokens_cost", "dropout_costs"])
def test_property_holds_on_the_whole_catalog_grid(name):
    fails = _results()[name]
    assert not fails, f"{len(fails)} failures, e.g.:\n" + "\n".join(fails[:8])


def test_the_grid_covers_the_catalog_and_moe_models():
    models, gpus = _models(), _gpus()
    assert len(models) >= 40 and len(gpus) >= 12
    assert any(m.is_moe and m.lora_experts for m in models)  # PEFT adapts the expert banks of some families


def test_every_constant_lies_inside_its_physical_range():
    from estimators.steptime import constants, ranges

    c, bounds = constants(), ranges()
    fitted = [k for k in bounds if k in c]
    assert {"launch_seconds_per_kernel", "step_overhead_seconds", "dequant_bytes_per_weight",
            "elementwise_bytes_per_feature", "compile_fusion"} <= set(fitted)
    outside = [f"{k} = {c[k]} not in {bounds[k]}" for k in fitted if not bounds[k][0] <= c[k] <= bounds[k][1]]
    assert not outside, "; ".join(outside)
    # A LoRA layer's launches are a handful of kernels of microseconds each, not a millisecond.
    assert c["kernels_per_lora_module"] * c["launch_seconds_per_kernel"] < 1e-3


def test_the_fit_cannot_leave_the_ranges():
    """bench/time_accuracy.py maps every real number into the constant's range (its optimiser moves freely)."""
    from bench.time_accuracy import _bounded, _unbounded

    for low, high in ((3e-6, 2.5e-5), (0.2, 0.8), (0.0, 10.0)):
        for x in (-1e3, -5.0, 0.0, 5.0, 1e3):
            assert low <= _bounded(x, low, high) <= high
        mid = (low + high) / 2
        assert _bounded(_unbounded(mid, low, high), low, high) == pytest.approx(mid, rel=1e-6)


def test_moe_lora_counts_expert_banks_not_experts():
    """Qwen3-30B-A3B LoRA b1 x 512 on an A100: PEFT wraps each layer's expert bank once, so launches stay
    milliseconds (the old model counted 6,144 expert modules at 1.3 ms each: 21.7 s per step)."""
    from estimators.steptime import inserted_modules

    spec, gpu = model_by_id("qwen3-30b-a3b"), gpu_by_id("a100-80gb")
    setup = TrainSetup(method="lora", batch_size=1, seq_len=512)
    dense, banks = inserted_modules(spec, setup)
    assert banks == 2 * spec.layers  # gate_up_proj and down_proj per layer
    fpt = (lambda length: flops_per_token(spec, setup, None, length))
    step = step_time(spec, setup, gpu, 512, fpt, gpu.efficiency)
    assert step.launch < 0.5 and step.total < 5.0


def test_peft_lora_can_lose_to_full_where_its_overhead_dominates():
    """The other side of the first property, as the reports cited above measured it: PEFT's all-linear LoRA
    on a sub-1B model at a large micro-batch (its fp32 passes outweigh the skipped weight gradients), and
    at one short sequence (its extra kernels outweigh everything), costs more than full tuning; on an 8B
    model LoRA is faster (the issue's b1 x 512 checkpointed A100 case: LoRA 1,195 vs full 1,563 tok/s
    before; a frozen base must win there)."""
    small, gpu = model_by_id("qwen2.5-0.5b"), gpu_by_id("a100-80gb")
    for batch, length in ((16, 2048), (1, 128)):
        lora, full = (_setup(small, m, batch, length, False) for m in ("lora", "full"))
        assert _seconds(small, gpu, lora) > _seconds(small, gpu, full)
    big = model_by_id("llama-3.1-8b")
    lora, full = (_setup(big, m, 1, 512, True) for m in ("lora", "full"))
    assert _seconds(big, gpu, lora) < _seconds(big, gpu, full)
