"""What a tuning method is, as data: ``MethodSpec`` (one frozen entry per method) and ``Setting``.

Every estimator, the advisor, the tuners, the export and the UI read these entries instead of
branching on method names; adding a method is one file here plus one tuner module
(``tuners/methods/<id>.py``). The shared arithmetic for LoRA-style adapters lives here too.
"""
from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Any, Callable

from estimators.errors import InputError
from estimators.spec import Linear, ModelSpec

FP32 = 4


@dataclass(frozen=True)
class Setting:
    """One setting of a plan: its default, type and bounds, and a line of help."""

    name: str
    default: Any
    help: str
    kind: type = int
    """``int``, ``float``, ``str`` or ``bool``."""
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    optional: bool = False
    """None is allowed (e.g. a teacher stored in the training precision)."""

    def check(self, value) -> str | None:
        """A one-line problem with ``value``, or None when it is acceptable."""
        if value is None:
            return None if self.optional else f"{self.name} is required ({self.help})"
        if self.kind is bool:
            ok = isinstance(value, bool)
        elif self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, str) and bool(value.strip())
        if not ok:
            return f"{self.name} must be {'a finite number' if self.kind is float else 'a ' + self.kind.__name__} (got {value!r})"
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(map(str, self.choices))} (got {value!r})"
        if self.low is not None and value < self.low:
            return f"{self.name} must be at least {self.low:g} (got {value!r})"
        if self.high is not None and value > self.high:
            return f"{self.name} must be at most {self.high:g} (got {value!r})"
        return None


def _zero(*args) -> int:
    return 0


def _no_assumptions(spec, setup) -> list[str]:
    return []


@dataclass(frozen=True)
class MethodSpec:
    """One tuning method as the estimators, the advisor and the UI see it."""

    id: str
    label: str
    """What the UI calls it (Prompt tuning, LoRA, ...)."""
    summary: str
    trains_base: bool
    """Every base weight trains (full tuning, distillation's student); otherwise the base is frozen and
    PEFT-style trainable parameters live in fp32 (PEFT's default)."""
    settings: tuple[Setting, ...]
    """The method's own settings (beyond batch, length, precision... common to all methods)."""
    default_lr: float
    trainable: Callable[[ModelSpec, Any], int]
    """Trainable parameters for a model and a ``TrainSetup``."""
    adapter_linears: Callable[[ModelSpec, Any], list[Linear]] | None = None
    """LoRA-style methods: the linear layers that carry an adapter (Adafactor factoring, CPU
    optimizer temporaries)."""
    extra_activations: Callable[[ModelSpec, Any], int] = _zero
    """Bytes per token per block the method saves for backward beyond the frozen block's own."""
    extra_flops_per_step: Callable[[ModelSpec, Any], float] = _zero
    """FLOPs per micro-batch that do not scale with tokens (e.g. DoRA's weight norms)."""
    added_modules: Callable[[ModelSpec, Any], int] = _zero
    """Small modules the method inserts into the model (LoRA layers, adapters): each adds a few short
    kernels to every pass, which the step-time model counts as launch time (estimators/steptime.py)."""
    keeps_linear_inputs: bool = False
    """The frozen base's matmuls keep their inputs for backward (bitsandbytes' 4/8-bit kernels)."""
    virtual_tokens: Callable[[Any], int] = _zero
    """Tokens the method prepends to every sequence (prompt tuning)."""
    quantized_base: bool = False
    """The base linears are stored in 4 or 8 bits (``quant_bits``)."""
    needs_teacher: bool = False
    compute_16bit: bool = False
    """Runs only with 16-bit compute (no fp32)."""
    encoders: bool = True
    """Applies to encoder-only models (BERT/RoBERTa)."""
    exact_check: bool = True
    """The fake-tensor dry run covers it."""
    efficiency: float = 1.0
    """Share of the GPU's default MFU the method's matmuls reach (estimators/steptime.py). 1.0 for every
    method today: launches of its added modules, dequantization and the optimizer step are terms of
    their own, fitted on published runs (bench/time_accuracy.py)."""
    savers: tuple[tuple[dict, str], ...] = ()
    """Method-specific memory savers the feasibility search may add, in order: (changes, note)."""
    quantized_variant: str | None = None
    """The method that is this one over a 4-bit base (LoRA: QLoRA), which the "what would fit" search
    (estimators/scaling.py) also tries."""
    assumptions: Callable[[ModelSpec, Any], list[str]] = _no_assumptions
    artifact: str = "adapter"
    """What training produces: ``adapter`` (a small file beside the base) or ``model`` (a whole model)."""
    served_as: str = "lora"
    """How the result is served (estimators/serving.py): ``lora`` (merged into the base for one task,
    unmerged adapters batched on one base for several), ``qlora`` (the same over the 4-bit base),
    ``prompt`` (the base plus soft prompts in every request), ``inserted`` (adapter layers that cannot
    merge) or ``model`` (one whole model per task)."""
    citation: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def setting_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.settings)

    def defaults(self) -> dict:
        return {s.name: s.default for s in self.settings}


# --- shared arithmetic for LoRA-style methods -------------------------------------------------

# Short names users type for the usual projections, per naming scheme (Llama-style, T5, BERT, GPT-2's
# fused qkv, GPT-NeoX's query_key_value, Phi's dense), and for the output head and the input embedding.
_ALIASES = {"q": ("q_proj", "q", "query", "c_attn", "query_key_value", "qkv_proj"),
            "k": ("k_proj", "k", "key", "c_attn", "query_key_value", "qkv_proj"),
            "v": ("v_proj", "v", "value", "c_attn", "query_key_value", "qkv_proj"),
            "o": ("o_proj", "o", "attention.output.dense", "attn.c_proj", "attention.dense", "self_attn.dense")}
_IO_ALIASES = {"lm_head": "head", "head": "head", "output": "head", "embed_tokens": "embedding",
               "embeddings": "embedding", "embed": "embedding"}


# The v4 expert projection names PEFT 0.21 re-maps onto the fused expert tensors in the families it
# converts (utils/transformers_weight_conversion.py, _MOE_TARGET_MODULE_MAPPING).
_PEFT_REMAPPED = {"gate_proj", "up_proj", "down_proj", "w1", "w2", "w3"}


def _all_linear(spec: ModelSpec) -> list[Linear]:
    """PEFT's ``all-linear``: every ``nn.Linear`` (GPT-2's ``Conv1D`` too) except the output head.
    transformers 5 stores MoE experts as fused 3-D tensors and routers as custom modules, so they are
    skipped — except in the families PEFT converts from the v4 layout (``spec.lora_experts``): there
    the router and the expert banks are adapted, and the names it re-maps onto the experts no longer
    reach the dense MLPs and shared experts called the same (checked on DeepSeek-V3 and Qwen3-MoE)."""
    if spec.lora_experts:
        return [lin for lin in spec.linears if lin.count and not
                (lin.role == "mlp" and lin.name.rsplit(".", 1)[-1] in _PEFT_REMAPPED)]
    return [lin for lin in spec.linears if lin.count and lin.role not in ("expert", "router")]


def _named(spec: ModelSpec, name: str) -> list[Linear]:
    role = _IO_ALIASES.get(name)
    if role:
        return [lin for lin in spec.io_linears if lin.role == role]
    names = _ALIASES.get(name, ()) + (name, f"{name}_proj")
    pool = spec.linears + spec.io_linears
    return [lin for lin in pool if lin.count and (lin.name in names or lin.name.split(".")[-1] in names)]


def lora_linears(spec: ModelSpec, targets: str) -> list[Linear]:
    """The linear layers LoRA wraps for ``targets``: ``all-linear`` (optionally ``all-linear,lm_head``)
    or a comma list of names (short ``q,v,o``, module names, ``lm_head``, ``embed_tokens``)."""
    return list(_lora_linears(spec, str(targets)))


@lru_cache(maxsize=4096)
def _lora_linears(spec: ModelSpec, targets: str) -> tuple[Linear, ...]:
    """Cached (specs are frozen): the step-time model asks for it several times per estimate."""
    return tuple(_resolve_lora_linears(spec, targets))


def _resolve_lora_linears(spec: ModelSpec, targets: str) -> list[Linear]:
    chosen, unknown = {}, []
    for raw in str(targets).split(","):
        name = raw.strip()
        if not name:
            continue
        hits = _all_linear(spec) if name == "all-linear" else _named(spec, name)
        if not hits:
            unknown.append(name)
        for lin in hits:
            chosen[(lin.name, lin.in_features, lin.out_features)] = lin
    if unknown:
        valid = ", ".join(sorted({lin.name for lin in spec.linears + spec.io_linears if lin.count}))
        raise InputError(f"LoRA target(s) {', '.join(unknown)} not found in {spec.id} "
                         f"(use all-linear, lm_head or some of: {valid})")
    return list(chosen.values())


def lora_target_modules(spec: ModelSpec, targets: str) -> str | list[str]:
    """What PEFT's ``target_modules`` gets for ``targets`` on this architecture: ``all-linear`` as is,
    else the modules' names as suffixes of their paths, so ``q,v`` becomes ``q_proj, v_proj`` on Llama
    and ``c_attn`` on GPT-2, and GPT-2's ``o`` is ``attn.c_proj`` (not the MLP's ``c_proj``). The one
    place target names are resolved (estimate, dry run, trial and export all use it)."""
    if targets == "all-linear":
        return "all-linear"
    names = {lin.name for lin in lora_linears(spec, targets)}
    if "all-linear" in [t.strip() for t in str(targets).split(",")]:  # PEFT takes a list or the shorthand
        names |= {lin.name for lin in _all_linear(spec)}
    return sorted(names)


def lora_rank_of(lin: Linear, r: int) -> int:
    """PEFT multiplies the rank of a fused expert tensor by the projections it fuses (gate + up)."""
    return r * lin.fused


def lora_params(spec: ModelSpec, setup) -> int:
    """LoRA adds A (r × in) and B (out × r) beside each targeted layer (Hu et al. 2021); an embedding
    gets r × vocab and hidden × r. PEFT's expert banks (``ParamWrapper``) hold one A/B pair per expert,
    stacked: (r·E × in) and (out × r·E), which is the same count per expert."""
    return sum(lora_rank_of(lin, setup.lora_rank) * (lin.in_features + lin.out_features) * lin.count
               for lin in lora_linears(spec, setup.lora_targets))


def lora_extra_activations(spec: ModelSpec, setup) -> int:
    """Per token and block. PEFT casts each LoRA layer's input to the adapter's fp32 dtype: in 16-bit
    training that is a new copy per LoRA layer, kept by lora_A; lora_A's output (r) is kept by lora_B.
    In fp32 the cast is a no-op, so layers sharing an input (q/k/v, gate/up) share one tensor.
    ``lora_dropout`` > 0: lora_A keeps the dropped-out copy instead (one per layer, never shared) and
    dropout keeps its mask: 1 byte per element on CUDA (``native_dropout``), on a CPU a noise tensor
    in the input's dtype."""
    d = setup.act_bytes
    dropout = setup.lora_dropout
    mask = 1 if setup.device == "cuda" else FP32
    extra, seen_inputs = 0.0, set()
    for lin in lora_linears(spec, setup.lora_targets):
        share = lin.count / max(spec.layers, 1)  # how many of this layer a block has
        if lin.role == "embedding":  # the input is token ids: only lora_embedding_A's output (r) is kept
            extra += share * FP32 * setup.lora_rank
            continue
        if lin.role in ("expert", "router"):  # folded into the weight (ParamWrapper): no input copy, see
            continue                          # activations.folded_expert_bytes
        if d < FP32 or lin.in_features not in seen_inputs or dropout:
            extra += share * FP32 * lin.in_features
        seen_inputs.add(lin.in_features)
        extra += share * (FP32 * lora_rank_of(lin, setup.lora_rank) + mask * lin.in_features * bool(dropout))
    return int(extra)


def lora_modules(spec: ModelSpec, setup) -> int:
    """LoRA layers the model gets: one per targeted linear."""
    return sum(lin.count for lin in lora_linears(spec, setup.lora_targets))


def lora_assumptions(spec: ModelSpec, setup) -> list[str]:
    out = ["PEFT keeps trainable adapter/prompt parameters in fp32 (grads and optimizer states too)",
           f"LoRA rank {setup.lora_rank} on {setup.lora_targets}"]
    if spec.is_moe and "all-linear" in str(setup.lora_targets):
        out.append("MoE: PEFT 0.21's all-linear adapts the router and every expert's fused gate_up_proj "
                   "(rank 2r) and down_proj (rank r), and folds each bank into a full effective weight per forward "
                   "that is kept for backward (the size of the experts in the training dtype)" if spec.lora_experts else
                   "MoE: PEFT 0.21's all-linear leaves the fused experts and the router frozen for this family")
    return out


def peft_assumptions(spec: ModelSpec, setup) -> list[str]:
    return ["PEFT keeps trainable adapter/prompt parameters in fp32 (grads and optimizer states too)"]


def quantized_params(spec: ModelSpec) -> int:
    """Weights bitsandbytes quantizes: every linear in the blocks (experts included); embeddings,
    norms and the output head stay in higher precision."""
    return spec.linear_params()


LORA_SETTINGS = (
    Setting("lora_rank", 16, "rank r of the low-rank update A·B", int, low=1, high=65536),
    Setting("lora_alpha", None, "LoRA scaling numerator (scale = alpha / r); default 2r", float, low=1e-6, high=1e6,
            optional=True),
    Setting("lora_targets", "all-linear", "all-linear or a comma list of module names (q,v is short for q_proj,v_proj)",
            str),
    Setting("lora_dropout", 0.0, "dropout on each LoRA layer's input (PEFT's lora_dropout; recipes often use "
            "0.05-0.1): one more pass over every adapted input and a mask kept for backward; 0 keeps the step "
            "deterministic", float, low=0.0, high=0.9),
)
# DoRA with dropout makes PEFT run the base layer again on the dropped-out input (not modelled): no dropout.
DORA_SETTINGS = tuple(s for s in LORA_SETTINGS if s.name != "lora_dropout")
