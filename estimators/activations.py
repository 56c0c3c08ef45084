"""Activation memory of one training micro-batch: what autograd saves for backward, and the
logits/loss buffers.

The per-layer counts follow the ops transformers 5.x runs for a Llama-style block (RMSNorm computed
in fp32, RoPE, SDPA or eager attention, SwiGLU MLP) and what PyTorch's autograd saves for each op
(it keeps an op's input only when the gradient of another input needs it: a frozen ``Linear`` does
not keep its input). The same accounting was checked against live-tensor measurements of real CPU
steps (``tuners/memtrack.py``; tests/test_memory_measured.py). Reference point for the classic
form: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
which gives ``s·b·h·(34 + 5·a·s/h)`` bytes per GPT layer in fp16 without flash attention.
"""
from __future__ import annotations

from dataclasses import dataclass

from estimators.setup import TrainSetup
from estimators.spec import ModelSpec

FP32 = 4


@dataclass(frozen=True)
class Activations:
    """Bytes for one micro-batch on one GPU."""

    saved: int
    """Everything kept for backward at the end of the forward pass (excluding logits buffers)."""
    per_layer: int
    """Saved by one block without checkpointing (what a recomputed block holds during its backward)."""
    logits_forward: int
    """Logits and loss buffers alive at the end of the forward pass."""
    logits_backward: int
    """Logits, loss and their gradients alive at the start of backward (usually the step's peak)."""
    backward_temporaries: int
    """Gradients flowing through one block's backward: about three MLP-wide tensors (the incoming
    gradient of the product and those of SiLU(gate) and up)."""


def _rms_norm(h: int, d: int, trainable_weight: bool) -> int:
    """HF RMSNorm upcasts to fp32: the fp32 input is kept for pow/mul; with a trainable weight, the
    normalised input (d) and the output (d, kept by the next trainable linear) too."""
    return FP32 * h + (2 * d * h if trainable_weight else 0)


def _layer_norm(h: int, d: int, trainable_weight: bool) -> int:
    """LayerNorm keeps its input (and tiny mean/rstd); the next trainable linear keeps its output."""
    return d * h + (d * h if trainable_weight else 0)


# Activations written as Python arithmetic keep every intermediate: transformers' NewGELUActivation
# ("gelu_new": GPT-2, Phi-1/2) computes 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) and autograd keeps x,
# tanh's output, 0.5·x and (1 + tanh) — four MLP-wide tensors (read off the autograd graph of a GPT-2
# step); fused activations (F.gelu, SiLU) keep their input only.
_ACT_SAVED = {"gelu_new": 4}
# Dropout outside attention, per family: the config key and how many hidden-wide masks a block keeps
# (GPT-2/Phi: after attention and after the MLP; BERT: after both output denses; GPT-NeoX: post-attention
# and post-MLP), plus the embeddings' dropout key. Attention dropout runs inside the fused SDPA kernels.
_DROPOUTS = {"gpt2": ("resid_pdrop", 2, "embd_pdrop"), "phi": ("resid_pdrop", 2, "embd_pdrop"),
             "bert": ("hidden_dropout_prob", 2, "hidden_dropout_prob"),
             "roberta": ("hidden_dropout_prob", 2, "hidden_dropout_prob"), "gpt_neox": ("hidden_dropout", 2, None)}


# Blocks with four RMSNorms (pre and post attention, pre and post feed-forward) instead of two, and
# families that RMS-normalise q and k before RoPE (Qwen3 and Gemma 3 per head, OLMo 2 over the projection).
_NORMS_PER_BLOCK = {"gemma2": 4, "gemma3_text": 4}
_QK_NORM = {"qwen3", "qwen3_moe", "gemma3_text", "olmo2"}


def _activation(spec: ModelSpec) -> str:
    cfg = spec.config
    if spec.family == "t5":  # T5Config: "gated-gelu" means gelu_new (T5 v1.1, Flan-T5), else relu
        return str(cfg.get("dense_act_fn") or ("gelu_new" if cfg.get("feed_forward_proj") == "gated-gelu" else "relu"))
    return str(cfg.get("activation_function") or cfg.get("hidden_act") or cfg.get("hidden_activation")
               or ("gelu_new" if spec.family == "gpt2" else "")).lower()


def _p(spec: ModelSpec, key: str | None) -> float:
    value = spec.config.get(key) if key else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def dropout_masks(spec: ModelSpec, setup: TrainSetup) -> tuple[float, float]:
    """(per block, once per model) bytes per token of dropout masks: a 1-byte bool mask per element on a
    GPU (``native_dropout``); on a CPU the mask is a noise tensor in the activation dtype."""
    per_elem = 1 if setup.device == "cuda" else setup.act_bytes
    if spec.family == "t5":  # after each attention and the FF block, inside the FF (d_ff), embeddings and ends
        if not _p(spec, "dropout_rate"):
            return 0.0, 0.0
        enc = spec.config.get("num_layers", spec.layers // 2)
        dec = spec.layers - enc
        per_block = (enc * (2 * spec.hidden + spec.intermediate) + dec * (3 * spec.hidden + spec.intermediate)) / spec.layers
        return per_elem * per_block, per_elem * 4 * spec.hidden
    key, count, embed_key = _DROPOUTS.get(spec.family, (None, 0, None))
    return (per_elem * count * spec.hidden * (_p(spec, key) > 0), per_elem * spec.hidden * (_p(spec, embed_key) > 0))


def per_token_layer_bytes(spec: ModelSpec, setup: TrainSetup) -> int:
    """Bytes saved for backward by one block, per token of the micro-batch."""
    d = setup.act_bytes
    h, i = spec.hidden, spec.intermediate
    a, kv = spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    s = setup.tokens_per_sequence
    # QLoRA: bitsandbytes' 4-bit matmul keeps its input even though the weight is frozen.
    m = setup.m
    trainable = m.trains_base or m.keeps_linear_inputs
    norm = (_layer_norm if spec.norm == "layer" else _rms_norm)(h, d, m.trains_base)
    if m.keeps_linear_inputs and not m.trains_base:
        norm += d * h  # the 4-bit linears keep the normalised input
    # Attention: q, k, v after RoPE are kept by the kernel; the output by SDPA (with a fp32
    # log-sum-exp per head); a trainable o_proj keeps the re-laid-out copy of that output.
    attn = d * (a + 2 * kv) + (d * a if trainable else 0)
    if spec.family in _QK_NORM:  # each keeps its fp32 input (and, trainable, what its weight needs)
        attn += _rms_norm(a, d, m.trains_base) + _rms_norm(kv, d, m.trains_base)
    if setup.attention == "sdpa":
        attn += d * a + FP32 * spec.heads
    elif spec.family == "gpt_oss":  # eager with sinks: softmax in the activation dtype over s + 1 logits,
        # on k and v repeated to every head (copies) — modeling_gpt_oss.eager_attention_forward
        attn += spec.heads * s * d + 2 * d * (a - kv)
    else:  # eager: fp32 softmax of the s×s scores, and its copy cast back for the matmul with v
        attn += spec.heads * s * (FP32 + (d if d < FP32 else 0))
        if spec.config.get("attn_logit_softcapping"):  # Gemma 2: tanh soft-capping keeps its output
            attn += spec.heads * s * d
    # MLP: SwiGLU keeps gate (for SiLU), SiLU(gate) and up (for the product), and the product for a
    # trainable down_proj. A MoE token goes through k experts.
    width = i * max(spec.experts_per_token, 1)
    saved_by_act = _ACT_SAVED.get(_activation(spec), 1)
    if spec.gated_mlp:  # what act(gate) keeps, its output and up (for the product), the product for down_proj
        mlp = (saved_by_act + 2) * d * width + (d * width if trainable else 0)
    else:  # GELU MLP: what the activation keeps (its input at least), and its output for a trainable fc2
        mlp = saved_by_act * d * width + (d * width if trainable else 0)
    if spec.is_moe:  # transformers 5's grouped experts: each token's k expert outputs, kept by the product
        # with the routing weights; with trainable experts (full, LoRA on the banks) also its k gathered inputs
        adapted = m.adapter_linears is not None and any(lin.role == "expert" for lin in m.adapter_linears(spec, setup))
        mlp += d * h * spec.experts_per_token * (2 if m.trains_base or adapted else 1)
    if spec.kind == "encoder_decoder":  # decoder blocks add cross-attention and its norm (averaged over blocks)
        decoder_share = 1 - spec.config.get("num_layers", spec.layers // 2) / spec.layers
        attn += decoder_share * (attn + norm)
    return int(_NORMS_PER_BLOCK.get(spec.family, 2) * norm + attn + mlp + dropout_masks(spec, setup)[0] + m.extra_activations(spec, setup))


def logits_bytes(spec: ModelSpec, setup: TrainSetup, tokens: int) -> tuple[int, int]:
    """(end of forward, start of backward) bytes of the output head's buffers.

    transformers' causal-LM loss upcasts the logits to fp32 and runs log-softmax + NLL: at the end of
    forward the logits (d) and the log-softmax output (fp32) are alive; at the start of backward the
    log-softmax output, its incoming gradient and the gradient of the logits (fp32 each); the d-typed
    logits are gone by then (measured: three fp32 vocab-sized tensors per token in bf16 and fp32).
    Masked-LM (BERT) and T5 heads call ``CrossEntropyLoss`` on the logits as they are: the same buffers
    in the activation dtype. Large vocabularies (128k–152k) make this the biggest single activation.
    """
    d = setup.act_bytes
    v = spec.vocab
    loss = FP32 if spec.kind == "decoder" else d  # the dtype log-softmax runs in
    forward = tokens * v * (d + loss + (FP32 if d < loss else 0))
    backward = tokens * v * 3 * loss
    if setup.fused_cross_entropy:
        # Liger's FusedLinearCrossEntropy: the head and the loss run chunk by chunk, each chunk about
        # tokens·hidden/vocab rows (its logits ~ one hidden-state tensor, fp32), and the gradient of the
        # hidden states is computed in forward and kept (fp32): no (tokens × vocab) buffer survives.
        forward = backward = 2 * tokens * spec.hidden * FP32
    if spec.config.get("final_logit_softcapping"):  # Gemma 2: cap·tanh(logits/cap) keeps tanh's output
        forward += tokens * v * d
        backward += tokens * v * d
    if setup.m.needs_teacher:
        # The teacher's logits (d) and its softened fp32 distribution, plus the student's softened
        # log-probabilities (fp32) and their gradient for the KL term.
        forward += tokens * v * (d + 2 * FP32)
        backward += tokens * v * (d + 3 * FP32)
    return forward, backward


def position_bias_bytes(spec: ModelSpec, setup: TrainSetup) -> int:
    """T5 under SDPA: the relative position bias is the attention mask, one (heads × s × s) tensor shared
    by the batch, and transformers' ``create_position_bias_mask(...).contiguous()`` gives each layer its
    own: a contiguous copy of the encoder's (permuted) bias, each decoder layer's causal copy; only the
    cross-attention's zeros are shared. The fused kernel keeps each for backward. With checkpointing the
    three biases a stack hands from block to block (encoder, decoder, cross) are kept as block inputs."""
    if spec.kind != "encoder_decoder" or setup.attention != "sdpa":
        return 0
    s = setup.tokens_per_sequence
    copies = 3 if setup.gradient_checkpointing else spec.layers + 1
    return copies * spec.heads * s * s * setup.act_bytes


def folded_expert_bytes(spec: ModelSpec, setup: TrainSetup) -> int:
    """LoRA on fused expert banks (PEFT 0.21's ``ParamWrapper``): each forward folds W + s·B·A into a full
    effective weight (one ``baddbmm`` per bank, in the weight's dtype), which the experts' matmuls keep
    for backward — a copy of every adapted bank, or one layer's with checkpointing (measured: the exact
    check of Qwen3-30B-A3B keeps the size of its routed experts on top of the dense model's activations)."""
    if setup.m.adapter_linears is None:
        return 0
    banks = sum(lin.in_features * lin.out_features * lin.count for lin in setup.m.adapter_linears(spec, setup)
                if lin.role == "expert")
    return int(banks * setup.act_bytes / (spec.layers if setup.gradient_checkpointing else 1))


def activations(spec: ModelSpec, setup: TrainSetup) -> Activations:
    tokens = setup.batch_size * setup.tokens_per_sequence
    d = setup.act_bytes
    per_layer = per_token_layer_bytes(spec, setup) * tokens
    norm_final = (FP32 * spec.hidden + 2 * d * spec.hidden + dropout_masks(spec, setup)[1]) * tokens
    if setup.activation_offloading:
        # torchtune's OffloadActivations: every saved tensor goes to pinned host memory as it is saved and
        # comes back when backward needs it; about two blocks' worth stays on the GPU (the one being
        # copied and the one in use).
        blocks = d * spec.hidden * tokens if setup.gradient_checkpointing else per_layer
        saved = 2 * blocks + norm_final + folded_expert_bytes(spec, setup) + position_bias_bytes(spec, setup)
    elif setup.gradient_checkpointing:
        # Only each block's input (the residual stream) is kept; blocks are recomputed in backward.
        saved = (spec.layers * d * spec.hidden * tokens + norm_final + folded_expert_bytes(spec, setup)
                 + position_bias_bytes(spec, setup))
    else:
        saved = spec.layers * per_layer + norm_final + position_bias_bytes(spec, setup) + folded_expert_bytes(spec, setup)
    fwd, bwd = logits_bytes(spec, setup, tokens)
    temporaries = 3 * d * spec.intermediate * max(spec.experts_per_token, 1) * tokens
    return Activations(saved=int(saved), per_layer=int(per_layer), logits_forward=int(fwd), logits_backward=int(bwd),
                       backward_temporaries=int(temporaries))
