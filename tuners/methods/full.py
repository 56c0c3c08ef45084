"""Full fine-tuning: every weight trains; the artifact is the whole model."""
ID = "full"


def recipe(settings, spec) -> dict:
    return {"trains": "all", "quantization": None, "prepare_kbit": False, "peft": None, "adapters": None,
            "teacher": None, "save": "model"}
