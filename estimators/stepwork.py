"""The work of one micro-batch, term by term, for the step-time model (``estimators/steptime.py``):
each GEMM as a roofline of its FLOPs and bytes, the memory-bound passes of the blocks and of inserted
modules, the kernels they launch; and the constants of ``data/time_model.json`` they read (values,
physical ranges, which ones a fit may move). Split from steptime.py, which assembles these terms into
a step (overlap, fixed costs, optimizer, communication). Pure and torch-free.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from estimators.catalog import GPU
from estimators.methods.base import lora_linears, lora_rank_of
from estimators.setup import TrainSetup
from estimators.spec import ModelSpec

DATA = Path(__file__).parent / "data"
# Host memory bandwidth assumed for a CPU "device" whose bandwidth was not measured: a dual-channel DDR4 desktop.
DEFAULT_CPU_BANDWIDTH_GBS = 20.0
# Memory bandwidth assumed for a custom GPU given by memory and TFLOP/s only: GDDR6X/HBM2-class (an A10G
# has 600 GB/s, an A100 40 GB 1,555).
DEFAULT_GPU_BANDWIDTH_GBS = 1000.0
# Smooth maximum (a^k + b^k)^(1/k): k=4 is within 19 % of max() when a = b and within 2 % once one is twice
# the other. Used for compute vs launches and for a GEMM's FLOPs vs bytes (the roofline's knee).
_SMOOTH_MAX_POWER = 4
FP32 = 4

def _entry_value(v):
    return v["value"] if isinstance(v, dict) and "value" in v else v

@lru_cache(maxsize=1)
def _document() -> dict:
    return json.loads((DATA / "time_model.json").read_text())

@lru_cache(maxsize=1)
def constants() -> dict:
    """The step-time model's constants by name (``data/time_model.json``; values only). Mutable on
    purpose: ``bench/time_accuracy.py --fit`` varies them in place."""
    return {k: _entry_value(v) for k, v in _document().items() if not k.startswith("_")}

def ranges() -> dict[str, tuple[float, float]]:
    """The physical range written beside each constant that has one: ``name -> (low, high)``."""
    return {k: tuple(v["range"]) for k, v in _document().items() if isinstance(v, dict) and "range" in v}

def fitted_names() -> tuple[str, ...]:
    """Constants ``bench/time_accuracy.py --fit`` may move (each within its range)."""
    return tuple(k for k, v in _document().items() if isinstance(v, dict) and v.get("fitted"))

def _smax(a: float, b: float) -> float:
    k = _SMOOTH_MAX_POWER
    return (a**k + b**k) ** (1 / k) if a or b else 0.0

def _on_gpu(setup: TrainSetup, gpu: GPU) -> bool:
    """A CUDA device (asynchronous kernels) rather than this machine's CPU standing in for one."""
    return setup.device == "cuda" and gpu.id != "cpu"

def _bandwidth(gpu: GPU) -> float:
    gbs = gpu.bandwidth_gbs or (DEFAULT_CPU_BANDWIDTH_GBS if gpu.id == "cpu" else DEFAULT_GPU_BANDWIDTH_GBS)
    return gbs * 1e9

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

def inserted_modules(spec: ModelSpec, setup: TrainSetup) -> tuple[int, int]:
    """(modules wrapping a dense linear or inserted as layers, fused expert banks adapted). PEFT wraps a
    fused expert bank (all experts of one layer) in one ``ParamWrapper``, not one module per expert."""
    if setup.m.adapter_linears is None:
        return setup.m.added_modules(spec, setup), 0
    dense = banks = 0
    for lin in setup.m.adapter_linears(spec, setup):
        if lin.role == "expert":
            banks += max(1, lin.count // max(spec.num_experts, 1))
        else:
            dense += lin.count
    return dense, banks

# --- the GPU's work per micro-batch ---------------------------------------------------------------

def _gemm(flops: float, nbytes: float, rate: float, bw: float) -> float:
    """Roofline of one GEMM: FLOPs at the achieved rate vs bytes at the bandwidth, smoothly."""
    return _smax(flops / rate, nbytes / bw)

def matmul_seconds(spec: ModelSpec, setup: TrainSetup, gpu: GPU, tokens: float, efficiency: float) -> tuple[float, float]:
    """(seconds, FLOPs) of every linear layer's GEMMs in one micro-batch of ``tokens`` tokens, the LoRA
    adapters' thin fp32 GEMMs and the expert-bank folds included. Worked number: Llama-3.1-8B's
    ``q_proj`` at 512 tokens is 2·512·4096·4096 = 17.2 GFLOP on 2·(512·4096·2 + 4096²) = 41.9 MB — on
    an A100 at 0.6 of 312 TFLOP/s 92 µs of math vs 21 µs of bytes (compute-bound); at 16 tokens
    2.9 µs of math vs 16.6 µs of bytes: the weight read sets the time."""
    a = setup.act_bytes
    bw = _bandwidth(gpu)
    rate = gpu.peak_flops(setup.precision) * efficiency
    # PEFT's adapters are fp32 under 16-bit training (autocast_adapter_dtype): without autocast their matmuls
    # run at the fp32 (non-tensor-core, TF32 off by default) peak; 16-bit adapters or autocast use the 16-bit one.
    lora_16 = setup.adapters_16bit or setup.mixed_precision
    lora_rate = (rate if lora_16 else gpu.peak_flops("fp32") * efficiency)
    lora_bytes = setup.act_bytes if setup.adapters_16bit else FP32
    forwards = 2 if setup.gradient_checkpointing else 1
    trains = not setup.frozen_base
    adapted = {}
    if setup.m.adapter_linears is not None:
        adapted = {(lin.name, lin.in_features, lin.out_features): lin for lin in setup.m.adapter_linears(spec, setup)}
    head = [lin for lin in spec.io_linears if lin.role == "head"]
    seconds = flops = 0.0
    for lin in tuple(spec.linears) + tuple(head):
        if not lin.count:
            continue
        k_in, n_out = lin.in_features, lin.out_features
        lora = adapted.get((lin.name, k_in, n_out))
        if lin.role == "expert" and spec.num_experts:
            e, top = spec.num_experts, max(spec.experts_per_token, 1)
            layers = max(1, lin.count // e)
            rows = tokens * top
            touched = e * (1 - (1 - top / e) ** tokens)  # experts that receive at least one token
            f = 2 * rows * k_in * n_out
            b = (touched * k_in * n_out + rows * (k_in + n_out)) * a
            # PEFT's ParamWrapper trains through the folded weight: its weight gradient is computed in full.
            wgrad = trains or lora is not None
            passes = forwards + 1 + wgrad
            seconds += layers * passes * _gemm(f, b, rate, bw)
            flops += layers * passes * f
            if lora is not None:  # the fold: einsum B·A → (E × in × out) in fp32, forward and backward
                r = lora_rank_of(lin, setup.lora_rank)
                fold_f = 2 * e * k_in * n_out * r
                fold_b = e * k_in * n_out * constants()["expert_fold_bytes_per_weight"] * (1 + 0.5 * (forwards - 1))
                seconds += layers * ((forwards + 2) * fold_f / lora_rate + fold_b / bw)
            continue
        f = 2 * tokens * k_in * n_out
        b = (tokens * k_in + k_in * n_out + tokens * n_out) * a
        passes = forwards + 1 + (trains and lin.role != "embedding")
        seconds += lin.count * passes * _gemm(f, b, rate, bw)
        flops += lin.count * passes * f
        if lora is not None:
            # x·A (T×K·K×r) and (xA)·B (T×r·r×N) forward; their input and weight gradients backward.
            r = lora_rank_of(lin, setup.lora_rank)
            fa, fb = 2 * tokens * k_in * r, 2 * tokens * r * n_out
            ba = (tokens * (k_in + r) + k_in * r) * lora_bytes
            bb = (tokens * (r + n_out) + r * n_out) * lora_bytes
            one = _gemm(fa, ba, lora_rate, bw) + _gemm(fb, bb, lora_rate, bw)
            seconds += lin.count * (forwards + 2) * one
            flops += lin.count * (forwards + 2) * (fa + fb)
    return seconds, flops

def recompute_factor(setup: TrainSetup) -> float:
    """Forward passes plus backward (twice a forward's work) over a step without checkpointing: 4/3 when
    checkpointing runs each block's forward again in backward, else 1."""
    return 4 / 3 if setup.gradient_checkpointing else 1

def _dense_adapted(spec: ModelSpec, setup: TrainSetup):
    """The LoRA-style adapted linears that wrap a dense layer (PEFT's ``lora.Linear``): not the expert banks
    or the router (folded into the weight, ``matmul_seconds``) nor an embedding (tiny)."""
    return (lin for lin in setup.m.adapter_linears(spec, setup) if lin.role not in ("expert", "router", "embedding"))

def _elementwise_bytes(spec: ModelSpec, setup: TrainSetup, tokens: float) -> float:
    """Bytes the blocks' elementwise kernels (norms, rotary, activation, residual adds; forward and
    backward) move per micro-batch: a counted number of bytes per token and feature of the residual
    stream and the MLP's hidden layer (the routed experts' for MoE), per block."""
    c = constants()
    features = spec.hidden + spec.intermediate * max(spec.experts_per_token, 1)
    per_token = c["elementwise_bytes_per_feature"] * features * spec.layers * setup.act_bytes / 2
    return tokens * per_token * recompute_factor(setup)

def _lora_bytes(spec: ModelSpec, setup: TrainSetup, tokens: float) -> float:
    """PEFT's per-token elementwise passes around each adapted dense linear (fp32 adapters in 16-bit
    training), counted from ``lora.Linear.forward``: forward casts x to fp32 (read 2, write 4 bytes per
    input feature), scales (read 4, write 4 per output), adds to the bf16 result with promotion (read
    2 + 4, write 4) and casts back (read 4, write 2); backward undoes each. Per input feature
    ``lora_input_bytes``, per output ``lora_output_bytes`` (fp32 training: no casts, fewer bytes)."""
    c = constants()
    if setup.m.adapter_linears is None:
        # Bottleneck adapters: down, activation, up, residual add on hidden-sized tensors, fp32.
        return tokens * module_features(spec, setup) * c["lora_output_bytes"] / 2
    total = 0.0
    for lin in _dense_adapted(spec, setup):
        if setup.adapters_16bit:  # no casts, no promotion: scale, add and their gradients in 16 bits
            total += lin.count * (lin.in_features * c["lora16_input_bytes"] + lin.out_features * c["lora16_output_bytes"])
        else:
            total += lin.count * (lin.in_features * c["lora_input_bytes"] + lin.out_features * c["lora_output_bytes"])
    if setup.act_bytes == FP32 and not setup.adapters_16bit:
        total /= 2  # an fp32 model: no dtype casts, no promotion
    return tokens * total * recompute_factor(setup) + lora_dropout_bytes(spec, setup, tokens)

def lora_dropout_bytes(spec: ModelSpec, setup: TrainSetup, tokens: float) -> float:
    """Bytes ``lora_dropout`` adds per micro-batch: each adapted dense linear drops out its own copy of
    the (cast) input. Forward reads it and writes the result and a mask; backward reads the gradient and
    the mask and writes the gradient (``lora_dropout_bytes`` per input feature with PEFT's fp32 adapters,
    ``lora16_dropout_bytes`` with 16-bit ones). Zero without dropout or without LoRA-style adapters."""
    if not setup.lora_dropout or setup.m.adapter_linears is None:
        return 0.0
    c = constants()
    per_input = c["lora16_dropout_bytes"] if setup.adapters_16bit else c["lora_dropout_bytes"]
    features = sum(lin.count * lin.in_features for lin in _dense_adapted(spec, setup))
    return tokens * features * per_input * recompute_factor(setup)

def _kernels(spec: ModelSpec, setup: TrainSetup) -> float:
    """Kernels one micro-batch issues (forward + backward, the recomputed forward under checkpointing)."""
    c = constants()
    dense, banks = inserted_modules(spec, setup)
    per_module = c["kernels_per_lora_module"] if setup.m.adapter_linears is not None else c["kernels_per_adapter"]
    moe_layers = max((lin.count // max(spec.num_experts, 1) for lin in spec.linears if lin.role == "expert"), default=0)
    if setup.lora_dropout and setup.m.adapter_linears is not None:
        per_module += c["kernels_per_lora_dropout"]
    kernels = (spec.layers * c["kernels_per_layer"] + dense * per_module + banks * c["kernels_per_expert_bank"]
               + moe_layers * c["kernels_per_moe_layer"])
    if setup.compile:
        kernels *= c["compile_fusion"]
    return kernels * recompute_factor(setup)


def attention_flops_per_token(spec: ModelSpec, seq_len: float) -> float:
    """Forward attention score and value matmuls: 2 matmuls × 2 FLOPs × L × (heads·head_dim) × s."""
    return 4 * spec.layers * spec.heads * spec.head_dim * seq_len


def masked_attention_layers(spec: ModelSpec, setup: TrainSetup, length: float) -> int:
    """Decoder layers whose SDPA call receives an explicit mask, so PyTorch cannot dispatch it to the
    flash kernel (which takes no ``attn_mask``) and runs the memory-efficient one over every tile.

    transformers builds that mask (``masking_utils._ignore_causal_mask_sdpa``, 4.49 and 5.x alike) when a
    sliding-window layer sees at least ``sliding_window`` tokens: Phi-3-mini at 8,192 tokens, Mistral
    v0.1, Gemma 2/3's local layers. (It does so for a padded micro-batch too; charging that here made the
    held-out error no better, since litgpt and torchtune pass no mask, so padding is left out.)"""
    if setup.attention != "sdpa" or spec.kind != "decoder":
        return 0
    from estimators.kvcache import window_layer_count  # lazy: kvcache is the serving side's module

    sliding, window = window_layer_count(spec)
    return sliding if sliding and length >= window else 0
