"""Knowledge distillation (Hinton et al. 2015): a student trains on a frozen teacher's softened outputs."""
from estimators.methods.base import MethodSpec, Setting

SPEC = MethodSpec(
    id="distillation", label="Distillation", summary="a smaller student learns from the model as teacher",
    trains_base=True,
    settings=(
        Setting("teacher", None, "distillation needs a teacher: give --teacher M, a larger model sharing the tokenizer", str),
        Setting("teacher_quant_bits", None, "store the frozen teacher in 4 or 8 bits (default: training precision)",
                int, choices=(4, 8), optional=True),
        Setting("teacher_logits", "online", "online: the teacher runs every step; precomputed: its logits are "
                "computed once before training (no teacher on the GPU)", str, choices=("online", "precomputed")),
        Setting("temperature", 2.0, "softmax temperature of the distillation term", float, low=0.05, high=100),
        Setting("alpha", 0.5, "weight of the teacher term against the label loss", float, low=0, high=1),
    ),
    default_lr=1e-4,
    trainable=lambda spec, setup: spec.total_params,
    needs_teacher=True, exact_check=False,
    savers=(({"optimizer": "adamw_8bit"}, "8-bit AdamW"), ({"teacher_quant_bits": 4}, "teacher stored in 4 bits"),
            ({"teacher_logits": "precomputed"}, "teacher logits precomputed in one pass before training")),
    artifact="model", served_as="model",
    citation="Hinton et al. 2015, Distilling the Knowledge in a Neural Network",
)
