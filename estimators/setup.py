"""``TrainSetup``: everything about a training run that the estimators need, validated once."""
from __future__ import annotations

from dataclasses import dataclass

from estimators.axes import OPTIMIZERS, SHARDINGS
from estimators.errors import InputError
from estimators.methods import METHOD_IDS, REGISTRY, MethodSpec

METHODS = METHOD_IDS
PRECISIONS = ("bf16", "fp16", "fp32")
ATTENTIONS = ("sdpa", "eager")
DEVICES = ("cuda", "cpu")

# Bytes per element of each storage dtype.
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1, "nf4": 0.5}


@dataclass(frozen=True)
class TrainSetup:
    """One training configuration. Defaults match the CLI's (DESIGN.md contract)."""

    method: str
    """A method id of the registry (``estimators/methods``)."""
    batch_size: int = 1
    """Micro-batch per GPU (sequences in one forward/backward)."""
    seq_len: int = 512
    """Tokens per sequence (before prompt tuning's virtual tokens)."""
    precision: str = "bf16"
    """Storage and compute dtype of the model weights."""
    mixed_precision: bool = False
    """fp32 master weights with autocast to ``precision`` (classic AMP) instead of pure low precision."""
    optimizer: str = "adamw"
    gradient_checkpointing: bool = False
    attention: str = "sdpa"
    """``sdpa`` (flash / memory-efficient kernels: memory linear in length) or ``eager`` (quadratic)."""
    lora_rank: int = 16
    lora_targets: str = "all-linear"
    """``all-linear`` or a comma list of module names (``q,v`` is short for ``q_proj,v_proj``)."""
    quant_bits: int = 4
    """QLoRA base-weight bits: 4 (NF4) or 8 (LLM.int8)."""
    double_quant: bool = True
    """QLoRA double quantization of the 4-bit blocks' constants."""
    num_virtual_tokens: int = 20
    adapter_size: int = 64
    """Bottleneck width of adapter layers."""
    teacher_quant_bits: int | None = None
    """Distillation: store the frozen teacher in 4 or 8 bits (None: the training precision)."""
    teacher_logits: str = "online"
    """Distillation: ``online`` (the teacher runs beside the student every step) or ``precomputed`` (its
    logits are computed in one pass before training and read back: no teacher on the GPU; issue 25)."""
    num_gpus: int = 1
    sharding: str = "none"
    cpu_offload: bool = False
    """Offload optimizer states (and with ZeRO-3/FSDP the parameters) to CPU memory."""
    grad_accum: int = 1
    device: str = "cuda"
    """Where the step runs: ``cuda`` adds the CUDA context and allocator slack as overhead."""
    examples: int | None = None
    tokens_per_example: int | None = None
    """Mean tokens per example (after truncation to ``seq_len``)."""
    epochs: float = 1
    compile: bool = False
    """The model runs under ``torch.compile`` (Inductor fuses the elementwise work between matmuls:
    fewer kernels and less memory traffic; estimators/steptime.py)."""
    fused_cross_entropy: bool = False
    """The loss is a fused, chunked linear + cross-entropy (Liger's FusedLinearCrossEntropy, Apple's Cut
    Cross-Entropy): the full (tokens × vocab) fp32 logits are never materialized, in memory or in time."""
    optimizer_in_backward: bool = False
    """Each parameter is updated in its gradient hook during backward and its gradient freed at once
    (torchtune's ``optimizer_in_bwd``): gradients never all live together. Needs ``grad_accum`` 1."""
    activation_offloading: bool = False
    """Activations saved for backward are copied to pinned host memory in forward and back in backward,
    on a side stream that overlaps with compute (torchtune's ``enable_activation_offloading``)."""
    packing: bool = False
    """Examples are packed into full ``seq_len`` rows (no padding) instead of padded per micro-batch."""
    lora_dropout: float = 0.0
    """Dropout on each LoRA layer's input (PEFT's ``lora_dropout``; litgpt, H2O LLM Studio and many
    published recipes use 0.05-0.1): one more elementwise pass over every adapted input, forward and
    backward, and a mask kept for backward. The trial and the export run what the plan says; the
    default 0 keeps a step deterministic. Not with DoRA (PEFT then runs the base layer twice)."""
    adapters_16bit: bool = False
    """LoRA-style adapters are stored and run in the model's 16-bit dtype (litgpt, torchtune; PEFT under
    autocast computes in 16 bits too) instead of PEFT's fp32 default: a fact about other training stacks
    that published runs state; this project's trial and export keep PEFT's default."""
    length_quantiles: tuple | None = None
    """``(p50, p95, max)`` tokens per example when the data's length spread is known (``max`` may be
    None): micro-batches padded to their longest example cost more than the mean says."""

    def __post_init__(self):
        problems = []

        def choice(name, allowed):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)} (got {getattr(self, name)!r})")

        choice("method", METHODS)
        choice("precision", PRECISIONS)
        choice("optimizer", OPTIMIZERS)
        choice("attention", ATTENTIONS)
        choice("sharding", SHARDINGS)
        choice("device", DEVICES)
        for name in ("batch_size", "seq_len", "lora_rank", "num_virtual_tokens", "adapter_size", "num_gpus",
                     "grad_accum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                problems.append(f"{name} must be a positive integer (got {value!r})")
        for name in ("examples", "tokens_per_example"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                problems.append(f"{name} must be a positive integer (got {value!r})")
        if not isinstance(self.epochs, (int, float)) or self.epochs <= 0:
            problems.append(f"epochs must be positive (got {self.epochs!r})")
        if self.length_quantiles is not None:
            q = self.length_quantiles
            if not (isinstance(q, tuple) and len(q) == 3 and all(
                    v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0) for v in q)
                    and q[0] is not None and q[1] is not None and q[0] <= q[1] and (q[2] is None or q[1] <= q[2])):
                problems.append(f"length_quantiles must be (p50, p95, max) positive token counts in rising order "
                                f"(got {q!r})")
        if (isinstance(self.lora_dropout, bool) or not isinstance(self.lora_dropout, (int, float))
                or not 0 <= self.lora_dropout < 1):
            problems.append(f"lora_dropout must be a probability in [0, 1) (got {self.lora_dropout!r})")
        elif self.lora_dropout and self.method in REGISTRY and "lora_dropout" not in REGISTRY[self.method].setting_names:
            takes = ", ".join(m for m, spec in REGISTRY.items() if "lora_dropout" in spec.setting_names)
            problems.append(f"lora_dropout applies to {takes} (DoRA with dropout makes PEFT run the base layer twice, "
                            f"which is not modelled): use lora_dropout 0 with {self.method}")
        if self.quant_bits not in (4, 8):
            problems.append(f"quant_bits must be 4 or 8 (got {self.quant_bits!r})")
        if self.teacher_logits not in ("online", "precomputed"):
            problems.append(f"teacher_logits must be online or precomputed (got {self.teacher_logits!r})")
        if self.teacher_quant_bits not in (None, 4, 8):
            problems.append(f"teacher_quant_bits must be 4 or 8 (got {self.teacher_quant_bits!r})")
        if self.sharding != "none" and self.num_gpus == 1:
            problems.append(f"sharding '{self.sharding}' needs more than one GPU (raise --num-gpus or use --sharding none)")
        if self.mixed_precision and self.precision == "fp32":
            problems.append("mixed precision autocasts to 16 bits: use --precision bf16 or fp16 with --mixed-precision")
        if self.method in REGISTRY and REGISTRY[self.method].compute_16bit and self.precision == "fp32":
            problems.append(f"{self.method} computes in 16 bits: use --precision bf16 or fp16")
        if self.optimizer_in_backward and self.grad_accum > 1:
            problems.append("optimizer_in_backward updates every parameter in backward: it needs grad_accum 1 "
                            "(raise batch_size instead, or turn optimizer_in_backward off)")
        if not isinstance(self.lora_targets, str) or not all(t.strip() for t in self.lora_targets.split(",")):
            problems.append("lora_targets must be 'all-linear' or a comma list of module names without empty "
                            "entries (e.g. q,v)")
        if problems:
            raise InputError("; ".join(problems))

    @property
    def weight_bytes(self) -> int:
        """Bytes per trainable full-model weight: fp32 masters under mixed precision, else the precision."""
        return 4 if self.mixed_precision else DTYPE_BYTES[self.precision]

    @property
    def act_bytes(self) -> int:
        """Bytes per activation element: the autocast dtype under mixed precision, else the precision."""
        return DTYPE_BYTES[self.precision]

    @property
    def m(self) -> MethodSpec:
        """The method's registry entry."""
        return REGISTRY[self.method]

    @property
    def frozen_base(self) -> bool:
        return not self.m.trains_base

    @property
    def tokens_per_sequence(self) -> int:
        """Sequence length the model actually processes (prompt tuning prepends virtual tokens)."""
        return self.seq_len + self.m.virtual_tokens(self)
