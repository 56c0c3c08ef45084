"""Seconds per training step, from what sets them (issue 12).

A micro-batch of ``B`` sequences padded (or packed) to ``L`` tokens costs, per GPU:

* **compute**: ``B·L·flops_per_token(L)`` over ``peak × efficiency``. The efficiency is the GPU's
  default model-FLOP utilisation (``gpus.json``, calibrated by trials), the method's share
  (``MethodSpec.efficiency``) and a saturation factor ``T / (T + T½)`` in the tokens ``T = B·L`` of
  the micro-batch: a small matmul leaves most of the GPU's SMs idle (the "wave quantisation" and
  tile-occupancy effect of NVIDIA's GEMM performance guide, docs.nvidia.com/deeplearning/performance).
* **kernel launches**: eager PyTorch issues each block's kernels from Python; when the kernels are
  short the GPU waits on the CPU. A floor of ``layers × launch_seconds_per_layer`` plus
  ``modules the method inserts × launch_seconds_per_module`` (LoRA layers, adapters) (×4/3 with
  checkpointing, which runs the forward again), combined with compute as a smooth maximum because
  launches overlap with running kernels (asynchronous CUDA streams).
* **CPU dispatch** (a CPU device): there the same threads run the Python modules, the dispatcher and
  the kernels, one after another, so the host's per-block and per-inserted-module cost *adds* to the
  compute instead of hiding under it; and each module a method inserts (LoRA path, adapter) streams
  its input and output through memory-bound elementwise passes (dropout, scaling, residual add, their
  backward) per token. Measured on tiny Llamas by ``bench/cpu_step_sweep.py`` (18 shapes × methods,
  results in ``bench/results/``): without these terms a calibrated CPU trial mispredicts another
  batch or method by 10–30 %. The host's seconds are one 2-core EPYC's: a trial calibrates only the
  compute efficiency beside them, so on a much faster or slower host they are off by its speed.
* **eager attention** (``attention=eager``): the ``B × heads × L²`` score matrix is written, upcast,
  softmaxed and read back in forward and backward — memory traffic over the GPU's bandwidth.
  SDPA/flash kernels keep the scores in on-chip memory (Dao et al. 2022) and pay only the FLOPs.
* **QLoRA dequantization**: every 4/8-bit base weight is expanded to 16 bits before its matmul, in
  forward, in backward and in the recomputed forward — bytes over bandwidth per micro-batch,
  whatever its token count (so it weighs less per token as batches grow; Dettmers et al. 2023).
* **MoE routing**: tokens are permuted to their experts and back (forward and backward) — bytes over
  bandwidth.
* **fixed per micro-batch**: data collation, host-to-device copies, the loss's host sync, logging.

and per optimizer step (once per ``grad_accum`` micro-batches):

* **optimizer**: AdamW reads weights, gradients and both moments and writes weights and moments
  (PyTorch's ``_multi_tensor_adamw``): a memory-bound pass that grows with the *trainable* parameters,
  not with tokens. Sharded optimizers (ZeRO/FSDP) update only their shard. On a CPU, PyTorch picks the
  per-tensor loop (``_single_tensor_adamw``: about a dozen ops per parameter tensor), a fixed host cost
  per trainable tensor on top of the bytes.
* **communication and offload** (more than one GPU, or ``cpu_offload``): collectives per sharding
  strategy, host-link copies of offloaded weights and gradients, and a CPU optimizer step, each
  overlapped with compute only as far as its framework prefetches — ``estimators/transfer.py``.

The constants that are not datasheet facts live in ``data/time_model.json`` with how they were
fitted (``bench/time_accuracy.py --fit`` on the fit set of ``bench/data/throughput-records.json``).
Pure and torch-free: a handful of float operations per estimate.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist

from estimators.catalog import GPU
from estimators.methods import quantized_params, trainable_params
from estimators.methods.base import lora_linears
from estimators.setup import DTYPE_BYTES, TrainSetup
from estimators.spec import ModelSpec
from estimators.transfer import transfer_time

DATA = Path(__file__).parent / "data"
# PCIe 4.0 x16, one direction (PCI-SIG: 16 GT/s × 16 lanes ≈ 32 GB/s): a GPU the catalog gives no link for.
DEFAULT_LINK_GBS = 32.0
# Host memory bandwidth assumed for a CPU "device" whose bandwidth was not measured: a dual-channel DDR4 desktop.
DEFAULT_CPU_BANDWIDTH_GBS = 20.0
# Memory bandwidth assumed for a custom GPU given by memory and TFLOP/s only: GDDR6X/HBM2-class (an A10G
# has 600 GB/s, an A100 40 GB 1,555).
DEFAULT_GPU_BANDWIDTH_GBS = 1000.0
# Smooth maximum of compute and launch time: (a^k + b^k)^(1/k); k=4 is within 19 % of max() when
# a = b and within 2 % once one is twice the other.
_SMOOTH_MAX_POWER = 4


@lru_cache(maxsize=1)
def constants() -> dict:
    """The fitted and documented constants of the step-time model (``data/time_model.json``)."""
    return json.loads((DATA / "time_model.json").read_text())


@dataclass(frozen=True)
class StepTime:
    """Seconds of one optimizer step (``grad_accum`` micro-batches) on one GPU, by term."""

    compute: float
    launch: float
    """Kernel-launch floor (CUDA): overlaps with compute (``busy`` is their smooth maximum)."""
    busy: float
    """Per micro-batch: compute and launches together."""
    eager_attention: float
    dequantize: float
    moe_routing: float
    fixed: float
    optimizer: float
    """Per optimizer step."""
    communication: float
    """Per optimizer step, the part that compute does not hide."""
    micro_batches: int
    module_traffic: float = 0.0
    """Per micro-batch on a CPU: the inserted modules' elementwise passes over their tokens."""
    offload: float = 0.0
    """Per optimizer step: host-link copies of offloaded weights and gradients not hidden (estimators/transfer.py)."""
    cpu_optimizer: float = 0.0
    """Per optimizer step: the optimizer run on the host CPU under offload (estimators/transfer.py)."""

    @property
    def micro_batch(self) -> float:
        return self.busy + self.eager_attention + self.dequantize + self.moe_routing + self.fixed + self.module_traffic

    @property
    def total(self) -> float:
        return self.micro_batches * self.micro_batch + self.optimizer + self.communication + self.offload \
            + self.cpu_optimizer

    def to_dict(self) -> dict:
        return {"compute": self.compute, "launch": self.launch, "eager_attention": self.eager_attention,
                "dequantize": self.dequantize, "moe_routing": self.moe_routing, "fixed": self.fixed,
                "optimizer": self.optimizer, "communication": self.communication,
                "module_traffic": self.module_traffic, "offload": self.offload, "cpu_optimizer": self.cpu_optimizer,
                "micro_batches": self.micro_batches, "total": self.total}


def _on_gpu(setup: TrainSetup, gpu: GPU) -> bool:
    """A CUDA device (asynchronous kernels) rather than this machine's CPU standing in for one."""
    return setup.device == "cuda" and gpu.id != "cpu"


def _bandwidth(gpu: GPU) -> float:
    gbs = gpu.bandwidth_gbs or (DEFAULT_CPU_BANDWIDTH_GBS if gpu.id == "cpu" else DEFAULT_GPU_BANDWIDTH_GBS)
    return gbs * 1e9


def _optimizer_bytes_per_param(setup: TrainSetup) -> float:
    """Bytes AdamW-style updates move per trainable parameter: read weight, gradient and states, write
    weight and states, plus one weight-sized ``foreach`` temporary written and read. PEFT keeps adapter
    weights (hence gradients and states) in fp32; full tuning keeps them in ``weight_bytes``."""
    w = 4 if setup.frozen_base else setup.weight_bytes
    grad = w
    states = {"adamw": 2 * w, "adamw_8bit": 2 * 1, "sgd": w, "adafactor": 0}[setup.optimizer]  # per element
    return 2 * w + grad + 2 * states + 2 * w


def optimizer_seconds(spec: ModelSpec, setup: TrainSetup, gpu: GPU) -> float:
    """One optimizer step over this GPU's share of the trainable parameters (ZeRO/FSDP shard them)."""
    n = trainable_params(spec, setup)
    if setup.num_gpus > 1 and setup.sharding != "none":
        n /= setup.num_gpus
    if setup.cpu_offload:
        return 0.0  # the update runs on the host (DeepSpeed's CPU Adam); not modelled
    seconds = n * _optimizer_bytes_per_param(setup) / _bandwidth(gpu)
    if not _on_gpu(setup, gpu):
        c = constants()
        # CPU: torch's per-tensor AdamW/SGD loop pays host time per tensor, and its per-tensor temporaries
        # (AdamW's denominator) land on fresh pages: glibc hands large freed blocks back to the kernel
        # (mmap threshold, heap trim), so each step faults and zero-fills them again. Measured as the
        # optimizer phase with and without MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ pinned
        # (bench/results/cpu-step-sweep-2026-11-23.txt): ~0.75 µs per 4 KiB page.
        seconds += trainable_tensors(spec, setup) * c["cpu_optimizer_seconds_per_tensor"]
        seconds += n * 4 * c["cpu_first_touch_seconds_per_byte"]
    return seconds


def trainable_tensors(spec: ModelSpec, setup: TrainSetup) -> int:
    """Parameter tensors the optimizer visits (biases not counted). Full tuning: every linear, two norms
    per block, the final norm, the embeddings and (untied) the LM head. LoRA-style: A and B per adapted
    linear. Inserted modules (adapters): down and up weight and bias each. Prompt tuning: one table."""
    modules = setup.m.added_modules(spec, setup)
    if not setup.frozen_base:
        linears = sum(lin.count for lin in lora_linears(spec, "all-linear"))
        return linears + 2 * spec.layers + (2 if spec.tied_embeddings else 3)
    if setup.m.adapter_linears is not None:
        return 2 * modules
    return 4 * modules if modules else 1


def module_features(spec: ModelSpec, setup: TrainSetup) -> int:
    """Input plus output features summed over the modules a method inserts: what their elementwise
    passes stream per token (LoRA: each adapted linear's in + out; an adapter: hidden in, hidden out)."""
    if setup.m.adapter_linears is not None:
        return sum(lin.count * (lin.in_features + lin.out_features) for lin in setup.m.adapter_linears(spec, setup))
    return setup.m.added_modules(spec, setup) * 2 * spec.hidden


def step_time(spec: ModelSpec, setup: TrainSetup, gpu: GPU, length: float, flops_per_token,
              efficiency: float) -> StepTime:
    """One optimizer step of ``setup.grad_accum`` micro-batches of ``batch_size`` sequences of
    ``length`` tokens (padded or packed). ``flops_per_token(length)`` gives the training FLOPs per
    token at that length; ``efficiency`` is the base MFU before the method's share."""
    c = constants()
    cuda = _on_gpu(setup, gpu)
    bw = _bandwidth(gpu)
    tokens = setup.batch_size * length
    saturation = tokens / (tokens + c["saturation_tokens"]) if cuda else 1.0
    rate = gpu.peak_flops(setup.precision) * efficiency * setup.m.efficiency * saturation
    compute = tokens * flops_per_token(length) / rate if rate else 0.0
    launch = traffic = 0.0
    recompute = 4 / 3 if setup.gradient_checkpointing else 1  # checkpointing runs the forward again
    if cuda:
        launch = (spec.layers * c["launch_seconds_per_layer"] + setup.m.added_modules(spec, setup)
                  * c["launch_seconds_per_module"]) * recompute
    else:
        # CPU dispatch: Python modules and the ATen dispatcher per block and per inserted module, forward
        # and backward, on the threads that then run the kernels (bench/cpu_step_sweep.py).
        launch = (spec.layers * c["cpu_dispatch_seconds_per_layer"] + setup.m.added_modules(spec, setup)
                  * c["cpu_dispatch_seconds_per_module"]) * recompute
        # The inserted modules' elementwise passes (dropout, scale, add, activation and their backward)
        # read and write their inputs and outputs per token, in fp32: bytes over the host's bandwidth.
        traffic = tokens * module_features(spec, setup) * 4 * c["cpu_module_passes"] * recompute / bw
    if setup.compile:
        # torch.compile (Inductor) fuses the elementwise work between matmuls: fewer kernels to launch
        # and less memory traffic. One published pair fits it (torchtune README, "Optimization flags").
        compute /= c["compile_speedup"]
        launch /= c["compile_speedup"]
    k = _SMOOTH_MAX_POWER
    # A GPU runs kernels while the CPU issues the next ones: the slower of the two sets the pace. A CPU
    # issues and runs them on the same threads: they add.
    busy = (compute**k + launch**k) ** (1 / k) if cuda else compute + launch
    passes = 3 if setup.gradient_checkpointing else 2  # forward, backward (+ the recomputed forward)
    eager = 0.0
    if setup.attention == "eager":
        scores = setup.batch_size * spec.heads * length * length * spec.layers
        eager = scores * c["eager_attention_bytes_per_score"] * passes / 2 / bw
    dequant = 0.0
    if setup.m.quantized_base:  # fitted on NF4 runs; LLM.int8 (quant_bits 8) is assumed alike
        dequant = quantized_params(spec) * c["dequant_bytes_per_weight"] * passes / bw
    moe = 0.0
    if spec.is_moe:
        moved = tokens * spec.hidden * DTYPE_BYTES[setup.precision] * spec.experts_per_token
        moe = moved * c["moe_permute_passes"] * spec.layers / bw
    fixed = c["step_overhead_seconds"] if cuda else 0.0
    optimizer = optimizer_seconds(spec, setup, gpu)
    per_micro = busy + eager + dequant + moe + fixed + traffic
    # --- communication and offload (#22): collectives, host-link copies and a CPU optimizer step, each
    # overlapped with compute only as far as its framework prefetches (estimators/transfer.py) ---
    moved = transfer_time(spec, setup, gpu, per_micro, link_gbs=gpu.link_gbs or DEFAULT_LINK_GBS)
    # --- end of the transfer hook ---
    return StepTime(compute=compute, launch=launch, busy=busy, eager_attention=eager, dequantize=dequant,
                    moe_routing=moe, fixed=fixed, optimizer=optimizer, communication=moved.communication,
                    micro_batches=setup.grad_accum, module_traffic=traffic, offload=moved.offload,
                    cpu_optimizer=moved.cpu_optimizer)


def efficiency_for(spec: ModelSpec, setup: TrainSetup, gpu: GPU, length: float, flops_per_token,
                   step_seconds: float) -> float | None:
    """The base efficiency that makes ``step_time`` equal a measured ``step_seconds`` (one micro-batch
    of ``length`` tokens per sequence and the optimizer step after it): what a trial calibrates.
    None when the measurement is faster than the terms that do not depend on the efficiency."""
    one = step_time(spec, setup, gpu, length, flops_per_token, 1.0)
    rest = one.total - one.micro_batches * one.busy
    busy = (step_seconds - rest) / one.micro_batches
    if busy <= one.launch * 1.02 or one.compute <= 0:
        return None
    if not _on_gpu(setup, gpu):  # CPU: dispatch and compute add (see step_time)
        return one.compute / (busy - one.launch)
    k = _SMOOTH_MAX_POWER
    compute = (busy**k - one.launch**k) ** (1 / k)
    return one.compute / compute


# --- padding ---------------------------------------------------------------------------------------

_Z95 = 1.6448536269514722  # standard normal 95th percentile
_GRID = 64  # quadrature points for the expected longest sequence of a micro-batch


def padding_ratio(setup: TrainSetup) -> float:
    """Padded tokens processed per real token when micro-batches are padded to their longest example.

    Example lengths are modelled as log-normal through the data's median and 95th percentile
    (``setup.length_quantiles``), capped at the longest example and at ``seq_len`` (truncation).
    A micro-batch of ``B`` random examples costs, for each of its rows, the expected maximum of ``B``
    draws: ``E[max] = ∫ q(v^(1/B)) dv`` over (0, 1), ``q`` the length quantile function. With data
    parallelism every rank waits for the slowest at the gradient all-reduce, so ``n`` ranks cost the
    longest of ``n·B`` examples (the straggler effect of variable-length batches).
    1.0 when packing, or when the length spread is unknown."""
    if setup.packing or setup.length_quantiles is None:
        return 1.0
    p50, p95, longest = setup.length_quantiles
    cap = min(setup.seq_len, longest or setup.seq_len)
    if p95 <= p50 or p50 <= 0:
        return 1.0
    mu, sigma = math.log(p50), math.log(p95 / p50) / _Z95
    inv = NormalDist().inv_cdf
    draws = setup.batch_size * setup.num_gpus
    mean = peak = 0.0
    for i in range(_GRID):
        v = (i + 0.5) / _GRID  # midpoints: of u for the mean, of u^draws for the maximum
        mean += min(cap, math.exp(mu + sigma * inv(v))) / _GRID
        peak += min(cap, math.exp(mu + sigma * inv(v ** (1 / draws)))) / _GRID
    return max(1.0, peak / mean)
