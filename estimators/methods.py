"""What each method trains: trainable parameter counts and which linear layers LoRA targets."""
from __future__ import annotations

from estimators.errors import InputError
from estimators.setup import TrainSetup
from estimators.spec import Linear, ModelSpec

# Short names users type for the usual attention projections, per naming scheme.
_ALIASES = {"q": ("q_proj", "q", "query", "c_attn"), "k": ("k_proj", "k", "key", "c_attn"),
            "v": ("v_proj", "v", "value", "c_attn"), "o": ("o_proj", "o", "attention.output.dense", "attn.c_proj")}


def lora_linears(spec: ModelSpec, targets: str) -> list[Linear]:
    """The linear layers LoRA wraps for ``targets`` (``all-linear`` or a comma list of names).

    ``all-linear`` follows PEFT: every ``nn.Linear`` (GPT-2's ``Conv1D`` too) except the output head.
    transformers 5 stores MoE experts as fused 3-D parameters, not ``nn.Linear``, so they are skipped.
    """
    if targets == "all-linear":
        return [lin for lin in spec.linears if lin.role != "expert" and lin.count]
    chosen, unknown = {}, []
    for raw in str(targets).split(","):
        name = raw.strip()
        if not name:
            continue
        names = _ALIASES.get(name, ()) + (name, f"{name}_proj")
        hits = [lin for lin in spec.linears if lin.count and (lin.name in names or lin.name.split(".")[-1] in names)]
        if not hits:
            unknown.append(name)
        for lin in hits:
            chosen[lin.name] = lin
    if unknown:
        valid = ", ".join(sorted({lin.name for lin in spec.linears if lin.count}))
        raise InputError(f"LoRA target(s) {', '.join(unknown)} not found in {spec.id} "
                         f"(use all-linear or some of: {valid})")
    return list(chosen.values())


def lora_params(spec: ModelSpec, setup: TrainSetup) -> int:
    """LoRA adds A (r × in) and B (out × r) beside each targeted layer (Hu et al. 2021)."""
    r = setup.lora_rank
    return sum(r * (lin.in_features + lin.out_features) * lin.count for lin in lora_linears(spec, setup.lora_targets))


def adapter_params(spec: ModelSpec, setup: TrainSetup) -> int:
    """Two bottleneck adapters per block (after attention and after the MLP; Houlsby et al. 2019):
    down h×m + m, up m×h + h each."""
    h, m = spec.hidden, setup.adapter_size
    return spec.layers * 2 * (2 * h * m + m + h)


def prompt_params(spec: ModelSpec, setup: TrainSetup) -> int:
    """Soft prompt: one hidden-size vector per virtual token; PEFT gives T5's encoder and decoder one each."""
    submodules = 2 if spec.kind == "encoder_decoder" else 1
    return setup.num_virtual_tokens * spec.hidden * submodules


def trainable_params(spec: ModelSpec, setup: TrainSetup) -> int:
    if setup.method in ("full", "distillation"):
        return spec.total_params
    if setup.method in ("lora", "qlora"):
        return lora_params(spec, setup)
    if setup.method == "adapters":
        return adapter_params(spec, setup)
    return prompt_params(spec, setup)


def quantized_params(spec: ModelSpec) -> int:
    """Weights bitsandbytes quantizes for QLoRA: every linear in the blocks (experts included);
    embeddings, norms and the output head stay in higher precision."""
    return spec.linear_params()
