"""Full fine tuning: every weight trains."""


def load_kwargs(setup) -> dict:
    return {}


def prepare(model, setup, options):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def loss(model, batch, state):
    return model(**batch).loss


def save(model, folder, state):
    """A whole model is gigabytes: a trial does not write it (the exported script trains and saves it)."""
    return None
