"""LoRA (Hu et al. 2021) through PEFT: low-rank A·B beside each targeted linear layer, base frozen."""


def targets(setup):
    if setup.lora_targets == "all-linear":
        return "all-linear"
    aliases = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj"}
    return [aliases.get(t.strip(), t.strip()) for t in setup.lora_targets.split(",") if t.strip()]


def lora_config(setup, task_type):
    from peft import LoraConfig

    # alpha = 2r is a common choice (scaling 2); dropout 0 keeps the step deterministic and the memory
    # model exact (dropout would keep a mask per LoRA input).
    return LoraConfig(r=setup.lora_rank, lora_alpha=2 * setup.lora_rank, lora_dropout=0.0,
                      target_modules=targets(setup), task_type=task_type)


def task_type(model):
    return "SEQ_2_SEQ_LM" if getattr(model.config, "is_encoder_decoder", False) else "CAUSAL_LM"


def load_kwargs(setup) -> dict:
    return {}


def prepare(model, setup, options):
    from peft import get_peft_model

    return get_peft_model(model, lora_config(setup, task_type(model)))


def loss(model, batch, state):
    return model(**batch).loss


def save(model, folder, state):
    model.save_pretrained(folder)
    return folder
