"""Seconds that moving data costs a training step: collectives between GPUs and offload traffic to host memory.

Per optimizer step of ``grad_accum`` micro-batches, on one GPU:

* **communication** (more than one GPU), ring collectives moving ``2·(n−1)/n`` of a buffer per all-reduce
  and ``(n−1)/n`` per all-gather or reduce-scatter (Patarasuk & Yuan 2009) over the GPU's link
  (``gpus.json`` ``link_gbs``):

  - DDP (``none``): one all-reduce of the gradients per step. DDP launches each 25 MB gradient bucket's
    all-reduce as soon as its gradients are ready, so it overlaps the backward except the last bucket
    (Li et al. 2020, "PyTorch Distributed", VLDB, §3.2.3; ``bucket_cap_mb=25``).
  - ZeRO-1/2 (DeepSpeed): gradients reduce-scattered in buckets during the backward (``overlap_comm``),
    then, after the optimizer step, every rank all-gathers the updated 16-bit parameters — that
    all-gather waits for the step and overlaps nothing (Rajbhandari et al. 2020, §5; DeepSpeed's
    ``stage_1_and_2.py`` all-gathers after ``step``).
  - ZeRO-3 / FSDP: per micro-batch every parameter is all-gathered for the forward and again for the
    backward, and the trainable gradients are reduce-scattered. FSDP prefetches the *next* unit's
    all-gather while the current one computes (FSDP2's implicit prefetch, ``BACKWARD_PRE``; Zhao et al.
    2023, "PyTorch FSDP", §3.3): the transfers hide behind compute up to the compute time, and the first
    unit's gather of each pass is never hidden.

* **offload** (``cpu_offload``), over the GPU's host link (``hosts.json`` ``host_link_gbs``) at the share a
  pinned copy reaches (``HOST_COPY_EFFICIENCY``):

  - FSDP / ZeRO-3 with parameters on the host (FSDP2 ``CPUOffloadPolicy``, DeepSpeed ``offload_param``):
    each micro-batch copies the rank's parameter shard to the GPU before each all-gather, forward and
    backward, and its gradient shard back; prefetched one unit ahead like the gather, so it shares the
    compute it can hide behind with the collectives.
  - optimizer offload alone (DeepSpeed ZeRO-Offload, ``offload_optimizer``): per step the gradients go to
    the host (overlapped with the backward, Ren et al. 2021 §4.1) and the updated 16-bit parameters come
    back after the CPU step (not overlapped).
  - the optimizer step then runs on the CPU over the host's memory bandwidth (``hosts.json``
    ``host_bandwidth_gbs``), shared by the ranks of one host. AdamW streams ~28 bytes per fp32
    parameter (read weight, gradient, two moments; write weight and moments); a vectorised CPU Adam
    (DeepSpeed's) reaches ``CPU_STREAM_EFFICIENCY`` of the bandwidth, and torch's own CPU AdamW, which
    FSDP2's offload runs, is 5–7× slower (DeepSpeed ZeRO-Offload tutorial: "DeepSpeedCPUAdam is 5X–7X
    faster than the standard PyTorch implementation"): ``TORCH_CPU_ADAM_SLOWDOWN``. Which one a strategy
    runs is its registry entry's ``host_optimizer`` (``estimators/axes.py``): ZeRO-3 DeepSpeed's, FSDP torch's.

Pure: a few float operations per estimate.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from estimators.axes import sharding
from estimators.memory import GIB, GPUS_PER_NODE, base_weight_bytes, shards_parameters
from estimators.methods import trainable_params
from estimators.setup import DTYPE_BYTES, TrainSetup
from estimators.spec import ModelSpec

DATA = Path(__file__).parent / "data"
# PCIe 4.0 x16, one direction (PCI-SIG: 16 GT/s × 16 lanes ≈ 32 GB/s): a GPU the catalog gives no link for.
DEFAULT_LINK_GBS = 32.0
# A pinned host<->device copy reaches ~80 % of the PCIe link: 128b/130b encoding and the TLP headers of
# 256-byte payloads leave ~86 % (PCI-SIG), DMA setup the rest (CUDA bandwidthTest: ~25 of 32 GB/s on 4.0 x16).
HOST_COPY_EFFICIENCY = 0.8
# A streaming kernel reaches ~60-70 % of a host's theoretical DDR bandwidth (STREAM triad on 2-socket servers).
CPU_STREAM_EFFICIENCY = 0.65
# Bytes an AdamW update streams per fp32 parameter: read weight, gradient, exp_avg, exp_avg_sq (16), write
# weight, exp_avg, exp_avg_sq (12).
CPU_ADAM_BYTES_PER_PARAM = 28
# torch's CPU AdamW against DeepSpeed's vectorised CPU Adam (DeepSpeed ZeRO-Offload tutorial: 5-7x).
TORCH_CPU_ADAM_SLOWDOWN = 6.0
# DDP's default gradient bucket (torch.nn.parallel.DistributedDataParallel bucket_cap_mb=25).
DDP_BUCKET_BYTES = 25 * 2**20


@dataclass(frozen=True)
class Host:
    """The host a GPU sits in: its link to host memory, RAM per GPU and memory bandwidth."""

    link_gbs: float
    link: str
    memory_gib_per_gpu: float
    bandwidth_gbs: float
    name: str

    def memory_bytes(self, num_gpus: int) -> int:
        """RAM of one node holding ``num_gpus`` of these GPUs (up to 8 per node)."""
        return int(self.memory_gib_per_gpu * min(num_gpus, GPUS_PER_NODE) * GIB)


@lru_cache(maxsize=1)
def _hosts() -> dict:
    return json.loads((DATA / "hosts.json").read_text())


def host_for(gpu_id: str | None) -> Host:
    """The typical host of a catalog GPU (``hosts.json``); a workstation for any other."""
    raw = _hosts()
    h = raw["hosts"].get(gpu_id or "", raw["_default"])
    return Host(link_gbs=h["host_link_gbs"], link=h["host_link"], memory_gib_per_gpu=h["host_memory_gib"],
                bandwidth_gbs=h["host_bandwidth_gbs"], name=h["host"])


@dataclass(frozen=True)
class Transfer:
    """Seconds per optimizer step that moving data adds, after what compute hides."""

    communication: float
    """Collectives between GPUs, the part compute does not hide."""
    offload: float
    """Host-link copies of offloaded parameters, gradients and updated weights, the part not hidden."""
    cpu_optimizer: float
    """The optimizer step on the host CPU (offload)."""
    detail: dict

    @property
    def total(self) -> float:
        return self.communication + self.offload + self.cpu_optimizer


def _grad_bytes(setup: TrainSetup) -> int:
    """Bytes per trainable gradient: PEFT keeps adapters in fp32; full tuning in ``weight_bytes``."""
    return 4 if setup.frozen_base else setup.weight_bytes


def _gathered_bytes(spec: ModelSpec, setup: TrainSetup) -> float:
    """Bytes of the whole model one all-gather pass moves: 16-bit weights, or a sharded QLoRA base as stored."""
    if setup.frozen_base:
        base = base_weight_bytes(spec, setup) if setup.m.quantized_base else spec.total_params * DTYPE_BYTES[setup.precision]
        return base + trainable_params(spec, setup) * 4
    return spec.total_params * DTYPE_BYTES[setup.precision]


def _exposed(seconds: float, unhidden: float, room: float) -> float:
    """Seconds of a transfer compute does not hide: its ``unhidden`` part (the first unit, the last bucket,
    anything issued after compute ends) plus what the rest needs beyond ``room`` seconds of compute."""
    fixed = min(unhidden, seconds)
    return fixed + max(seconds - fixed - room, 0.0)


def transfer_time(spec: ModelSpec, setup: TrainSetup, gpu, micro_batch_seconds: float,
                  link_gbs: float | None = None) -> Transfer:
    """What collectives and offload add to one optimizer step whose micro-batches compute for
    ``micro_batch_seconds`` each. ``gpu`` gives ``link_gbs`` (GPU to GPU) and its host (``host_for``)."""
    n = setup.num_gpus
    accum = setup.grad_accum
    strategy = sharding(setup.sharding)
    share = (n - 1) / n if n > 1 else 0.0
    link = (link_gbs or getattr(gpu, "link_gbs", None) or DEFAULT_LINK_GBS) * 1e9
    host = host_for(getattr(gpu, "id", None))
    host_link = host.link_gbs * 1e9 * HOST_COPY_EFFICIENCY
    trainable = trainable_params(spec, setup)
    grads = trainable * _grad_bytes(setup)
    compute = accum * micro_batch_seconds
    units = max(spec.layers, 1) + 1  # one FSDP unit per block plus the root
    detail: dict = {}

    # --- collectives ---
    exposed_comm = 0.0
    hidden_by_comm = 0.0  # compute the collectives already use to hide behind (offload copies share it)
    if n > 1:
        if not (strategy.gathers_after_step or strategy.shards_parameters):
            # DDP: all-reduce overlapped with the backward but its last bucket
            seconds = 2 * share * grads / link
            last = 2 * share * min(grads, DDP_BUCKET_BYTES) / link
            exposed_comm = _exposed(seconds, last, compute * 2 / 3)
            hidden_by_comm = seconds - exposed_comm
            detail["allreduce_bytes"] = 2 * share * grads
        elif strategy.gathers_after_step:
            # reduce-scatter overlapped with the backward; the all-gather of updated 16-bit weights after the step
            scatter = share * grads / link
            gather_bytes = share * trainable * (DTYPE_BYTES[setup.precision] if not setup.frozen_base else 4)
            exposed_comm = _exposed(scatter, 0.0, compute * 2 / 3) + gather_bytes / link
            hidden_by_comm = scatter - _exposed(scatter, 0.0, compute * 2 / 3)
            detail.update(reduce_scatter_bytes=share * grads, allgather_bytes=gather_bytes)
        else:  # ZeRO-3 / FSDP: per micro-batch gather forward and backward, reduce-scatter the gradients
            gathered = _gathered_bytes(spec, setup)
            per_micro = share * (2 * gathered + grads) / link
            first = 2 * share * gathered / units / link  # the first unit of forward and of backward
            seconds = accum * per_micro
            exposed_comm = _exposed(seconds, accum * first, compute)
            hidden_by_comm = seconds - exposed_comm
            detail.update(allgather_bytes=accum * share * 2 * gathered, reduce_scatter_bytes=accum * share * grads)

    # --- offload ---
    exposed_offload = cpu_opt = 0.0
    if setup.cpu_offload:
        ranks_per_host = min(n, GPUS_PER_NODE)
        local = trainable / n if n > 1 and strategy.shards_optimizer else trainable
        if shards_parameters(setup):  # parameters on the host: each micro-batch copies the shard in twice
            shard = _gathered_bytes(spec, setup) / n
            copies = accum * (2 * shard + grads / n) / host_link
            room = max(compute - hidden_by_comm, 0.0)  # prefetched beside the gathers, behind the same compute
            first = 2 * shard / units / host_link
            exposed_offload = _exposed(copies, accum * first, room)
            detail["host_copy_bytes"] = accum * (2 * shard + grads / n)
            # FSDP2 runs torch's optimizer on the host shard; DeepSpeed's ZeRO-3 offload its own CPU Adam
            slowdown = TORCH_CPU_ADAM_SLOWDOWN if strategy.host_optimizer == "torch" else 1.0
        else:  # optimizer offload (ZeRO-Offload): gradients out during backward, updated weights back after
            out = local * _grad_bytes(setup) / host_link
            back = local * (DTYPE_BYTES[setup.precision] if not setup.frozen_base else 4) / host_link
            exposed_offload = _exposed(out, 0.0, compute * 2 / 3) + back
            detail["host_copy_bytes"] = local * (_grad_bytes(setup) + DTYPE_BYTES[setup.precision])
            slowdown = 1.0  # DeepSpeed's CPU Adam
        streamed = local * ranks_per_host * CPU_ADAM_BYTES_PER_PARAM
        cpu_opt = streamed / (host.bandwidth_gbs * 1e9 * CPU_STREAM_EFFICIENCY) * slowdown
        detail["cpu_optimizer_bytes"] = streamed
    return Transfer(communication=exposed_comm, offload=exposed_offload, cpu_optimizer=cpu_opt, detail=detail)
