"""QLoRA (Dettmers et al. 2023): LoRA over a base stored in 4-bit NF4 (or 8-bit LLM.int8)."""
from estimators.methods.base import (LORA_SETTINGS, MethodSpec, Setting, lora_assumptions, lora_extra_activations,
                                     lora_linears, lora_modules, lora_params)


def _assumptions(spec, setup):
    bits = "NF4" if setup.quant_bits == 4 else "int8"
    dq = " with double quantization" if setup.quant_bits == 4 and setup.double_quant else ""
    return lora_assumptions(spec, setup) + [
        f"base linears in {bits}{dq}; embeddings, norms and head upcast to fp32 by prepare_model_for_kbit_training; "
        "every quantized weight dequantized to 16 bits per forward and backward pass (C6.4; "
        "estimators/steptime.py)"]


SPEC = MethodSpec(
    id="qlora", label="QLoRA", summary="LoRA over a base quantized to 4 bits (or 8)",
    trains_base=False,
    settings=LORA_SETTINGS + (
        Setting("quant_bits", 4, "bits of the quantized base: 4 (NF4) or 8 (LLM.int8)", int, choices=(4, 8)),
        Setting("double_quant", True, "quantize the 4-bit blocks' constants too (QLoRA §3)", bool),
    ),
    default_lr=2e-4,
    trainable=lora_params,
    adapter_linears=lambda spec, setup: lora_linears(spec, setup.lora_targets),
    added_modules=lora_modules,
    extra_activations=lora_extra_activations,
    keeps_linear_inputs=True,  # bitsandbytes' 4-bit matmul keeps its input even though the weight is frozen
    quantized_base=True, compute_16bit=True, exact_check=False,
    assumptions=_assumptions,
    served_as="qlora",
    citation="Dettmers et al. 2023, QLoRA: Efficient Finetuning of Quantized LLMs",
)
