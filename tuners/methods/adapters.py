"""Bottleneck adapter layers (PEFT has none): inserted by the runtime after every sub-layer with one
of these names (Llama/Qwen/Mistral ``self_attn``/``mlp``, GPT-2 ``attn``/``mlp``, T5's blocks)."""
ID = "adapters"
WRAPPED = ["self_attn", "attn", "mlp", "SelfAttention", "DenseReluDense"]


def recipe(settings, spec) -> dict:
    return {"trains": "adapter", "quantization": None, "prepare_kbit": False, "peft": None,
            "adapters": {"size": settings["adapter_size"], "wrapped": WRAPPED}, "teacher": None, "save": "adapters"}
