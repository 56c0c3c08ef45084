"""What it costs to host a tuned model: weights as served per method, KV cache, decode and prefill
speed, the GPUs a traffic needs and their price per month (pure; no torch, no I/O but the constants).

The model, per replica (one tensor-parallel group of ``tp`` GPUs serving one set of weights):

- **Decode** is memory-bound at the batches serving uses: every step reads the weights once and each
  running sequence's KV cache (Pope et al. 2022, "Efficiently Scaling Transformer Inference";
  Databricks/MosaicML 2023, "LLM Inference Performance Engineering", MBU). Step time =
  ``max(bytes / (bandwidth × η), FLOPs / (peak × mfu)) + layers × t_layer + t_step`` (+ tensor-parallel
  all-reduces, + the method's own terms), with η, t_layer and t_step (scheduler, sampling, host
  work per step) fitted on published vLLM runs (bench/serving_accuracy.py). Llama-3.1-8B on one H100 at batch 1: 15.0 GB of weights read per
  token (the untied input embedding is a lookup, not a read) / (3,350 GB/s × 0.90) = 5.0 ms, + 32 ×
  55 µs + 0.3 ms = 7.0 ms per token, ~140 tokens/s (published: 6.5 ms).
- **Prefill** is compute-bound: ``2 × active params × prompt tokens`` (+ attention) at ``prefill_mfu``
  of the dense peak (Kaplan et al. 2020's 2N forward FLOPs per token).
- Under continuous batching (Yu et al. 2022, Orca; vLLM's chunked prefill, Agrawal et al. 2024,
  Sarathi-Serve) new requests' prompts ride along in the decode steps: ``(b − 1) / tokens_out``
  prompts per step, which share the step's weight read and add their compute (a step that takes a
  prompt is compute-bound, the others memory-bound: the time per output token averages the two).
- **GPUs**: the smallest tensor-parallel degree whose memory (``gpu_memory_utilization`` of it)
  holds the weights and at least one full-length sequence; the batch is capped by the KV cache, by
  ``max_num_seqs`` and by a time-per-output-token target; replicas cover the peak concurrency (Little's
  law: concurrency = arrival rate × time in the system). Several small whole models share a GPU when
  they fit together. $/month = GPUs × price per GPU-hour × 730 h.

Weights as served, per method (the registry's ``served_as``; C2.4, C3.6):
``lora`` — one task: merged into the base (``merge_and_unload``: the base's size and speed); K tasks:
the base plus K unmerged adapters batched together as vLLM's multi-LoRA and S-LoRA do (Sheng et al.
2023), paying ``multi_lora_penalty`` per step and reading the adapters of the batch's distinct tasks;
``qlora`` — one task: merged into a 16-bit base (the adapter dequantized onto bf16 weights); K tasks:
the 4-bit NF4 base kept (QLoRA §3: 4.127 bits per weight with double quantization) plus K adapters;
``prompt`` — the base plus K soft prompts, whose virtual tokens join every request's prefill and KV
cache (Lester et al. 2021); ``inserted`` — adapter layers cannot merge: the base plus K adapter sets,
each layer's adapters adding kernels to every step (C2.6); ``model`` — one whole model per task (full
tuning; distillation's student).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from estimators.catalog import GIB, GPU
from estimators.errors import InputError
from estimators.kvcache import KVCache, kv_cache
from estimators.methods import trainable_params
from estimators.spec import ModelSpec

DATA = Path(__file__).parent / "data"
NF4_DQ_BYTES = 4.127 / 8
"""NF4 with double quantization: 4 bits plus 0.127 bits of constants per weight (Dettmers et al. 2023, §3)."""
MAX_TP = 64
SECONDS_PER_DAY = 86_400


@lru_cache(maxsize=1)
def constants() -> dict:
    """The serving model's constants with their sources (``data/serving_model.json``)."""
    return json.loads((DATA / "serving_model.json").read_text())


@dataclass(frozen=True)
class Traffic:
    """What the hosted model must serve (all per the busy hour unless said otherwise)."""

    requests_per_day: float
    tokens_in: int = 500
    """Prompt tokens per request."""
    tokens_out: int = 200
    """Generated tokens per request."""
    peak_concurrency: int | None = None
    """Requests in flight at the peak (None: from the daily rate × ``peak_to_mean`` and Little's law)."""
    tpot_ms: float | None = None
    """Target p50 time per output token in milliseconds (None: no latency target)."""

    def __post_init__(self):
        problems = traffic_problems(self.requests_per_day, self.tokens_in, self.tokens_out, self.peak_concurrency,
                                    self.tpot_ms)
        if problems:
            raise InputError("invalid traffic: " + "; ".join(problems))


TRAFFIC_LIMITS = {"requests_per_day": 1e12, "tokens_in": 10_000_000, "tokens_out": 10_000_000,
                  "peak_concurrency": 100_000_000, "tpot_ms": 60_000}


def traffic_problems(requests_per_day, tokens_in, tokens_out, peak_concurrency=None, tpot_ms=None) -> list[str]:
    """Every problem with the traffic figures, one line each (the fix named in the bound)."""
    out = []
    for name, value, whole in (("requests_per_day", requests_per_day, False), ("tokens_in", tokens_in, True),
                               ("tokens_out", tokens_out, True), ("peak_concurrency", peak_concurrency, True),
                               ("tpot_ms", tpot_ms, False)):
        if value is None and name in ("peak_concurrency", "tpot_ms"):
            continue
        high = TRAFFIC_LIMITS[name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if whole and not (number and isinstance(value, int) and 1 <= value <= high):
            out.append(f"{name} must be a whole number from 1 to {high:,.0f} (got {value!r})")
        elif not whole and (not number or not math.isfinite(value) or not 0 < value <= high):
            out.append(f"{name} must be a number above 0 and at most {high:,.0f} (got {value!r})")
    return out


@dataclass(frozen=True)
class Served:
    """The weights a method's result is served with, for ``tasks`` tuned variants."""

    kind: str
    tasks: int
    deployments: int
    """Separate weight sets, each batching only its own requests (K whole models) — else 1."""
    weights_bytes: int
    """Resident weights of one deployment (a shared base counts its adapters on the GPU below)."""
    read_params: float
    """Weights read per decode step at batch 1 (active parameters, input embedding excluded)."""
    bytes_per_param: float
    adapter_bytes: int = 0
    """One task's adapter as served (16-bit), read per step for every distinct task in the batch."""
    step_penalty: float = 0.0
    added_modules: int = 0
    virtual_tokens: int = 0
    host_bytes: int = 0
    """Adapters kept in host memory and paged in when a request needs them (S-LoRA, vLLM max_cpu_loras)."""
    note: str = ""


def served(spec: ModelSpec, setup, tasks: int = 1, one_model: bool = False) -> Served:
    """How ``setup.method``'s result is served for ``tasks`` tasks (the registry's ``served_as``);
    ``one_model``: a whole-model method trained once on all tasks' data (one multi-task model)."""
    kind, k = setup.m.served_as, tasks
    read = _read_params(spec)
    base = spec.total_params * 2
    if kind == "model":
        if one_model and k > 1:
            return Served(kind, k, 1, base, read, 2.0, note=f"one multi-task model serving all {k:,} tasks")
        what = "a whole model per task" + (f": {k:,} models" if k > 1 else "")
        return Served(kind, k, k, base, read, 2.0, note=what)
    adapter = trainable_params(spec, setup) * 2
    if kind == "prompt":
        vt = setup.m.virtual_tokens(setup)
        return Served(kind, k, 1, base + k * adapter, read, 2.0, virtual_tokens=vt,
                      note=f"the base plus {k:,} soft prompt(s) of {vt} virtual tokens in every request")
    if kind == "inserted":
        modules = setup.m.added_modules(spec, setup)
        return Served(kind, k, 1, base, read, 2.0, adapter_bytes=adapter, added_modules=modules,
                      host_bytes=k * adapter, note=f"the base plus {k:,} adapter-layer set(s) that cannot merge "
                      f"({modules} inserted modules run on every token)")
    if k == 1:
        return Served(kind, 1, 1, base, read, 2.0, note="the adapter merged into the 16-bit base: the base's size "
                      "and speed" + (" (QLoRA's adapter merged onto the dequantized bf16 base)" if kind == "qlora" else ""))
    penalty = constants()["multi_lora_penalty"]
    if kind == "qlora":
        q = spec.linear_params()
        base = int(q * NF4_DQ_BYTES + (spec.total_params - q) * 2)
        per_param = base / spec.total_params
        return Served(kind, k, 1, base, read, per_param, adapter_bytes=adapter, step_penalty=penalty,
                      host_bytes=k * adapter, note=f"the 4-bit NF4 base kept, with {k:,} unmerged adapters "
                      "batched on it (multi-LoRA; its speed assumes a 4-bit kernel that reaches the bandwidth, "
                      "as Marlin-class kernels do — bitsandbytes' own are slower at large batches)")
    return Served(kind, k, 1, base, read, 2.0, adapter_bytes=adapter, step_penalty=penalty, host_bytes=k * adapter,
                  note=f"one 16-bit base with {k:,} unmerged adapters batched together (multi-LoRA as vLLM/S-LoRA)")


def _read_params(spec: ModelSpec) -> float:
    """Weights a decode step reads at batch 1: the active parameters, less the untied input embedding
    (a row lookup per token)."""
    embed = 0 if spec.tied_embeddings else spec.vocab * spec.hidden
    return max(spec.active_params - embed, 1)


def _moe_read_params(spec: ModelSpec, batch: float) -> float:
    """MoE: experts touched by a batch of ``batch`` tokens, each picking k of E (uniform routing):
    E × (1 − (1 − k/E)^b) per layer."""
    embed = 0 if spec.tied_embeddings else spec.vocab * spec.hidden
    experts = spec.linear_params(("expert",))
    dense = spec.total_params - experts - embed
    e, k = spec.num_experts, spec.experts_per_token
    touched = 1 - (1 - k / e) ** max(batch, 1)
    return dense + experts * touched


@dataclass(frozen=True)
class Replica:
    """Speed of one replica (``tp`` GPUs) at one batch."""

    tp: int
    batch: float
    step_s: float
    tpot_s: float
    prefill_s: float

    @property
    def decode_tokens_per_second(self) -> float:
        return self.batch / self.tpot_s


def step_seconds(spec: ModelSpec, s: Served, gpu: GPU, tp: int, batch: float, context: float, kv: KVCache,
                 prefill_tokens: float = 0.0) -> float:
    """One decode step of ``batch`` sequences at mean ``context`` tokens on ``tp`` GPUs, with
    ``prefill_tokens`` of other requests' prompts riding along (chunked prefill: they share the step's
    weight read and add only their compute)."""
    c = constants()
    params = _moe_read_params(spec, batch + prefill_tokens) if spec.is_moe else s.read_params
    distinct = min(batch, s.tasks) if s.adapter_bytes else 0
    read = params * s.bytes_per_param + distinct * s.adapter_bytes + batch * kv.bytes_for(int(context))
    memory = read / tp / (gpu.bandwidth_gbs * 1e9 * c["bandwidth_efficiency"])
    attn = 4 * spec.layers * spec.heads * spec.head_dim * context  # QKᵀ and PV per token
    flops = batch * (2 * spec.active_params + attn) + prefill_tokens * (2 * spec.active_params + attn / 2)
    compute = flops / tp / (gpu.peak_flops("bf16") * c["decode_mfu"])
    t = max(memory, compute) + spec.layers * c["layer_overhead_seconds"] + c["step_overhead_seconds"]
    if tp > 1:  # two all-reduces of batch × hidden 16-bit values per layer (Megatron-style TP)
        link = (gpu.link_gbs or 32) * 1e9
        t += 2 * spec.layers * (c["allreduce_seconds"] + (batch + prefill_tokens) * spec.hidden * 2 / link)
    return t * (1 + s.step_penalty) + s.added_modules * c["adapter_module_seconds"]


def prefill_seconds(spec: ModelSpec, s: Served, gpu: GPU, tp: int, prompt: int) -> float:
    """One request's prompt (plus virtual tokens): compute-bound, or a weight read for short prompts."""
    c = constants()
    tokens = prompt + s.virtual_tokens
    attn = 2 * spec.layers * spec.heads * spec.head_dim * tokens * tokens  # causal: half of 4·L·h·d·T²
    flops = 2 * spec.active_params * tokens + attn
    compute = flops / tp / (gpu.peak_flops("bf16") * c["prefill_mfu"])
    read = s.read_params * s.bytes_per_param / tp / (gpu.bandwidth_gbs * 1e9 * c["bandwidth_efficiency"])
    return max(compute, read) * (1 + s.step_penalty)


def replica(spec: ModelSpec, s: Served, gpu: GPU, tp: int, batch: float, traffic: Traffic, kv: KVCache) -> Replica:
    """Speed at ``batch`` running sequences, prefills of the others sharing the steps (chunked prefill)."""
    prompt = traffic.tokens_in + s.virtual_tokens
    context = prompt + traffic.tokens_out / 2
    # In steady state (batch − 1) / tokens_out new prompts join per step. A step that takes a whole prompt
    # is compute-bound while the others stay memory-bound, so the time per token averages the two kinds
    # (below one prompt per step) rather than taking the max of averaged work.
    joining = max(batch - 1, 0) / traffic.tokens_out
    step = step_seconds(spec, s, gpu, tp, batch, context, kv)
    if joining <= 1:
        tpot = (1 - joining) * step + joining * step_seconds(spec, s, gpu, tp, batch, context, kv, prompt)
    else:
        tpot = step_seconds(spec, s, gpu, tp, batch, context, kv, joining * prompt)
    prefill = prefill_seconds(spec, s, gpu, tp, traffic.tokens_in)
    return Replica(tp, batch, step, tpot, prefill)


def _usable(gpu: GPU) -> float:
    return gpu.memory_bytes * constants()["gpu_memory_utilization"]


def _resident(s: Served, batch: float) -> float:
    """Weights on the GPU: the base plus the adapters of the batch's distinct tasks (S-LoRA's paging)."""
    return s.weights_bytes + min(batch, s.tasks) * s.adapter_bytes


@dataclass(frozen=True)
class Hosting:
    """The GPUs a traffic needs for one method, their speed and price."""

    served: Served
    kv: KVCache
    gpu: GPU
    gpus: int
    tp: int
    replicas: int
    batch: float
    max_batch: int
    concurrency: float
    replica: Replica
    usd_per_month: float | None
    meets_latency: bool | None
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        r, s = self.replica, self.served
        return {"tasks": s.tasks, "served_as": s.note, "kind": s.kind, "weights_bytes": s.weights_bytes * s.deployments,
                "weights_bytes_per_deployment": s.weights_bytes,
                "host_adapter_bytes": s.host_bytes, "kv_bytes_per_token": self.kv.bytes_per_token,
                "kv": self.kv.to_dict(),
                "gpus": {"type": self.gpu.id, "name": self.gpu.name, "count": self.gpus, "tensor_parallel": self.tp,
                         "replicas": self.replicas, "deployments": s.deployments},
                "batch": round(self.batch, 2), "max_batch": self.max_batch, "concurrency": round(self.concurrency, 2),
                "decode_tokens_per_second": round(r.decode_tokens_per_second, 1),
                "tpot_ms": round(r.tpot_s * 1e3, 3), "prefill_ms": round(r.prefill_s * 1e3, 2),
                "usd_per_month": None if self.usd_per_month is None else round(self.usd_per_month, 2),
                "meets_latency": self.meets_latency, "notes": list(self.notes)}


def _max_batch(s: Served, kv: KVCache, gpu: GPU, tp: int, traffic: Traffic) -> int:
    """Sequences one replica holds: its memory after the weights, over one full-length sequence's KV."""
    per_seq = kv.bytes_for(traffic.tokens_in + s.virtual_tokens + traffic.tokens_out)
    cap = constants()["max_num_seqs"]
    if per_seq == 0:  # encoders: no cache; the batch is the engine's cap
        return cap if _usable(gpu) * tp > _resident(s, 1) else 0
    room = _usable(gpu) * tp - s.weights_bytes
    # weights + min(b, K) adapters + b sequences <= room: solved for b on each side of b = K
    best = math.floor(room / (s.adapter_bytes + per_seq)) if room > 0 else 0
    if best > s.tasks:
        best = math.floor((room - s.tasks * s.adapter_bytes) / per_seq)
    return max(min(best, cap), 0)


def host(spec: ModelSpec, setup, traffic: Traffic, gpu: GPU, tasks: int = 1, kv_dtype: str = "bf16",
         price_per_hour: float | None = None, one_model: bool = False) -> Hosting:
    """The cheapest layout of ``gpu``s (tensor parallel × replicas) that serves ``traffic`` for the
    ``tasks`` variants ``setup.method`` produces; raises InputError when no layout can."""
    if gpu.bandwidth_gbs is None:
        raise InputError(f"GPU '{gpu.id}' has no memory bandwidth in the catalog: pick a catalog serving_gpu")
    c = constants()
    s, kv = served(spec, setup, tasks, one_model), kv_cache(spec, kv_dtype)
    notes = []
    tp = 1
    while _max_batch(s, kv, gpu, tp, traffic) < 1:
        tp *= 2
        if tp > MAX_TP:
            raise InputError(f"{spec.id} as served ({s.note}) does not fit {MAX_TP} × {gpu.name} with one "
                             f"{traffic.tokens_in + traffic.tokens_out}-token sequence: pick a larger serving_gpu")
    cap = _max_batch(s, kv, gpu, tp, traffic)
    target = traffic.tpot_ms / 1e3 if traffic.tpot_ms else None
    if target is not None:
        while replica(spec, s, gpu, tp, 1, traffic, kv).tpot_s > target and tp < 8:
            tp *= 2  # more GPUs per replica split the reads: the only way to a faster token
        cap = _max_batch(s, kv, gpu, tp, traffic)
        lo = 1 if replica(spec, s, gpu, tp, 1, traffic, kv).tpot_s <= target else 0
        hi = cap
        while lo < hi:  # largest batch meeting the target (time per token grows with the batch)
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if replica(spec, s, gpu, tp, mid, traffic, kv).tpot_s <= target else (lo, mid - 1)
        meets = lo >= 1
        if not meets:
            notes.append(f"{traffic.tpot_ms:g} ms per output token is out of reach on {gpu.name} even at batch 1 "
                         f"with {tp}-way tensor parallelism")
        cap = max(lo, 1)
    else:
        meets = None
    rate = traffic.requests_per_day / SECONDS_PER_DAY * c["peak_to_mean"] / s.deployments
    if traffic.peak_concurrency is not None:
        per_dep = traffic.peak_concurrency / s.deployments
    else:
        r = replica(spec, s, gpu, tp, cap, traffic, kv)  # Little's law at the busiest batch, then refined
        per_dep = rate * (r.prefill_s + traffic.tokens_out * r.tpot_s)
        for _ in range(3):
            b = min(max(per_dep, 1e-9), cap)
            r = replica(spec, s, gpu, tp, max(b, 1), traffic, kv)
            per_dep = rate * (r.prefill_s + traffic.tokens_out * r.tpot_s)
    replicas = max(1, math.ceil(per_dep / cap - 1e-9))
    batch = max(per_dep / replicas, 1e-9)
    rep = replica(spec, s, gpu, tp, max(batch, 1), traffic, kv)
    gpus = s.deployments * replicas * tp
    if s.deployments > 1 and tp == 1 and replicas == 1:
        # Small whole models share GPUs: as many as fit beside their own KV, within the GPU's time.
        each = s.weights_bytes + max(batch, 1) * kv.bytes_for(traffic.tokens_in + traffic.tokens_out)
        per_gpu = max(int(_usable(gpu) // each), 1)
        busy = s.deployments * rate * traffic.tokens_out * rep.step_s / max(batch, 1) \
            + s.deployments * rate * rep.prefill_s
        gpus = max(math.ceil(s.deployments / per_gpu), math.ceil(busy), 1)
        if per_gpu > 1:
            notes.append(f"{per_gpu} of the {s.deployments:,} models share each GPU (memory-bound: all stay loaded)")
    price = price_per_hour if price_per_hour is not None else gpu.price_per_hour_usd
    usd = None if price is None else gpus * price * c["hours_per_month"]
    if tp > 8:
        notes.append(f"{tp} GPUs per replica span several nodes (tensor parallelism beyond one node is slow)")
    return Hosting(s, kv, gpu, gpus, tp, replicas, batch, cap, per_dep * s.deployments, rep, usd, meets, notes)


def serving_summary(spec: ModelSpec, setup, gpu: GPU | None, tasks: int = 1) -> dict:
    """The estimate's serving block without traffic: weights, KV per token, and one replica's decode
    speed at batch 1 on ``gpu`` (hosting is priced only with traffic)."""
    s, kv = served(spec, setup, tasks), kv_cache(spec)
    out = {"served_as": s.note, "kind": s.kind, "weights_bytes": s.weights_bytes * s.deployments,
           "kv_bytes_per_token": kv.bytes_per_token, "kv": kv.to_dict(), "gpus": None,
           "decode_tokens_per_second": None, "usd_per_month": None}
    if gpu is not None and gpu.bandwidth_gbs:
        traffic = Traffic(1.0, 512, 128)
        tp = 1
        while _max_batch(s, kv, gpu, tp, traffic) < 1 and tp < MAX_TP:
            tp *= 2
        r = replica(spec, s, gpu, tp, 1, traffic, kv)
        out["gpus"] = {"type": gpu.id, "name": gpu.name, "count": tp * s.deployments, "tensor_parallel": tp,
                       "replicas": 1, "deployments": s.deployments}
        out["decode_tokens_per_second"] = round(r.decode_tokens_per_second, 1)
        out["tpot_ms"] = round(r.tpot_s * 1e3, 3)
    return out


def gib(n: float) -> str:
    return f"{n / GIB:,.1f} GiB"
