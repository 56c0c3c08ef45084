"""Bottleneck adapter layers (Houlsby et al. 2019) after each block's attention and MLP, base frozen."""
from estimators.methods.base import FP32, MethodSpec, Setting, peft_assumptions


def _trainable(spec, setup) -> int:
    """Two adapters per block: down h×m + m, up m×h + h each."""
    h, m = spec.hidden, setup.adapter_size
    return spec.layers * 2 * (2 * h * m + m + h)


def _activations(spec, setup) -> int:
    """Two fp32 adapters per block: an fp32 copy of the input, the down projection (kept for the
    activation) and the activation (kept by the up projection)."""
    return 2 * (FP32 * spec.hidden + 2 * FP32 * setup.adapter_size)


SPEC = MethodSpec(
    id="adapters", label="Adapter layers", summary="small bottleneck layers inserted in every block",
    trains_base=False,
    settings=(Setting("adapter_size", 64, "bottleneck width of each adapter", int, low=1, high=65536),),
    default_lr=1e-3,
    trainable=_trainable,
    extra_activations=_activations,
    added_modules=lambda spec, setup: 2 * spec.layers,
    assumptions=peft_assumptions,
    served_as="inserted",
    citation="Houlsby et al. 2019, Parameter-Efficient Transfer Learning for NLP",
)
