"""Seconds per training step, from what sets them (issues 12 and 21).

A micro-batch of ``B`` sequences padded (or packed) to ``L`` tokens, ``T = B·L`` tokens, costs per GPU
the work its kernels do on the GPU and the host's work to issue them, which overlap:

* **matmuls** (``compute``): every linear layer of the model, one GEMM forward, one for the input
  gradient, one for the weight gradient when the weight trains, and the forward again under
  checkpointing. Each GEMM takes the larger (smoothly) of its FLOPs over ``peak × efficiency`` and its
  bytes over the memory bandwidth: the roofline (Williams, Waterman & Patterson 2009; NVIDIA's "Matrix
  multiplication background" guide, docs.nvidia.com/deeplearning/performance). A ``T×K·K×N`` GEMM
  does ``2TKN`` FLOPs on ``2(TK + KN + TN)`` bytes, so at small ``T`` (a micro-batch of one short
  sequence) it is bound by reading its weight, and a LoRA matmul (``N = r``) is bound by reading its
  input: both run far below peak, from their shapes alone. ``efficiency`` (``gpus.json``, calibrated
  by trials) is the share of peak that large GEMMs reach. FLOPs beyond the linears (attention,
  distillation's teacher, DoRA's norms) run at ``peak × efficiency``.
* **MoE experts** run as grouped GEMMs over the routed tokens (``T·k`` rows): the FLOPs of the active
  experts, the bytes of every expert that received a token (``E·(1−(1−k/E)^T)`` of ``E``).
* **LoRA** (PEFT): adapters are fp32, so each adapted linear casts its input to fp32, runs two thin
  fp32 GEMMs, scales, adds and casts back — memory-bound passes counted from PEFT 0.21's
  ``lora.Linear.forward`` (``lora_*_bytes``). On fused expert banks PEFT's ``ParamWrapper`` folds
  ``W + s·B·A`` into a full effective weight per forward (one fp32 einsum per bank) and trains through
  it: the experts' weight-gradient GEMM runs as in full tuning, plus the fold's FLOPs and bytes.
  ``lora_dropout`` adds one dropout pass over each adapted layer's own copy of its input, forward and
  backward (``lora_dropout_bytes``), and two kernels per layer.
* **elementwise passes** of the blocks (norms, rotary, activation, residual adds, in forward and
  backward): bytes per token and feature over bandwidth; **the loss**: the ``T × vocab`` logits written,
  upcast to fp32, log-softmaxed and back-propagated (``logits_bytes``) unless a fused chunked loss
  (Liger, Cut Cross-Entropy) keeps them on chip.
* **kernel launches** (``launch``): the kernels each block and each inserted module issue (counted from
  the eager modules, ``kernels_per_*``) × the host's cost per kernel (``launch_seconds_per_kernel``,
  a few µs: CUDA's launch latency plus PyTorch's dispatch). On CUDA the GPU runs kernels while the host
  issues the next ones, so ``busy`` is the smooth maximum of the GPU's work and the launches.
* **CPU device**: there the same threads dispatch and run the kernels, so the host's per-block and
  per-inserted-module cost *adds* to the compute, inserted modules stream their inputs through
  memory (``bench/cpu_step_sweep.py``, results in ``bench/results/``), and the blocks' elementwise
  passes and the logits cost their bytes over the measured host bandwidth, as on a GPU.
* **eager attention**, **QLoRA dequantization**, **MoE routing**: bytes over bandwidth, as named.
* **masked attention**: where transformers gives SDPA an explicit mask (a sliding-window layer at or past
  its window), the memory-efficient kernel computes the whole score square instead of flash's causal
  half (``masked_attention_factor``, counted).
* **activation offloading**: the saved activations go to host memory in forward and come back in
  backward over the host link, on a side stream; only what compute does not hide costs.
* **fixed per micro-batch**: data collation, host-to-device copies, the loss's host sync, logging.

and per optimizer step (once per ``grad_accum`` micro-batches):

* **optimizer**: the update's full-tensor passes, counted per optimizer (PyTorch's foreach AdamW makes
  20 passes over weights, gradients, moments and a temporary, ~40 bytes per bf16 parameter) and the
  gradient-norm clip: memory-bound, in the *trainable* parameters. Sharded optimizers
  (ZeRO/FSDP) update only their shard. In backward (``optimizer_in_backward``) each tensor is updated
  alone: the same bytes, plus a dozen kernels per tensor. On a CPU the per-tensor loop pays host time.
* **communication and offload** (more than one GPU, or ``cpu_offload``): ring collectives per sharding
  strategy over the link, host-link copies of offloaded weights and gradients, and a CPU optimizer step,
  each overlapped with compute only as far as its framework prefetches (``estimators/transfer.py``).

The terms are named in ``StepTime.terms`` (per micro-batch) and ``StepTime.step_terms`` (per optimizer
step); a new term is one more entry. Every constant that is not a datasheet fact lives in
``data/time_model.json`` with its physical range and source; the fitted ones
(``bench/time_accuracy.py --fit``) may not leave their ranges. The per-micro-batch work terms and the
constants' loader live in ``estimators/stepwork.py``; this module assembles them into a step. Pure and torch-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from statistics import NormalDist

from estimators.axes import optimizer as optimizer_spec
from estimators.axes import sharding as sharding_spec
from estimators.catalog import GPU
from estimators.methods import quantized_params, trainable_params
from estimators.setup import DTYPE_BYTES, TrainSetup
from estimators.spec import ModelSpec
from estimators.stepwork import (  # noqa: F401  (ranges, fitted_names, inserted_modules: re-exported, read from here)
    _bandwidth, _elementwise_bytes, _kernels, _lora_bytes, _on_gpu, _smax, attention_flops_per_token, constants,
    fitted_names, inserted_modules, lora_dropout_bytes, masked_attention_layers, recompute_factor,
    matmul_seconds, module_features, ranges, trainable_tensors)
from estimators.transfer import DEFAULT_LINK_GBS, transfer_time  # PCIe 4.0 x16: also the host link of activation offloading


@dataclass(frozen=True)
class StepTime:
    """Seconds of one optimizer step (``grad_accum`` micro-batches) on one GPU, by term."""

    compute: float
    """Per micro-batch: the matmuls (roofline per GEMM) and the other FLOPs."""
    launch: float
    """Per micro-batch: the host's time to issue the kernels (CUDA: overlaps with the GPU's work)."""
    busy: float
    """Per micro-batch: the GPU's work and the launches together."""
    terms: dict
    """Per micro-batch seconds by name: the GPU's work (``compute`` and the memory-bound terms, which
    ``busy`` overlaps with ``launch``), then ``fixed`` and the exposed transfers, which add."""
    step_terms: dict
    """Per optimizer step seconds by name (``optimizer``, ``communication``, ...)."""
    micro_batches: int
    added: tuple = ()
    """Names in ``terms`` that add to ``busy`` instead of overlapping with the launches."""

    @property
    def micro_batch(self) -> float:
        return self.busy + sum(self.terms[k] for k in self.added)

    @property
    def total(self) -> float:
        return self.micro_batches * self.micro_batch + sum(self.step_terms.values())

    def term(self, name: str) -> float:
        return self.terms.get(name, self.step_terms.get(name, 0.0))

    eager_attention = property(lambda self: self.term("eager_attention"))
    dequantize = property(lambda self: self.term("dequantize"))
    moe_routing = property(lambda self: self.term("moe_routing"))
    module_traffic = property(lambda self: self.term("module_traffic"))
    fixed = property(lambda self: self.term("fixed"))
    optimizer = property(lambda self: self.term("optimizer"))
    communication = property(lambda self: self.term("communication"))
    offload = property(lambda self: self.term("offload"))
    cpu_optimizer = property(lambda self: self.term("cpu_optimizer"))

    def to_dict(self) -> dict:
        return {"launch": self.launch, "busy": self.busy, **self.terms, **self.step_terms,
                "micro_batches": self.micro_batches, "total": self.total}



def _optimizer_bytes_per_param(setup: TrainSetup) -> float:
    """Bytes one optimizer step moves per trainable parameter: the update's full-tensor passes as the
    optimizer's implementation makes them (``OptimizerSpec.update_passes``), plus the gradient-norm clip
    (``clip_grad_norm_``: ``_foreach_norm`` reads the gradients, ``_foreach_mul_`` reads and writes them),
    which this project's loop, HF Trainer (``max_grad_norm`` 1.0) and PEFT's method comparison run by
    default. PEFT keeps adapter weights (hence gradients and states) in fp32; full tuning keeps them in
    ``weight_bytes``."""
    w = 4 if setup.frozen_base else setup.weight_bytes
    o = optimizer_spec(setup.optimizer)
    state = o.moved_state_bytes if o.moved_state_bytes is not None else w
    weights, grads, states, temps = o.update_passes
    clip = 3
    return weights * w + (grads + clip) * w + states * state + temps * state


def optimizer_seconds(spec: ModelSpec, setup: TrainSetup, gpu: GPU) -> float:
    """One optimizer step over this GPU's share of the trainable parameters (ZeRO/FSDP shard them)."""
    n = trainable_params(spec, setup)
    if setup.num_gpus > 1 and sharding_spec(setup.sharding).shards_optimizer:
        n /= setup.num_gpus
    if setup.cpu_offload:
        return 0.0  # the update runs on the host (DeepSpeed's CPU Adam); not modelled
    c = constants()
    seconds = n * _optimizer_bytes_per_param(setup) / _bandwidth(gpu)
    if not _on_gpu(setup, gpu):
        # CPU: torch's per-tensor AdamW/SGD loop pays host time per tensor, and its per-tensor temporaries
        # (AdamW's denominator) land on fresh pages: glibc hands large freed blocks back to the kernel
        # (mmap threshold, heap trim), so each step faults and zero-fills them again. Measured as the
        # optimizer phase with and without MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ pinned
        # (bench/results/cpu-step-sweep-2026-11-23.txt): ~0.75 µs per 4 KiB page.
        seconds += trainable_tensors(spec, setup) * c["cpu_optimizer_seconds_per_tensor"]
        seconds += n * 4 * c["cpu_first_touch_seconds_per_byte"]
    elif setup.optimizer_in_backward:
        # One tensor at a time in its gradient hook (no foreach batching): a dozen kernels per tensor.
        seconds += trainable_tensors(spec, setup) * c["kernels_per_tensor_update"] * c["launch_seconds_per_kernel"]
    return seconds



def _gpu_terms(spec: ModelSpec, setup: TrainSetup, gpu: GPU, length: float, flops_per_token,
               efficiency: float) -> tuple[float, float, dict]:
    """(compute, launch, the GPU's work by term) of one micro-batch on a CUDA GPU."""
    c = constants()
    bw = _bandwidth(gpu)
    tokens = setup.batch_size * length
    rate = gpu.peak_flops(setup.precision) * efficiency * setup.m.efficiency
    gemm_s, gemm_f = matmul_seconds(spec, setup, gpu, tokens, efficiency * setup.m.efficiency)
    rest = max(0.0, tokens * flops_per_token(length) - gemm_f)  # attention, teacher, DoRA's norms...
    compute = gemm_s + rest / rate
    fuse = c["compile_fusion"] if setup.compile else 1.0
    logit_bytes = c["fused_ce_bytes_per_logit"] if setup.fused_cross_entropy else c["logits_bytes_per_logit"]
    terms = {"compute": compute,
             "elementwise": _elementwise_bytes(spec, setup, tokens) * fuse / bw,
             "module_traffic": _lora_bytes(spec, setup, tokens) * fuse / bw,
             "logits": tokens * spec.vocab * logit_bytes / bw}
    masked = masked_attention_layers(spec, setup, length)
    if masked:
        # The score and value matmuls run once forward, twice backward (their input gradients) and again
        # when checkpointing recomputes: each pays what the masked kernel costs beyond the flash one.
        passes = 3 + bool(setup.gradient_checkpointing)
        attention = tokens * attention_flops_per_token(spec, length) / spec.layers * masked * passes
        terms["masked_attention"] = (c["masked_attention_factor"] - 1) * attention / rate
    launch = _kernels(spec, setup) * c["launch_seconds_per_kernel"]
    return compute, launch, terms


def _cpu_terms(spec: ModelSpec, setup: TrainSetup, gpu: GPU, length: float, flops_per_token,
               efficiency: float) -> tuple[float, float, dict]:
    """CPU device: compute at the (measured) peak × efficiency; the host's dispatch per block and per
    inserted module, and the inserted modules' elementwise passes in fp32 (bench/cpu_step_sweep.py)."""
    c = constants()
    tokens = setup.batch_size * length
    rate = gpu.peak_flops(setup.precision) * efficiency * setup.m.efficiency
    flops = tokens * flops_per_token(length)
    upcast = _kbit_upcast(setup)
    widen = 4 / setup.act_bytes if upcast else 1.0  # the activations stream in fp32
    if upcast and rate:
        # peft's prepare_model_for_kbit_training (0.21, utils/other.py: "cast all non INT8 parameters to
        # fp32") upcasts the embeddings, norms and LM head: the residual stream is fp32, bitsandbytes'
        # Linear4bit casts its input to the compute dtype and its output back, so only the 4-bit base
        # GEMMs run at the 16-bit rate; the head's GEMMs, attention and the other FLOPs at the fp32 one.
        # Measured on the default QLoRA trial (torch.profiler, 1 thread): aten::mm 160 GFLOP/s, this
        # CPU's fp32 GEMM rate, not its 1.2 TFLOP/s bf16 one.
        base = _quantized_gemm_flops(spec, setup, tokens)
        rate32 = gpu.peak_flops("fp32") * efficiency * setup.m.efficiency
        compute = base / rate + max(0.0, flops - base) / rate32
    else:
        compute = flops / rate if rate else 0.0
    recompute = recompute_factor(setup)
    dense, banks = inserted_modules(spec, setup)
    launch = (spec.layers * c["cpu_dispatch_seconds_per_layer"] + (dense + banks)
              * c["cpu_dispatch_seconds_per_module"]) * recompute
    bw = _bandwidth(gpu)
    traffic = (tokens * module_features(spec, setup) * 4 * c["cpu_module_passes"] * recompute
               + lora_dropout_bytes(spec, setup, tokens)) / bw
    # The blocks' elementwise passes and the loss's logits stream through memory on a CPU as on a GPU (the
    # same counted bytes over the measured host bandwidth). On the app's default trial (hidden 256, 4 x 384
    # tokens, 1 thread) they are half the step: torch.profiler gave 275 ms in aten::mm and 261 ms in the
    # other ops (mul, add, fill_, copy_, softmax; bench/results/trial-time-check-2026-12-03-b.txt).
    logit_bytes = c["fused_ce_bytes_per_logit"] if setup.fused_cross_entropy else c["logits_bytes_per_logit"]
    # Before calibration they run at the measured bandwidth (a 64 MiB copy). A trial calibrates one share of
    # this CPU's measured rates: the efficiency over the default scales these byte terms as it scales the
    # FLOP rate (tiny models' tensors sit in cache and beat the copy's bandwidth; big ones fault fresh pages).
    share = efficiency / gpu.efficiency if gpu.efficiency else 1.0
    elementwise = _elementwise_bytes(spec, setup, tokens) * widen / bw / share
    logits = tokens * spec.vocab * logit_bytes / bw / share
    if setup.compile:
        compute /= c["cpu_compile_speedup"]
        launch /= c["cpu_compile_speedup"]
        elementwise *= c["compile_fusion"]
    return compute, launch, {"compute": compute, "module_traffic": traffic, "elementwise": elementwise,
                             "logits": logits}


def _kbit_upcast(setup: TrainSetup) -> bool:
    """A quantized base prepared by peft's prepare_model_for_kbit_training (non-quantized weights in fp32)."""
    from estimators.memory import unquantized_bytes  # lazy: memory imports the activation model

    return bool(setup.m.quantized_base) and setup.act_bytes != 4 and unquantized_bytes(setup) == 4


def _quantized_gemm_flops(spec: ModelSpec, setup: TrainSetup, tokens: float) -> float:
    """FLOPs of the quantized base linears' GEMMs in one micro-batch: forward (twice under checkpointing)
    and the input gradient; the frozen 4-bit weights get no weight gradient."""
    passes = (2 if setup.gradient_checkpointing else 1) + 1
    return sum(2 * tokens * lin.in_features * lin.out_features * lin.count * passes
               for lin in spec.linears if lin.count)


def saved_activation_bytes(spec: ModelSpec, setup: TrainSetup) -> float:
    """What activation offloading moves each way per micro-batch (the activations kept for backward)."""
    from estimators.activations import activations  # lazy: activations imports the method registry too

    return float(activations(spec, replace(setup, activation_offloading=False)).saved)


def step_time(spec: ModelSpec, setup: TrainSetup, gpu: GPU, length: float, flops_per_token,
              efficiency: float) -> StepTime:
    """One optimizer step of ``setup.grad_accum`` micro-batches of ``batch_size`` sequences of
    ``length`` tokens (padded or packed). ``flops_per_token(length)`` gives the training FLOPs per
    token at that length; ``efficiency`` is the share of peak that large GEMMs reach (a trial calibrates it)."""
    c = constants()
    cuda = _on_gpu(setup, gpu)
    bw = _bandwidth(gpu)
    tokens = setup.batch_size * length
    terms_of = _gpu_terms if cuda else _cpu_terms
    compute, launch, terms = terms_of(spec, setup, gpu, length, flops_per_token, efficiency)
    passes = 3 if setup.gradient_checkpointing else 2  # forward, backward (+ the recomputed forward)
    if setup.attention == "eager":
        scores = setup.batch_size * spec.heads * length * length * spec.layers
        terms["eager_attention"] = scores * c["eager_attention_bytes_per_score"] * passes / 2 / bw
    if setup.m.quantized_base:  # fitted on NF4 runs; LLM.int8 (quant_bits 8) is assumed alike
        terms["dequantize"] = quantized_params(spec) * c["dequant_bytes_per_weight"] * passes / bw
    if spec.is_moe:
        moved = tokens * spec.hidden * DTYPE_BYTES[setup.precision] * spec.experts_per_token
        terms["moe_routing"] = moved * c["moe_permute_passes"] * spec.layers / bw
    work = sum(terms.values())
    # A GPU runs kernels while the host issues the next ones: the slower of the two sets the pace. A CPU
    # issues and runs them on the same threads: they add.
    busy = _smax(work, launch) if cuda else work + launch
    added = ["fixed"]
    terms["fixed"] = c["step_overhead_seconds"] if cuda else 0.0
    if setup.activation_offloading:
        # Saved activations to pinned host memory in forward and back in backward (side stream): exposed
        # only where the copies outlast the compute they overlap.
        moved = 2 * saved_activation_bytes(spec, setup) / (DEFAULT_LINK_GBS * 1e9)
        terms["activation_offload"] = max(0.0, moved - busy)
        added.append("activation_offload")
    micro = busy + sum(terms[k] for k in added)
    step_terms = {"optimizer": optimizer_seconds(spec, setup, gpu)}
    # --- hook: offload and communication time terms (issue 22 puts estimators/transfer.py here) ------
    # Collectives per sharding, host-link copies of what is offloaded and a CPU optimizer step, each
    # overlapped with compute only as far as its framework prefetches.
    moved = transfer_time(spec, setup, gpu, micro, link_gbs=gpu.link_gbs or DEFAULT_LINK_GBS)
    step_terms.update(communication=moved.communication, offload=moved.offload, cpu_optimizer=moved.cpu_optimizer)
    # --- end hook ---------------------------------------------------------------------------------------
    return StepTime(compute=compute, launch=launch, busy=busy, terms=terms, step_terms=step_terms,
                    micro_batches=setup.grad_accum, added=tuple(added))


def efficiency_for(spec: ModelSpec, setup: TrainSetup, gpu: GPU, length: float, flops_per_token,
                   step_seconds: float) -> float | None:
    """The efficiency that makes ``step_time`` equal a measured ``step_seconds`` (what a trial
    calibrates): found by bisection in log space, since the roofline makes the step a monotone but not
    proportional function of it. None when the measurement is faster than the terms that do not depend
    on the efficiency (no efficiency explains it)."""
    def total(eff):
        return step_time(spec, setup, gpu, length, flops_per_token, eff).total

    lo, hi = math.log(1e-6), math.log(1e3)
    if total(math.exp(hi)) * 1.02 >= step_seconds or total(math.exp(lo)) <= step_seconds:
        return None
    for _ in range(80):
        mid = (lo + hi) / 2
        if total(math.exp(mid)) > step_seconds:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


# --- padding ---------------------------------------------------------------------------------------

_Z95 = 1.6448536269514722  # standard normal 95th percentile
_GRID = 64  # quadrature points for the expected longest sequence of a micro-batch


@lru_cache(maxsize=4096)
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
