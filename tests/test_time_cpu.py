"""The CPU device's step model (issue 21 item 5): the terms a CPU trial's step is made of, each checked
against its counted bytes or FLOPs computed here from the model's dimensions, and the thread count a
CPU trial picks from the machine's load. No wall-clock: the physics, not the timing."""
from __future__ import annotations

import pytest

from estimators.catalog import GPU, model_by_id
from estimators.setup import TrainSetup
from estimators.steptime import constants, step_time
from estimators.throughput import flops_per_token
from tuners.hardware import trial_threads

CPU = GPU(id="cpu", name="CPU", memory_bytes=64 * 2**30, tflops={"fp32": 0.15, "bf16": 1.2, "fp16": 1.2},
          bandwidth_gbs=10.0, efficiency=0.65)


def _step(spec, setup, length):
    return step_time(spec, setup, CPU, length, lambda n: flops_per_token(spec, setup, None, n), 0.65)


@pytest.mark.parametrize("model", ["llama-3.1-8b", "qwen2.5-7b"])
def test_cpu_step_streams_the_blocks_elementwise_bytes_and_the_logits(model):
    spec = model_by_id(model)
    setup = TrainSetup(method="lora", batch_size=4, seq_len=384, precision="fp32", device="cpu")
    st = _step(spec, setup, 384)
    c, tokens, bw = constants(), 4 * 384, 10e9
    per_token = c["elementwise_bytes_per_feature"] * (spec.hidden + spec.intermediate) * spec.layers * 4 / 2
    assert st.terms["elementwise"] == pytest.approx(tokens * per_token / bw)
    assert st.terms["logits"] == pytest.approx(tokens * spec.vocab * c["logits_bytes_per_logit"] / bw)
    # On a CPU the same threads run everything: the terms add up (no overlap with the dispatch).
    assert st.busy == pytest.approx(sum(st.terms[k] for k in st.terms if k not in st.added) + st.launch)


def test_fused_cross_entropy_shrinks_the_cpu_logits_term():
    spec = model_by_id("llama-3.1-8b")
    setup = TrainSetup(method="lora", batch_size=2, seq_len=256, precision="fp32", device="cpu")
    fused = TrainSetup(method="lora", batch_size=2, seq_len=256, precision="fp32", device="cpu", fused_cross_entropy=True)
    c = constants()
    ratio = _step(spec, fused, 256).terms["logits"] / _step(spec, setup, 256).terms["logits"]
    assert ratio == pytest.approx(c["fused_ce_bytes_per_logit"] / c["logits_bytes_per_logit"])


def test_qlora_on_a_cpu_runs_only_its_4bit_gemms_at_the_16bit_rate():
    """peft's prepare_model_for_kbit_training upcasts embeddings, norms and head to fp32: the base
    GEMMs (forward + input gradient) run at the bf16 rate, every other FLOP at the fp32 rate, and the
    activations stream in fp32 (twice a bf16 LoRA's elementwise bytes)."""
    spec = model_by_id("llama-3.1-8b")
    q = TrainSetup(method="qlora", batch_size=4, seq_len=384, precision="bf16", device="cpu")
    lo = TrainSetup(method="lora", batch_size=4, seq_len=384, precision="bf16", device="cpu")
    tokens = 4 * 384
    base = sum(2 * tokens * lin.in_features * lin.out_features * lin.count * 2 for lin in spec.linears)
    total = tokens * flops_per_token(spec, q, None, 384)
    eff = 0.65 * q.m.efficiency
    expected = base / (1.2e12 * eff) + (total - base) / (0.15e12 * eff)
    st = _step(spec, q, 384)
    assert st.compute == pytest.approx(expected)
    assert st.terms["elementwise"] == pytest.approx(2 * _step(spec, lo, 384).terms["elementwise"])


@pytest.mark.parametrize("cores,load,threads", [(2, 3.8, 1), (2, 0.2, 2), (2, 1.9, 1), (8, 3.0, 6), (8, 20.0, 1),
                                                (4, 1.0, 4)])
def test_cpu_trial_threads_are_the_cores_the_others_leave_idle(cores, load, threads, monkeypatch):
    monkeypatch.delenv("TUNING_ADVISOR_CPU_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    got, why = trial_threads(cores, load)
    assert got == threads
    assert (why is None) == (threads == cores)
    if why:
        assert f"{threads} of {cores}" in why and f"{load:.1f}" in why


def test_cpu_trial_threads_can_be_stated(monkeypatch):
    monkeypatch.setenv("TUNING_ADVISOR_CPU_THREADS", "2")
    assert trial_threads(8, 30.0) == (2, None)
    monkeypatch.setenv("TUNING_ADVISOR_CPU_THREADS", "64")
    assert trial_threads(8, 0.0) == (8, None)


def test_a_cpu_calibration_scales_the_byte_terms_with_the_flop_rate():
    """A trial calibrates one share of this CPU's measured rates: twice the default efficiency halves the
    compute and the elementwise and logits terms alike (the dispatch terms are host seconds: unchanged)."""
    spec = model_by_id("llama-3.1-8b")
    setup = TrainSetup(method="full", batch_size=2, seq_len=128, precision="fp32", device="cpu")
    per_token = lambda n: flops_per_token(spec, setup, None, n)  # noqa: E731
    a, b = step_time(spec, setup, CPU, 128, per_token, 0.65), step_time(spec, setup, CPU, 128, per_token, 1.3)
    for name in ("compute", "elementwise", "logits"):
        assert b.terms[name] == pytest.approx(a.terms[name] / 2)
    assert b.launch == pytest.approx(a.launch)
