"""One tuner module per method (``tuners/methods/<id>.py``), mirroring ``estimators/methods``.

Each exposes ``recipe(settings, spec) -> dict``: what the shared runtime (``tuners/runtime.py``,
which is also the exported ``train.py``) does for this method, as plain JSON —

* ``trains``: ``all`` (every weight) or ``adapter`` (the base frozen);
* ``quantization``: a bitsandbytes config (plain values) or None; ``prepare_kbit``: PEFT's k-bit preparation;
* ``peft``: ``{"config": "LoraConfig", "kwargs": {...}}`` or None; ``adapters``: bottleneck adapter layers or None;
* ``teacher``: a frozen teacher (model, quantization, temperature, alpha) or None;
* ``save``: ``peft``, ``adapters`` or ``model``.

Nothing else in the tuners branches on method names.
"""
from tuners.methods import adapters, distillation, dora, full, lora, prompt_tuning, qlora

METHODS = {m.ID: m for m in (prompt_tuning, lora, qlora, full, adapters, distillation, dora)}


def recipe(plan, spec) -> dict:
    """The recipe for a ``Plan`` on the architecture ``spec``."""
    return METHODS[plan.method].recipe(plan.settings, spec)
