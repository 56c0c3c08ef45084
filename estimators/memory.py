"""Peak memory per GPU of one training step, for every method, as a timeline of the step.

Resident all step: weights, optimizer states (from the first ``step()`` on) and, under mixed
precision, fp32 master weights. Then three moments compete for the peak:

* ``backward_start``: the forward's saved activations plus the logits/loss buffers and their
  first gradients — usually the peak of PEFT methods and of full tuning at long sequences;
* ``backward_end``: all gradients exist while the last block's activations (or, with checkpointing,
  one recomputed block) are still alive — gradients and activations coexist only here;
* ``optimizer``: gradients plus the optimizer's temporaries (``foreach`` AdamW makes a
  parameter-sized temporary) — usually the peak of full tuning at small batches.

``peak_allocated`` is the largest; it stands for ``torch.cuda.max_memory_allocated()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from estimators.activations import FP32, activations
from estimators.axes import optimizer as optimizer_spec
from estimators.axes import sharding as sharding_spec
from estimators.errors import InputError
from estimators.methods import quantized_params, trainable_params
from estimators.methods.base import lora_rank_of
from estimators.setup import DTYPE_BYTES, TrainSetup
from estimators.spec import ModelSpec
from estimators.tokenizers import tokenizers_compatible

GIB = 1024**3

# Optimizer state bytes per trainable parameter, as a multiple of the parameter's own bytes, or fixed.
#   AdamW: exp_avg and exp_avg_sq in the parameter's dtype (torch.optim.AdamW).
#   8-bit AdamW: two uint8 states plus an fp32 absmax per 256-value block (bitsandbytes, Dettmers et al. 2021).
#   SGD with momentum: one buffer in the parameter's dtype.
#   Adafactor: factored second moment, rows + cols per matrix (Shazeer & Stern 2018) — see _adafactor_bytes.
# (the per-optimizer figures live in the optimizer registry, estimators/axes.py)

# bitsandbytes 4-bit storage (Dettmers et al. 2023, QLoRA §3): 0.5 byte per weight, an fp32 absmax per
# 64-weight block (4/64 byte); double quantization stores those absmax in 8 bits plus an fp32 constant
# per 256 blocks: 1/64 + 4/(64·256) byte. LLM.int8: 1 byte per weight plus an fp32 scale per row (small).
_NF4_BYTES = {True: 0.5 + 1 / 64 + 4 / (64 * 256), False: 0.5 + 4 / 64}
_INT8_BYTES = 1.0

# Non-tensor memory of a CUDA process (what nvidia-smi shows beyond max_memory_allocated): the CUDA
# context with cuBLAS/cuDNN workspaces (~0.5–1 GiB on Ampere/Hopper with torch 2.x) and the caching
# allocator's slack between reserved and allocated (typically 5–15 % in steady training).
CUDA_CONTEXT_BYTES = int(0.75 * GIB)
ALLOCATOR_SLACK = 0.10


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per GPU. Components say what is resident; ``peak_allocated`` is their maximum over the step."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    other: int
    """Logits/loss buffers at the peak, optimizer temporaries, autocast weight copies, master weights."""
    peak_allocated: int
    overhead: int
    peak_phase: str
    phases: dict = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    at_peak: dict = field(default_factory=dict)
    """What the peak is made of: weights, gradients, optimizer, activations, other (sums to the peak)."""

    @property
    def total(self) -> int:
        return self.peak_allocated + self.overhead

    def to_dict(self) -> dict:
        return {"weights": self.weights, "gradients": self.gradients, "optimizer": self.optimizer,
                "activations": self.activations, "other": self.other, "peak_allocated": self.peak_allocated,
                "overhead": self.overhead, "total": self.total, "cpu_ram": self.detail.get("cpu_ram"),
                "peak_phase": self.peak_phase,
                "phases": dict(self.phases), "at_peak": dict(self.at_peak), "detail": dict(self.detail)}


def _param_bytes(setup: TrainSetup) -> int:
    """Bytes of one trainable parameter: PEFT keeps adapters (LoRA, prompts, our adapters) in fp32."""
    return FP32 if setup.frozen_base else setup.weight_bytes


def _optimizer_state_bytes(spec: ModelSpec, setup: TrainSetup, trainable: int) -> int:
    pb = _param_bytes(setup)
    o = optimizer_spec(setup.optimizer)
    if o.state_bytes is not None:
        return int(trainable * o.state_bytes)
    if o.factored:
        return _adafactor_bytes(spec, setup, trainable, pb)
    return int(trainable * pb * o.state_copies)


def _adafactor_bytes(spec: ModelSpec, setup: TrainSetup, trainable: int, pb: int) -> int:
    """Adafactor without momentum keeps rows + cols per weight matrix and a full state per vector."""
    m = setup.m
    if m.trains_base:
        factored = sum((lin.in_features + lin.out_features) * lin.count for lin in spec.linears)
        factored += 2 * (spec.vocab + spec.hidden)  # embeddings and head
        dense_vectors = spec.params.norms
        return (factored + dense_vectors) * pb
    if m.adapter_linears is not None:  # A is r×in, B is out×r: factored to r+in and out+r
        linears = m.adapter_linears(spec, setup)
        rank = {lin: lora_rank_of(lin, setup.lora_rank) for lin in linears}  # fused expert banks: r × projections
        factored = sum((lin.in_features + lin.out_features + 2 * rank[lin]) * lin.count for lin in linears)
        lora = sum(rank[lin] * (lin.in_features + lin.out_features) * lin.count for lin in linears)
        return (factored + trainable - lora) * pb  # vectors beside the matrices (DoRA's magnitudes) stay whole
    return trainable * pb  # prompt vectors and adapter vectors are small: keep them whole


def shards_parameters(setup: TrainSetup) -> bool:
    """ZeRO-3 / FSDP full shard over more than one GPU: each rank keeps 1/n of every parameter."""
    return setup.num_gpus > 1 and sharding_spec(setup.sharding).shards_parameters


def unquantized_bytes(setup: TrainSetup) -> int:
    """Bytes per non-quantized weight (embeddings, norms, head) of a QLoRA base. Alone, peft's
    prepare_model_for_kbit_training upcasts them to fp32. Sharded (FSDP / ZeRO-3) it is never called:
    the whole model, 4-bit words included (bnb_4bit_quant_storage), stays in the 16-bit compute dtype so
    FSDP can flatten and split it (TRL's SFTTrainer: "one should never call ... prepare_model_for_kbit_training
    when doing QLoRA + FSDP / DS-Zero3"; Answer.AI's fsdp_qlora train.py likewise)."""
    return DTYPE_BYTES[setup.precision] if shards_parameters(setup) and setup.quant_bits == 4 else FP32


def base_weight_bytes(spec: ModelSpec, setup: TrainSetup) -> int:
    """Storage of a frozen base model."""
    if not setup.m.quantized_base:
        return spec.total_params * setup.weight_bytes
    q = quantized_params(spec)
    per = _NF4_BYTES[setup.double_quant] if setup.quant_bits == 4 else _INT8_BYTES
    return int(q * per) + (spec.total_params - q) * unquantized_bytes(setup)


def _teacher_bytes(teacher: ModelSpec, setup: TrainSetup) -> int:
    if setup.teacher_logits == "precomputed":  # issue 25: logits read from disk, no teacher resident
        return 0
    if setup.teacher_quant_bits == 4:
        q = quantized_params(teacher)
        return int(q * _NF4_BYTES[True]) + (teacher.total_params - q) * DTYPE_BYTES[setup.precision]
    if setup.teacher_quant_bits == 8:
        q = quantized_params(teacher)
        return int(q * _INT8_BYTES) + (teacher.total_params - q) * DTYPE_BYTES[setup.precision]
    return teacher.total_params * DTYPE_BYTES[setup.precision]


# Host memory of one training process beyond what it offloads: the Python interpreter, torch with its
# CUDA libraries and the host side of the CUDA context (typically 2–3 GiB resident per GPU process).
PROCESS_HOST_BYTES = int(2.5 * GIB)
# from_pretrained reads safetensors shards one at a time (HF shards are ~5 GB): the load peak on the host.
LOAD_BUFFER_BYTES = 5 * 10**9
GPUS_PER_NODE = 8


def host_bytes(spec: ModelSpec, setup: TrainSetup, detail: dict, sharded_weights: int) -> int:
    """Host (CPU) memory one node needs: per GPU process its runtime and what it offloads, plus one
    shard of weights being loaded. A node holds up to 8 GPUs."""
    per_node = min(setup.num_gpus, GPUS_PER_NODE)
    offloaded = sum(detail.get(k, 0) for k in ("offloaded_optimizer", "offloaded_parameters", "offloaded_gradients"))
    return per_node * (PROCESS_HOST_BYTES + offloaded) + min(sharded_weights, LOAD_BUFFER_BYTES)


def estimate_memory(spec: ModelSpec, setup: TrainSetup, teacher: ModelSpec | None = None) -> MemoryBreakdown:
    """Per-GPU memory of one steady-state training step (optimizer states already created)."""
    m = setup.m
    if m.needs_teacher and teacher is None:
        raise InputError(f"{m.id} needs a teacher model: give --teacher M (a larger model with the same tokenizer)")
    if m.needs_teacher and not tokenizers_compatible(teacher, spec):
        raise InputError(f"teacher {teacher.id} (tokenizer {teacher.tokenizer_family or teacher.vocab}) and student "
                         f"{spec.id} (tokenizer {spec.tokenizer_family or spec.vocab}) must share a tokenizer: "
                         "choose a teacher from the student's family")
    if not m.encoders and spec.kind == "encoder":
        raise InputError(f"{m.label} needs a generative model; {spec.id} is an encoder (use lora or full)")
    n = setup.num_gpus
    trainable = trainable_params(spec, setup)
    pb = _param_bytes(setup)
    detail: dict[str, int] = {"trainable_params": trainable}

    # Weights resident on each GPU.
    if setup.frozen_base:
        weights = base_weight_bytes(spec, setup) + trainable * pb
        sharded_weights = base_weight_bytes(spec, setup)
    else:
        weights = spec.total_params * setup.weight_bytes
        sharded_weights = weights
    if m.needs_teacher:
        detail["teacher_weights"] = _teacher_bytes(teacher, setup)
        weights += detail["teacher_weights"]
    gradients = trainable * pb
    optimizer = _optimizer_state_bytes(spec, setup, trainable)
    # Mixed precision keeps fp32 weights as the masters (counted in weights); autocast keeps a 16-bit
    # copy of every weight used in the forward until its backward (torch.autocast's cast cache).
    cast_cache = spec.total_params * DTYPE_BYTES[setup.precision] if setup.mixed_precision else 0

    # Multi-GPU: DDP replicates everything (C6.8) and buckets gradients in a second copy; ZeRO-1 shards
    # optimizer states, ZeRO-2 also gradients, ZeRO-3/FSDP also parameters (Rajbhandari et al. 2020).
    shard = sharding_spec(setup.sharding)
    if n > 1:
        if shard.shards_optimizer and not shard.shards_parameters and setup.mixed_precision and not setup.frozen_base:
            # DeepSpeed's ZeRO-1/2 under bf16/fp16 runs the model in 16 bits and keeps the fp32 master weights
            # with the optimizer states, partitioned (Rajbhandari et al. 2020 §3: 2 + 2 + 12/n bytes per
            # parameter); no autocast copy. The 16-bit gradients are what is reduced.
            masters = spec.total_params * FP32
            weights = weights - masters + spec.total_params * DTYPE_BYTES[setup.precision]
            sharded_weights = spec.total_params * DTYPE_BYTES[setup.precision]
            optimizer += masters
            gradients = trainable * DTYPE_BYTES[setup.precision]
            detail["master_weights"] = masters // n
            cast_cache = 0
        if not shard.shards_optimizer:
            detail["ddp_buckets"] = gradients
        if shard.shards_optimizer:
            optimizer //= n
        if shard.shards_gradients:
            gradients //= n
        # ZeRO-2 (DeepSpeed, Rajbhandari et al. 2020 §5): every rank keeps the whole 16-bit model; only
        # gradients (reduce-scattered into each rank's partition) and optimizer states are sharded. The
        # CPU trial runs zero2 as FSDP2 with reshard_after_forward=False, which holds each rank's 1/n
        # parameter shard beside the gathered copy from forward to backward: 1/n of the weights more
        # than this (named in the assumptions).
        if shard.shards_parameters:
            # FSDP2 (fully_shard per block, then the root): the block in use is all-gathered and the next
            # one prefetched, each through a flat all-gather buffer it is copied out of: 4 block-sized
            # buffers at the backward start. The root (embeddings, head) is not resharded after forward:
            # its unsharded parameters and their all-gather buffer stay (torch 2.13, measured on 2 CPU
            # ranks over gloo at 4M and 60M parameters: tests/test_sharded.py, bench/accuracy.py --only sharded).
            # Mixed precision under FSDP casts at the all-gather (FSDP2's MixedPrecisionPolicy, DeepSpeed's
            # bf16 ZeRO-3): what is gathered is 16-bit, and there is no other copy (no autocast cache).
            # A sharded QLoRA base is 16-bit throughout (unquantized_bytes): its 4-bit words are gathered as
            # stored, so the gathered bytes equal the stored ones.
            per = unquantized_bytes(setup) if setup.m.quantized_base else DTYPE_BYTES[setup.precision]
            scale = 1.0 if setup.m.quantized_base else per / setup.weight_bytes
            root = min((spec.params.embeddings + spec.params.lm_head) * per, int(sharded_weights * scale))
            block = (int(sharded_weights * scale) - root) // max(spec.layers, 1)
            gathered = 2 * root - root // n + 4 * block
            weights = weights - sharded_weights + sharded_weights // n + gathered
            detail["gathered_block"] = gathered
            cast_cache = 0
    if setup.cpu_offload:
        # Offload moves the optimizer states to host memory; under ZeRO-3/FSDP also each GPU's parameter
        # shard and its gradients (FSDP's CPUOffloadPolicy, DeepSpeed's offload_param): only the gathered
        # blocks stay on the GPU.
        detail["offloaded_optimizer"] = optimizer
        optimizer = 0
        if n > 1 and shard.shards_parameters:
            detail["offloaded_parameters"] = sharded_weights // n
            detail["offloaded_gradients"] = gradients
            weights -= sharded_weights // n
            gradients = 0
    detail["cpu_ram"] = host_bytes(spec, setup, detail, sharded_weights)

    act = activations(spec, setup)
    # Optimizer temporaries during step(). On CUDA torch defaults to the foreach implementation: one
    # temporary the size of the trainable set (e.g. sqrt(exp_avg_sq) for AdamW). On CPU it runs
    # tensor by tensor: about two temporaries of the largest trainable tensor (measured, torch 2.13).
    if setup.cpu_offload:
        opt_temp = 0
    elif setup.device == "cuda":
        opt_temp = gradients
    else:
        adapted = m.adapter_linears(spec, setup) if m.adapter_linears is not None else []
        largest = spec.largest_tensor if not setup.frozen_base else max(
            [lin.in_features for lin in adapted] + [spec.hidden]) * setup.lora_rank
        opt_temp = min(2 * largest * pb, gradients)
    held_grads = gradients if setup.grad_accum > 1 else 0  # accumulated across micro-batches
    # Gradients that exist before the first block's backward: all but that block's and the embeddings'
    # (measured: the head's gradient comes after the loss buffers are freed, so it is not added above).
    head_grad = spec.vocab * spec.hidden * pb if not setup.frozen_base else 0
    if setup.frozen_base:
        grads_at_end = gradients
    else:
        block = (spec.total_params - spec.params.embeddings - spec.params.lm_head) // max(spec.layers, 1)
        fsdp = n > 1 and shard.shards_gradients
        grads_at_end = max(gradients - (block + spec.params.embeddings) * pb // (n if fsdp else 1), 0)
        if fsdp and not setup.cpu_offload:
            # FSDP2 reduce-scatters the root module's gradients (embeddings, head) only when the whole
            # backward ends: until then they exist unsharded (measured, 2 CPU ranks, tests/test_sharded.py).
            root = (spec.params.embeddings + spec.params.lm_head) * pb
            grads_at_end += root - root // n
            detail["unsharded_root_gradients"] = root - root // n
    # Each moment as its parts: what is resident, which gradients exist, activations, and the rest.
    optim = optimizer + detail.get("ddp_buckets", 0)
    moments = {
        "backward_start": {"gradients": held_grads, "activations": act.saved,
                           "other": cast_cache + act.logits_backward},
        # Last block's backward: (nearly) all gradients exist; that block's activations (recomputed
        # under checkpointing) and its backward temporaries are alive.
        "backward_end": {"gradients": max(grads_at_end, held_grads), "activations": 0,
                         "other": cast_cache + act.backward_temporaries
                         + (act.per_layer if setup.gradient_checkpointing else act.per_layer // 2)},
        "optimizer": {"gradients": gradients, "activations": 0, "other": opt_temp},
    }
    if setup.optimizer_in_backward:
        # Each parameter is updated in its gradient hook and its gradient freed at once (torchtune's
        # optimizer_in_bwd): at most about one tensor's gradient and its update temporaries exist.
        one = (spec.largest_tensor if not setup.frozen_base else max(
            [lin.in_features * setup.lora_rank for lin in (m.adapter_linears(spec, setup) if m.adapter_linears
                                                             is not None else [])] + [spec.hidden])) * pb
        moments["backward_end"]["gradients"] = min(one, gradients)
        moments["optimizer"] = {"gradients": min(one, gradients), "activations": 0, "other": min(2 * one, gradients)}
    if setup.gradient_checkpointing:
        # First recomputed block: every block's checkpointed input is still kept, plus one block's
        # full activations and its backward temporaries.
        moments["backward_recompute"] = {"gradients": held_grads, "activations": act.saved,
                                         "other": cast_cache + head_grad + act.per_layer + act.backward_temporaries}
    for parts in moments.values():
        parts.update(weights=weights, optimizer=optim)
    phases = {name: sum(parts.values()) for name, parts in moments.items()}
    phase = max(phases, key=phases.get)
    peak = phases[phase]
    at_peak = {k: int(moments[phase][k]) for k in ("weights", "gradients", "optimizer", "activations", "other")}
    other = at_peak["other"]
    detail.update({"logits_backward": act.logits_backward, "saved_activations": act.saved,
                   "per_layer_activations": act.per_layer, "optimizer_temporary": opt_temp,
                   "autocast_cache": cast_cache})
    overhead = (CUDA_CONTEXT_BYTES + int(ALLOCATOR_SLACK * peak)) if setup.device == "cuda" else 0
    return MemoryBreakdown(weights=int(weights), gradients=int(gradients), optimizer=int(optimizer),
                           activations=int(act.saved), other=int(other), peak_allocated=int(peak),
                           overhead=overhead, peak_phase=phase, phases={k: int(v) for k, v in phases.items()},
                           detail={k: int(v) for k, v in detail.items()}, at_peak=at_peak)
