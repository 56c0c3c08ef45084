"""Caveats per method, each shown only when its condition holds (numbers filled in from ``Facts``).
Caveats that need the chosen plan (precision, memory) are added by advisor/recommend.py."""
from __future__ import annotations

from advisor.facts import FULL_THIN_TPP, PROMPT_PARITY, SMALL_DATA, SMALL_MODEL


def _always(c) -> bool:
    return True


CAVEATS = {
    "full": (
        (lambda c: c.spec.kind != "encoder",
         "Risk of catastrophic forgetting of general skills (C3.6): evaluate on general tasks too."),
        (lambda c: c.facts.tpp < FULL_THIN_TPP or c.answers.num_examples < SMALL_DATA,
         "Overfits small data sets such as these {examples} examples / {tokens} tokens (C3.8): hold out a "
         "validation set and stop early."),
        (_always, "Produces and serves a whole new {params} model per task (C2.4)."),
    ),
    "lora": (
        (lambda c: c.answers.domain_distance == "far" or c.answers.task == "code",
         "May fall short of full tuning on this large shift (C6.2): try a higher rank (64-256) if it plateaus."),
        (lambda c: c.spec.is_moe,
         "all-linear LoRA skips the fused expert weights of this MoE model: only attention and routers adapt."),
    ),
    "qlora": (
        (_always, "4-bit quantization of the base can lower quality (C2.1); compare with a LoRA run if you can."),
        (_always, "Steps are slower than LoRA's because the 4-bit weights are dequantized on every pass (C6.4); "
                  "the time shown counts it (more so at small micro-batches)."),
    ),
    "prompt_tuning": (
        (lambda c: c.facts.params < PROMPT_PARITY,
         "Weak below ~10B parameters (this model: {params}) and on tasks needing deep knowledge (C4.5)."),
        (lambda c: SMALL_MODEL < c.facts.params <= PROMPT_PARITY,
         "Saves little memory at this size ({params}): activations through the frozen model dominate (C6.3)."),
    ),
    "adapters": (
        (_always, "Extra layers add inference latency and architectural complexity (C2.6)."),
        (lambda c: c.answers.domain_distance == "far" or c.answers.task == "code",
         "Like LoRA, a low-capacity update may fall short of full tuning on this large shift (C6.2): try a wider "
         "bottleneck (adapter_size 256+) if it plateaus."),
    ),
    "dora": (
        (_always, "Steps are slower than LoRA's: every micro-batch recomputes the adapted weights' norms (C6.9)."),
        (_always, "Slightly more memory than LoRA: magnitude vectors and the extra outputs they keep (C6.9)."),
    ),
    "distillation": ((_always, "Needs the teacher's forward passes: extra compute per step (C2.7)."),),
}


def caveats_for(ctx, method: str) -> list[str]:
    values = ctx.facts.values
    return [text.format(**values) for when, text in CAVEATS.get(method, ()) if when(ctx)]
