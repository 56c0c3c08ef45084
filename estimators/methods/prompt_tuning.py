"""Prompt tuning (Lester et al. 2021): trainable virtual-token embeddings prepended to every input."""
from estimators.methods.base import MethodSpec, Setting, peft_assumptions


def _trainable(spec, setup) -> int:
    """One hidden-size vector per virtual token; PEFT gives T5's encoder and decoder one each."""
    submodules = 2 if spec.kind == "encoder_decoder" else 1
    return setup.num_virtual_tokens * spec.hidden * submodules


SPEC = MethodSpec(
    id="prompt_tuning", label="Prompt tuning", summary="a learned soft prompt; the model is frozen",
    trains_base=False,
    settings=(
        Setting("num_virtual_tokens", 20, "soft-prompt length in tokens", int, low=1, high=4096),
        Setting("prompt_init", "random", "initialisation: random, text or sample_vocab", str,
                choices=("random", "text", "sample_vocab")),
        Setting("prompt_init_text", None, "the text to initialise from (prompt_init text)", str, optional=True),
    ),
    default_lr=3e-2,
    trainable=_trainable,
    virtual_tokens=lambda setup: setup.num_virtual_tokens,
    assumptions=peft_assumptions,
    served_as="prompt",
    citation="Lester et al. 2021, The Power of Scale for Parameter-Efficient Prompt Tuning",
)
