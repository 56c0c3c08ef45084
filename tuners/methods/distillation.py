"""Knowledge distillation (Hinton et al. 2015), response-based: a trainable student learns from a
frozen teacher's softened output distribution. Both share a tokenizer (C6.7).

loss = (1 − α)·CE(student, labels) + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T))
on the tokens that carry labels. T and α are settings (defaults T = 2, α = 0.5).
"""

from tuners.methods.full import load_kwargs, prepare  # noqa: F401  (the student trains like a full fine-tune)


def loss(model, batch, state):
    import torch
    import torch.nn.functional as F

    teacher = state["teacher"]
    temperature = float(state["options"].get("temperature", 2.0))
    alpha = float(state["options"].get("alpha", 0.5))
    out = model(**batch)
    with torch.no_grad():
        t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    mask = batch["labels"] != -100
    s = out.logits[mask].float() / temperature
    t = t_logits[mask].float() / temperature
    kl = F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), log_target=True, reduction="batchmean")
    return (1 - alpha) * out.loss + alpha * temperature**2 * kl


def save(model, folder, state):
    return None  # a whole student model: the exported script trains and saves it
