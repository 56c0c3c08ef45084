"""LoRA (Hu et al. 2021): a low-rank update A·B beside each targeted linear layer, base frozen."""
from estimators.methods.base import (LORA_SETTINGS, MethodSpec, lora_assumptions, lora_extra_activations,
                                     lora_linears, lora_modules, lora_params)

SPEC = MethodSpec(
    id="lora", label="LoRA", summary="low-rank adapters beside the frozen base's linear layers",
    trains_base=False, settings=LORA_SETTINGS, default_lr=2e-4, quantized_variant="qlora",
    trainable=lora_params,
    adapter_linears=lambda spec, setup: lora_linears(spec, setup.lora_targets),
    added_modules=lora_modules,
    extra_activations=lora_extra_activations,
    assumptions=lora_assumptions,
    citation="Hu et al. 2021, LoRA: Low-Rank Adaptation of Large Language Models",
)
