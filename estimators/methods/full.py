"""Full fine-tuning: every weight trains (C6.6: 6N FLOPs per token, the whole model as the artifact)."""
from estimators.methods.base import MethodSpec

SPEC = MethodSpec(
    id="full", label="Full fine-tuning", summary="every weight of the model trains",
    trains_base=True, settings=(), default_lr=1e-4,
    trainable=lambda spec, setup: spec.total_params,
    # Full tuning pays for an optimizer step over every weight and moves more memory per FLOP than
    # PEFT methods: 0.8 of the default MFU, so that with 6N vs 4N FLOPs it takes ~1.9x LoRA's time,
    # inside C6.6's observed 2–2.5x once its smaller batches are counted.
    efficiency=0.8,
    savers=(({"optimizer": "adamw_8bit"}, "8-bit AdamW"),),
    artifact="model",
)
