"""QLoRA (Dettmers et al. 2023): LoRA over a base stored in 4-bit NF4 with double quantization
(bitsandbytes), prepared with PEFT's ``prepare_model_for_kbit_training``."""
from tuners.methods import lora


def load_kwargs(setup) -> dict:
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.float16 if setup.precision == "fp16" else torch.bfloat16
    if setup.quant_bits == 8:
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_use_double_quant=setup.double_quant,
                                                      bnb_4bit_compute_dtype=compute)}


def prepare(model, setup, options):
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=setup.gradient_checkpointing,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    return get_peft_model(model, lora.lora_config(setup, lora.task_type(model)))


def loss(model, batch, state):
    return model(**batch).loss


def save(model, folder, state):
    model.save_pretrained(folder)
    return folder
