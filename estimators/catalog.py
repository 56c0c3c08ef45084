"""The model and GPU catalogs (data files under ``estimators/data``) and how ``--model``/``--gpu`` resolve."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from estimators.errors import InputError, read_json
from estimators.spec import ModelSpec, spec_from_config
from estimators.tokenizers import folder_tokenizer_id

DATA = Path(__file__).parent / "data"
GIB = 1024**3


@dataclass(frozen=True)
class GPU:
    """One accelerator: memory, peak dense FLOP/s per precision, bandwidth and a default price."""

    id: str
    name: str
    memory_bytes: int
    """Total device memory as the driver reports it."""
    tflops: dict
    """Dense peak TFLOP/s by precision (``bf16``, ``fp16``, ``fp32``); None where unsupported."""
    bandwidth_gbs: float | None = None
    link_gbs: float | None = None
    """GPU-to-GPU bandwidth per direction (NVLink / Infinity Fabric / PCIe) for multi-GPU collectives."""
    link: str | None = None
    price_per_hour_usd: float | None = None
    price_date: str | None = None
    efficiency: float = 0.35
    """Default model-FLOP utilisation of a fine-tuning step before per-method factors."""
    efficiency_fitted: bool = False
    """The efficiency was fitted on published runs of this GPU (bench/time_accuracy.py), not a default."""
    gemm_share: float | None = None
    """Measured bf16 GEMM rate over the datasheet peak (``gemm_bf16_tflops`` in gpus.json), when known."""
    source: str = ""

    def __post_init__(self):
        if self.memory_bytes <= 0:
            raise InputError(f"GPU '{self.id}': memory must be positive (give e.g. --gpu-memory-gib 24)")
        if not any(v and v > 0 for v in self.tflops.values()):
            raise InputError(f"GPU '{self.id}': peak TFLOP/s must be positive (give e.g. --gpu-tflops 100)")
        if self.price_per_hour_usd is not None and self.price_per_hour_usd < 0:
            raise InputError(f"GPU '{self.id}': price per hour cannot be negative")
        if not 0 < self.efficiency <= 1:
            raise InputError(f"GPU '{self.id}': efficiency must be in (0, 1]")

    def peak_flops(self, precision: str) -> float:
        """Peak FLOP/s for math in ``precision``; falls back to fp16 for bf16 on GPUs without bf16."""
        tf = self.tflops.get(precision) or (self.tflops.get("fp16") if precision == "bf16" else None)
        return (tf or self.tflops.get("fp32") or 0) * 1e12

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "memory_gib": round(self.memory_bytes / GIB, 1),
                "bf16_tflops": self.tflops.get("bf16"), "fp16_tflops": self.tflops.get("fp16"),
                "fp32_tflops": self.tflops.get("fp32"), "bandwidth_gbs": self.bandwidth_gbs,
                "link_gbs": self.link_gbs, "link": self.link,
                "price_per_hour_usd": self.price_per_hour_usd, "price_date": self.price_date,
                "efficiency": self.efficiency, "source": self.source}


def custom_gpu(memory_gib: float, tflops: float, price_per_hour: float | None = None, name: str = "custom") -> GPU:
    """A GPU that is not in the catalog, from its memory, its bf16/fp16 peak TFLOP/s and its price."""
    if memory_gib is None or memory_gib <= 0:
        raise InputError("custom GPU memory must be a positive number of GiB (e.g. --gpu-memory-gib 24)")
    if tflops is None or tflops <= 0:
        raise InputError("custom GPU peak must be a positive number of TFLOP/s (e.g. --gpu-tflops 100)")
    return GPU(id="custom", name=name, memory_bytes=int(memory_gib * GIB),
               tflops={"bf16": tflops, "fp16": tflops, "fp32": tflops / 8}, price_per_hour_usd=price_per_hour,
               source="given by the user (fp32 peak assumed 1/8 of the tensor peak)")


EFFICIENCY_REFERENCE = "a100-80gb"
"""The GPU whose fitted efficiency the others with a measured GEMM rate scale from (gpus.json _about)."""


def derived_efficiency(gpu: GPU, reference: GPU, reference_efficiency: float | None = None) -> float:
    """A GPU's efficiency from the reference's fitted one, scaled by how much of its datasheet peak
    each one's measured bf16 GEMM reaches; the stored default where either measurement is missing or
    the GPU's own efficiency was fitted."""
    ref = reference.efficiency if reference_efficiency is None else reference_efficiency
    if gpu.id == reference.id:
        return ref
    if gpu.efficiency_fitted or gpu.gemm_share is None or reference.gemm_share is None:
        return gpu.efficiency
    return min(0.95, ref * gpu.gemm_share / reference.gemm_share)


@lru_cache(maxsize=1)
def gpus() -> dict[str, GPU]:
    raw = json.loads((DATA / "gpus.json").read_text())
    out = {}
    for g in raw["gpus"]:
        peak, gemm = g.get("bf16_tflops"), g.get("gemm_bf16_tflops")
        out[g["id"]] = GPU(id=g["id"], name=g["name"], memory_bytes=int(g["memory_gib"] * GIB),
                           tflops={k: g.get(f"{k}_tflops") for k in ("bf16", "fp16", "fp32")},
                           bandwidth_gbs=g.get("bandwidth_gbs"), link_gbs=g.get("link_gbs"), link=g.get("link"),
                           price_per_hour_usd=g.get("price_per_hour_usd"),
                           price_date=g.get("price_date"), efficiency=g.get("efficiency", 0.35),
                           efficiency_fitted=bool(g.get("efficiency_fitted")), source=g["source"],
                           gemm_share=gemm / peak if gemm and peak else None)
    ref = out[EFFICIENCY_REFERENCE]
    for gid, gpu in out.items():  # unfitted GPUs with a measured GEMM rate follow the reference's fit
        if not gpu.efficiency_fitted:
            out[gid] = replace(gpu, efficiency=derived_efficiency(gpu, ref))
    return out


def gpu_by_id(gpu_id: str) -> GPU:
    try:
        return gpus()[gpu_id.lower()]
    except KeyError:
        raise InputError(f"unknown GPU '{gpu_id}' (see `tuning-advisor gpus` for ids, "
                         "or give --gpu-memory-gib and --gpu-tflops for a custom one)") from None


@lru_cache(maxsize=1)
def model_configs() -> dict[str, dict]:
    """Raw config dicts of the catalog models, keyed by id (metadata keys still in)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((DATA / "models").glob("*.json"))}


@lru_cache(maxsize=64)
def model_by_id(model_id: str) -> ModelSpec:
    raw = model_configs().get(model_id.lower())
    if raw is None:
        raise InputError(f"unknown model '{model_id}' (see `tuning-advisor models` for ids, "
                         "or give a path to a config.json or a model folder)")
    spec = spec_from_config(raw, model_id.lower(), source=raw.get("_source", ""))
    return replace(spec, tokenizer_family=raw.get("_tokenizer_family"))


def load_model(ref: str) -> ModelSpec:
    """Resolves ``--model``: a catalog id, a path to a ``config.json``, or a local model folder; a model
    folder's tokenizer files give its tokenizer identity (estimators/tokenizers.py)."""
    spec = _spec_for(ref)
    path = Path(ref).expanduser()
    if spec.tokenizer_family is None and path.exists():
        family = folder_tokenizer_id(path if path.is_dir() else path.parent)
        spec = replace(spec, tokenizer_family=family) if family else spec
    return spec


def _spec_for(ref: str) -> ModelSpec:
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise InputError(f"model folder '{ref}' has no config.json (point --model at a Hugging Face model folder)")
    elif not path.is_file():
        return model_by_id(ref)
    return spec_from_config(read_json(path, "config"), model_id=ref, source=str(path))


def catalog_rows() -> list[dict]:
    """One summary row per catalog model, for `tuning-advisor models` and the app."""
    rows = []
    for model_id, raw in model_configs().items():
        spec = model_by_id(model_id)
        rows.append({"id": model_id, "family": spec.family, "kind": spec.kind, "params": spec.total_params,
                     "active_params": spec.active_params, "layers": spec.layers, "hidden": spec.hidden,
                     "vocab": spec.vocab, "tokenizer_family": spec.tokenizer_family, "source": raw.get("_source", "")})
    return sorted(rows, key=lambda r: r["params"])
