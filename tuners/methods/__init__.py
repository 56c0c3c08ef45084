"""One module per tuning method, same shape:

* ``load_kwargs(setup) -> dict``: extra ``from_pretrained`` arguments (QLoRA's 4-bit config);
* ``prepare(model, setup, options) -> model``: the trainable model, base frozen where the method says;
* ``loss(model, batch, state) -> tensor``: the training loss of one batch (distillation mixes in the teacher);
* ``save(model, folder, state)``: the artifact (PEFT's format where PEFT has the method).
"""
from tuners.methods import adapters, distillation, full, lora, prompt_tuning, qlora

METHODS = {"full": full, "lora": lora, "qlora": qlora, "prompt_tuning": prompt_tuning, "adapters": adapters,
           "distillation": distillation}


def default_loss(model, batch, state):
    return model(**batch).loss
