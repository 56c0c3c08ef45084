"""One tuner module per method (``tuners/methods/<id>.py``), mirroring ``estimators/methods``.

Each exposes ``recipe(settings, spec) -> dict``: what the shared runtime (``tuners/runtime.py``,
which is also the exported ``train.py``) does for this method, as plain JSON —

* ``trains``: ``all`` (every weight) or ``adapter`` (the base frozen);
* ``quantization``: a bitsandbytes config (plain values) or None; ``prepare_kbit``: PEFT's k-bit preparation;
* ``peft``: ``{"config": "LoraConfig", "kwargs": {...}}`` or None; ``adapters``: bottleneck adapter layers or None;
* ``teacher``: a frozen teacher (model, quantization, temperature, alpha) or None;
* ``save``: ``peft``, ``adapters`` or ``model``;
* ``optimizer`` and ``sharding``: how the runtime builds them (from the registries in ``estimators/axes.py``).

Nothing else in the tuners branches on method names.
"""
from estimators.axes import optimizer, sharding
from tuners.methods import adapters, distillation, dora, full, lora, prompt_tuning, qlora

METHODS = {m.ID: m for m in (prompt_tuning, lora, qlora, full, adapters, distillation, dora)}


def recipe(plan, spec) -> dict:
    """The recipe for a ``Plan`` on the architecture ``spec``. When the plan shards parameters (FSDP), a
    4-bit base is stored in the 16-bit compute dtype's words so FSDP can split it like any weight
    (``bnb_4bit_quant_storage``, as Answer.AI's fsdp_qlora does)."""
    out = METHODS[plan.method].recipe(plan.settings, spec)
    h = plan.hardware
    shard = sharding(h.get("sharding", "none"))
    out["optimizer"] = optimizer(plan.settings["optimizer"]).runtime()
    out["sharding"] = shard.runtime()
    q = out.get("quantization") or {}
    if q.get("load_in_4bit") and h.get("num_gpus", 1) > 1 and shard.engine == "fully_shard":
        # Sharded QLoRA is never k-bit "prepared" (TRL's SFTTrainer skips it for QLoRA + FSDP/ZeRO-3): the
        # embeddings, norms and head stay in the compute dtype, one dtype for FSDP to flatten
        # (estimators/memory.py unquantized_bytes).
        out["quantization"] = {**q, "bnb_4bit_quant_storage": q["bnb_4bit_compute_dtype"]}
        out["prepare_kbit"] = False
    return out
