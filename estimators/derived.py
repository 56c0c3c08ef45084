"""Specs for model types without hand-written arithmetic: derived from a meta-device build.

This module stays torch-free. ``tuners/metaspec.py`` builds the model on the meta device, turns it
into the plain dict below and caches it in the data folder; entry points (the CLI, the app) hand
its lookup to :func:`install`, and ``spec_from_config`` calls it for unknown ``model_type``s.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields
from typing import Callable

from estimators.errors import InputError
from estimators.spec import Linear, ModelSpec, ParamCounts

_provider: dict[str, Callable[[dict], dict] | None] = {"lookup": None}
# Keys that do not change the module tree (loading and bookkeeping only).
_IRRELEVANT = ("torch_dtype", "dtype", "transformers_version", "_name_or_path", "architectures_note")


def install(lookup: Callable[[dict], dict] | None) -> None:
    """Sets the function that returns a derived spec dict for a (clean) config; None removes it."""
    _provider["lookup"] = lookup


def config_key(cfg: dict) -> str:
    """Stable key of a config's architecture: the hash of its canonical JSON."""
    relevant = {k: v for k, v in cfg.items() if k not in _IRRELEVANT}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:24]


def to_dict(spec: ModelSpec) -> dict:
    """A spec as plain JSON data (without the config, which is the cache key's input)."""
    out = asdict(spec)
    out.pop("config")
    return out


def from_dict(data: dict, model_id: str, source: str, config: dict) -> ModelSpec:
    known = {f.name for f in fields(ModelSpec)}
    kw = {k: v for k, v in data.items() if k in known and k not in ("id", "source", "config", "params", "linears")}
    return ModelSpec(id=model_id, source=source, config=config, params=ParamCounts(**data["params"]),
                     linears=tuple(Linear(**lin) for lin in data["linears"]), **kw)


def derived_spec(cfg: dict, model_id: str, source: str, built_in: tuple[str, ...]) -> ModelSpec:
    """The derived spec of ``cfg``, through the installed lookup; an :class:`InputError` without one."""
    lookup = _provider["lookup"]
    if lookup is None:
        raise InputError(f"the model_type of '{model_id}' has no built-in arithmetic "
                         f"(built in: {', '.join(built_in)}); the tuning-advisor CLI and app derive it from "
                         "transformers on the meta device — call tuners.metaspec.install() first when using the API")
    return from_dict(lookup(cfg), model_id, source, cfg)
