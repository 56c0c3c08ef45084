"""Prompt tuning through PEFT's ``PromptTuningConfig``: random, text or vocabulary-sampled init."""
ID = "prompt_tuning"


def recipe(settings, spec) -> dict:
    kwargs = {"num_virtual_tokens": settings["num_virtual_tokens"]}
    if settings["prompt_init"] == "text":
        kwargs.update(prompt_tuning_init="TEXT", prompt_tuning_init_text=settings.get("prompt_init_text")
                      or "Answer the request in the expected style and format.")
    elif settings["prompt_init"] == "sample_vocab":
        kwargs["prompt_tuning_init"] = "SAMPLE_VOCAB"
    return {"trains": "adapter", "quantization": None, "prepare_kbit": False,
            "peft": {"config": "PromptTuningConfig", "kwargs": kwargs}, "adapters": None, "teacher": None,
            "save": "peft"}
