"""DoRA through PEFT: LoRA's recipe with ``use_dora=True`` (a trainable magnitude per output)."""
from tuners.methods import lora

ID = "dora"


def recipe(settings, spec) -> dict:
    return {**lora.recipe(settings, spec), "peft": {"config": "LoraConfig", "kwargs": lora.lora_kwargs(settings, spec, True)}}
