"""QLoRA: LoRA over a base bitsandbytes stores in 4-bit NF4 (or 8-bit), prepared with PEFT's
``prepare_model_for_kbit_training`` (which also enables checkpointing when the plan asks)."""
from tuners.methods import lora

ID = "qlora"


def quantization(bits: int, double_quant: bool, precision: str) -> dict:
    if bits == 8:
        return {"load_in_8bit": True}
    return {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": bool(double_quant),
            "bnb_4bit_compute_dtype": "float16" if precision == "fp16" else "bfloat16"}


def recipe(settings, spec) -> dict:
    return {**lora.recipe(settings, spec), "prepare_kbit": True,
            "quantization": quantization(settings["quant_bits"], settings["double_quant"], settings["precision"])}
