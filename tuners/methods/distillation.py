"""Distillation: the student trains every weight against a frozen teacher (optionally 4/8-bit)."""
from tuners.methods import full, qlora

ID = "distillation"


def recipe(settings, spec) -> dict:
    bits = settings.get("teacher_quant_bits")
    return {**full.recipe(settings, spec), "teacher": {
        "model": settings["teacher"], "temperature": settings["temperature"], "alpha": settings["alpha"],
        "quantization": qlora.quantization(bits, True, settings["precision"]) if bits else None}}
