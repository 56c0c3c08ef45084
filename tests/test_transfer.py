"""Offload and communication time (estimators/transfer.py) and the host-RAM check, against hand-computed
figures."""
import pytest

from estimators.catalog import gpu_by_id, model_by_id
from estimators.estimate import estimate
from estimators.methods import trainable_params
from estimators.plan import Plan
from estimators.setup import TrainSetup
from estimators.transfer import (CPU_ADAM_BYTES_PER_PARAM, CPU_STREAM_EFFICIENCY, HOST_COPY_EFFICIENCY,
                                 TORCH_CPU_ADAM_SLOWDOWN, host_for, transfer_time)

GIB = 2**30


def test_fsdp_offload_copies_the_shard_in_twice_per_micro_batch_and_runs_torch_adam_on_the_host():
    spec, gpu = model_by_id("llama-3.1-8b"), gpu_by_id("rtx-4090")
    setup = TrainSetup(method="full", num_gpus=2, sharding="fsdp", cpu_offload=True)
    t = transfer_time(spec, setup, gpu, micro_batch_seconds=0.0)  # no compute to hide behind
    shard = spec.total_params * 2 / 2  # bf16 weights, half per rank
    grads = spec.total_params * 2 / 2
    assert t.detail["host_copy_bytes"] == pytest.approx(2 * shard + grads)
    assert t.offload == pytest.approx((2 * shard + grads) / (32e9 * HOST_COPY_EFFICIENCY))
    # both ranks of the host run AdamW over their half: the whole model streams through host memory
    host = host_for("rtx-4090")
    expected = spec.total_params * CPU_ADAM_BYTES_PER_PARAM / (host.bandwidth_gbs * 1e9 * CPU_STREAM_EFFICIENCY)
    assert t.cpu_optimizer == pytest.approx(expected * TORCH_CPU_ADAM_SLOWDOWN)


def test_compute_hides_prefetched_transfers_but_not_the_first_unit():
    spec, gpu = model_by_id("llama-3.1-8b"), gpu_by_id("l40s")
    setup = TrainSetup(method="lora", num_gpus=2, sharding="fsdp")
    slow = transfer_time(spec, setup, gpu, micro_batch_seconds=1e-6)
    fast = transfer_time(spec, setup, gpu, micro_batch_seconds=100.0)
    gathered = spec.total_params * 2 + trainable_params(spec, setup) * 4
    first = 2 * 0.5 * gathered / (spec.layers + 1) / 32e9
    assert fast.communication == pytest.approx(first)
    assert slow.communication > 10 * fast.communication


def test_zero2_all_gathers_updated_weights_after_the_step_and_ddp_does_not():
    spec, gpu = model_by_id("llama-3.1-8b"), gpu_by_id("a100-80gb")
    full = dict(method="full", num_gpus=8)
    ddp = transfer_time(spec, TrainSetup(**full), gpu, micro_batch_seconds=100.0)
    zero2 = transfer_time(spec, TrainSetup(**full, sharding="zero2"), gpu, micro_batch_seconds=100.0)
    assert zero2.communication == pytest.approx(7 / 8 * spec.total_params * 2 / 300e9)
    assert ddp.communication == pytest.approx(2 * 7 / 8 * 25 * 2**20 / 300e9)


def test_a_plan_whose_host_ram_exceeds_the_host_does_not_fit_and_says_so():
    plan = Plan.create("llama-3.1-70b", "lora", {"gradient_checkpointing": True},
                       {"gpu": "rtx-4090", "num_gpus": 2, "sharding": "fsdp", "cpu_offload": True})
    e = plan.run_estimate()
    assert e.fits_gpu and e.host_ram > 128 * GIB  # the bf16 70B base offloaded: ~140 GB of host RAM
    assert e.host_memory_bytes == 128 * GIB and e.fits is False  # a 2x 4090 workstation: 2 x 64 GiB
    assert any("does not fit the host" in a and "GiB" in a for a in e.assumptions)
    roomy = plan.edit(hardware={"host_memory_gib": 256}).run_estimate()
    assert roomy.fits and roomy.to_json()["host"]["given"]


def test_offload_costs_time():
    spec, gpu = model_by_id("llama-3.1-8b"), gpu_by_id("h100-sxm")
    base = TrainSetup(method="full", num_gpus=2, sharding="fsdp", gradient_checkpointing=True,
                      examples=1000, tokens_per_example=512)
    on = estimate(spec, TrainSetup(**{**base.__dict__, "cpu_offload": True}), gpu)
    off = estimate(spec, base, gpu)
    assert on.time.seconds > 1.2 * off.time.seconds
    assert on.time.step.cpu_optimizer > 0 and off.time.step.cpu_optimizer == 0
    assert any(a.startswith("offload time:") for a in on.assumptions)


def test_geforce_cards_gather_through_host_memory_not_at_pcie_speed():
    """GeForce cards have no PCIe peer-to-peer, so NCCL stages collectives through host memory: 3.4 GB/s
    (gpus.json link_source), not the 32 GB/s of their PCIe 4.0 slot that an L40S pair uses."""
    spec = model_by_id("llama-3.1-8b")
    setup = TrainSetup(method="lora", num_gpus=2, sharding="fsdp", batch_size=1, seq_len=512)
    gathered = spec.total_params * 2 + trainable_params(spec, setup) * 4  # bf16 base + fp32 adapters
    grads = trainable_params(spec, setup) * 4
    sent = 0.5 * (2 * gathered + grads)  # half of each all-gather (forward, backward) and the reduce-scatter
    geforce = transfer_time(spec, setup, gpu_by_id("rtx-3090"), micro_batch_seconds=0.0)
    l40s = transfer_time(spec, setup, gpu_by_id("l40s"), micro_batch_seconds=0.0)
    assert geforce.communication == pytest.approx(sent / 3.4e9)
    assert l40s.communication == pytest.approx(sent / 32e9)
    # A 7-8B LoRA micro-batch of 512 tokens computes for well under a second: the gathers set the pace
    # (Answer.AI's 2x RTX 3090 box: 5.1 s per micro-batch of Llama-2-7B LoRA under FSDP at 512 tokens).
    assert geforce.communication > 3
