"""Full fine-tuning: every weight trains (C6.6: 6N FLOPs per token, the whole model as the artifact)."""
from estimators.methods.base import MethodSpec

SPEC = MethodSpec(
    id="full", label="Full fine-tuning", summary="every weight of the model trains",
    trains_base=True, settings=(), default_lr=1e-4,
    trainable=lambda spec, setup: spec.total_params,
    # Its optimizer step over every weight is a term of its own in the step time
    # (estimators/steptime.py), so its matmuls run at the GPU's efficiency like any method's.
    savers=(({"optimizer": "adamw_8bit"}, "8-bit AdamW"),),
    artifact="model", served_as="model",
)
