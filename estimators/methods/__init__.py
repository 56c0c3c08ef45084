"""The method registry: one ``MethodSpec`` per tuning method (``estimators/methods/<id>.py``).

Everything else reads ``REGISTRY`` (or ``get``) instead of branching on method names.
"""
from __future__ import annotations

from estimators.errors import InputError
from estimators.methods import adapters, distillation, dora, full, lora, prompt_tuning, qlora
from estimators.methods.base import (MethodSpec, Setting, lora_linears, lora_params, lora_target_modules,  # noqa: F401
                                     quantized_params)  # re-exported: the registry's public helpers
from estimators.spec import ModelSpec

# Display order (the UI's and the CLI's): cheapest to most expensive.
REGISTRY: dict[str, MethodSpec] = {m.SPEC.id: m.SPEC for m in (prompt_tuning, lora, qlora, full, adapters,
                                                                distillation, dora)}
METHOD_IDS = tuple(REGISTRY)


def get(method: str) -> MethodSpec:
    try:
        return REGISTRY[method]
    except KeyError:
        raise InputError(f"unknown method '{method}' (choose from {', '.join(METHOD_IDS)})") from None


def label(method: str) -> str:
    return REGISTRY[method].label if method in REGISTRY else {"rag": "Retrieval (RAG)"}.get(method, method)


def trainable_params(spec: ModelSpec, setup) -> int:
    return get(setup.method).trainable(spec, setup)
