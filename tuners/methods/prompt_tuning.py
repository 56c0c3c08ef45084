"""Prompt tuning (Lester et al. 2021) through PEFT: trainable virtual-token embeddings prepended to
every input; the model is frozen. Initialisation: from a text, random, or sampled from the vocabulary."""
from tuners.methods import lora


def load_kwargs(setup) -> dict:
    return {}


def prepare(model, setup, options):
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    init = options.get("prompt_init", "random")
    kwargs = {}
    if init == "text":
        text = options.get("prompt_init_text") or "Answer the request in the expected style and format."
        kwargs = {"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": text,
                  "tokenizer_name_or_path": str(options["tokenizer_path"])}
    elif init == "sample_vocab":
        kwargs = {"prompt_tuning_init": PromptTuningInit.SAMPLE_VOCAB}
    elif init != "random":
        raise ValueError(f"prompt_init must be text, random or sample_vocab (got {init!r})")
    config = PromptTuningConfig(task_type=lora.task_type(model), num_virtual_tokens=setup.num_virtual_tokens, **kwargs)
    return get_peft_model(model, config)


def loss(model, batch, state):
    return model(**batch).loss


def save(model, folder, state):
    model.save_pretrained(folder)
    return folder
