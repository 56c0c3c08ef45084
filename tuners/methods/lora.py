"""LoRA through PEFT: ``LoraConfig`` on the targets the estimator resolves for this architecture."""
from estimators.methods import lora_target_modules

ID = "lora"


def lora_kwargs(settings, spec, use_dora: bool = False) -> dict:
    # Dropout (default 0: a deterministic step) as the plan says; the memory model counts its masks.
    return {"r": settings["lora_rank"], "lora_alpha": settings["lora_alpha"],
            "lora_dropout": float(settings.get("lora_dropout") or 0.0),
            "target_modules": lora_target_modules(spec, settings["lora_targets"]), "use_dora": use_dora}


def recipe(settings, spec) -> dict:
    return {"trains": "adapter", "quantization": None, "prepare_kbit": False,
            "peft": {"config": "LoraConfig", "kwargs": lora_kwargs(settings, spec)}, "adapters": None,
            "teacher": None, "save": "peft"}
