"""One call that estimates everything for a model, a training setup and (optionally) a GPU."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from estimators.axes import sharding
from estimators.calibration import Calibration
from estimators.catalog import GPU
from estimators.memory import ALLOCATOR_SLACK, CUDA_CONTEXT_BYTES, GIB, MemoryBreakdown, estimate_memory, shards_parameters
from estimators.methods import trainable_params
from estimators.serving import serving_summary
from estimators.setup import TrainSetup
from estimators.spec import ModelSpec
from estimators.steptime import padding_ratio
from estimators.transfer import host_for
from estimators.throughput import TimeEstimate, artifact_bytes, estimate_time, method_efficiency, serving_bytes


@dataclass(frozen=True)
class Estimate:
    spec: ModelSpec
    setup: TrainSetup
    gpu: GPU | None
    memory: MemoryBreakdown
    time: TimeEstimate
    trainable: int
    artifact_bytes: int
    serving: dict
    assumptions: tuple[str, ...]
    teacher: ModelSpec | None = None
    calibration: Calibration | None = None
    host_memory_bytes: int | None = None
    """Host RAM of one node (``host_memory_gib``; default: the GPU class's typical host, ``hosts.json``)."""
    host_memory_given: bool = False

    @property
    def fits_gpu(self) -> bool | None:
        return None if self.gpu is None else self.memory.total <= self.gpu.memory_bytes

    @property
    def host_ram(self) -> int:
        """Host RAM one node needs (processes, offloaded shards, the loading buffer)."""
        return int(self.memory.detail.get("cpu_ram") or 0)

    @property
    def fits_host(self) -> bool | None:
        return None if self.host_memory_bytes is None else self.host_ram <= self.host_memory_bytes

    @property
    def fits(self) -> bool | None:
        """Fits the GPU's memory and the host's RAM (a plan that offloads more than the host holds does not fit)."""
        if self.gpu is None:
            return None
        return bool(self.fits_gpu) and self.fits_host is not False

    def to_json(self) -> dict:
        """The ``estimate --json`` contract (DESIGN.md), with extra fields after the contract's."""
        s = self.setup
        return {
            "model": self.spec.id, "method": s.method,
            "params": {"total": self.spec.total_params, "trainable": self.trainable, "active": self.spec.active_params},
            "memory": self.memory.to_dict(),
            "fits": self.fits,
            "time": self.time.contract(),
            "cost_usd": _usd(self.time.cost_usd),
            "cost_usd_low": _usd(self.time.cost_usd_low), "cost_usd_high": _usd(self.time.cost_usd_high),
            "artifact_bytes": self.artifact_bytes,
            "assumptions": list(self.assumptions),
            "gpu": None if self.gpu is None else {"id": self.gpu.id, "name": self.gpu.name,
                                                  "memory_bytes": self.gpu.memory_bytes, "count": s.num_gpus},
            "throughput": {"flops_per_token": self.time.flops_per_token,
                           "tokens_per_second": self.time.tokens_per_second},
            "serving": {**self.serving, **serving_summary(self.spec, s, self.gpu, self.serving["tasks"])},
            "teacher": None if self.teacher is None else self.teacher.id,
            "setup": {k: getattr(s, k) for k in s.__dataclass_fields__},
            "calibrated": None if self.calibration is None else self.calibration.describe(),
            "fits_gpu": self.fits_gpu,
            "host": {"memory_bytes": self.host_memory_bytes, "needed_bytes": self.host_ram, "fits": self.fits_host,
                     "given": self.host_memory_given,
                     "basis": None if self.gpu is None else host_for(self.gpu.id).name},
        }


def _usd(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def estimate(spec: ModelSpec, setup: TrainSetup, gpu: GPU | None = None, teacher: ModelSpec | None = None,
             price_per_hour: float | None = None, tasks: int = 1,
             calibration: Calibration | None = None, host_memory_gib: float | None = None) -> Estimate:
    """Everything for one setup; pure (no I/O). ``calibration`` is what trial runs measured on this
    GPU for this method and precision, looked up by the caller (``tuners.store.calibration_for``);
    None keeps the documented defaults."""
    memory = estimate_memory(spec, setup, teacher)
    if calibration is not None and calibration.overhead_bytes is not None and setup.device == "cuda":
        overhead = calibration.overhead_bytes + int((calibration.slack or 0) * memory.peak_allocated)
        memory = dataclasses.replace(memory, overhead=overhead)
    efficiency = calibration.efficiency if calibration is not None else None
    time = estimate_time(spec, setup, gpu, teacher, price_per_hour, efficiency)
    host = None
    if host_memory_gib is not None:
        host = int(host_memory_gib * GIB)
    elif gpu is not None:
        host = host_for(gpu.id).memory_bytes(setup.num_gpus)
    return Estimate(spec=spec, setup=setup, gpu=gpu, memory=memory, time=time,
                    trainable=trainable_params(spec, setup), artifact_bytes=artifact_bytes(spec, setup),
                    serving={"tasks": tasks, "bytes": serving_bytes(spec, setup, tasks)},
                    assumptions=_assumptions(spec, setup, gpu, memory, calibration, time, host,
                                             host_memory_gib is not None),
                    teacher=teacher, calibration=calibration, host_memory_bytes=host,
                    host_memory_given=host_memory_gib is not None)


# Families transformers 5 runs with eager attention only (SDPA cannot express their attention).
_NO_SDPA = {"gemma2": ("Gemma 2", "attention soft-capping"), "gpt_oss": ("gpt-oss", "attention sinks")}


def _assumptions(spec: ModelSpec, s: TrainSetup, gpu: GPU | None, mem: MemoryBreakdown,
                 calibration: Calibration | None, time=None, host: int | None = None,
                 host_given: bool = False) -> tuple[str, ...]:
    out = [f"peak is the {mem.peak_phase.replace('_', ' ')} moment of a steady-state step "
           "(max of backward start, backward end, optimizer step)"]
    precision = f"fp32 master weights + {s.precision} autocast" if s.mixed_precision else f"pure {s.precision}"
    out.append(f"{precision}; {s.optimizer} states in the trainable parameters' dtype")
    out += s.m.assumptions(spec, s)
    out.append(f"attention: {s.attention} ({'memory linear in sequence length' if s.attention == 'sdpa' else 'fp32 scores, quadratic in length'})")
    if spec.family in _NO_SDPA and s.attention == "sdpa":
        name, why = _NO_SDPA[spec.family]
        out.append(f"{name}: transformers has no SDPA path ({why}) and falls back to eager attention; sdpa here "
                   "assumes a fused kernel that handles it — estimate with --attention eager for plain transformers")
    if s.gradient_checkpointing:
        out.append("gradient checkpointing keeps block inputs only and recomputes each block (+1 forward, C6.5)")
    out.append("logits upcast to fp32 for the loss (transformers' causal-LM loss)")
    if spec.is_moe:
        out.append(f"MoE: {spec.experts_per_token} of {spec.num_experts} experts per token for FLOPs/activations")
    if spec.derived:
        out.append(f"{spec.family}: parameter counts and layer shapes come from building the model on the meta "
                   "device, but activations follow the generic Llama-style model, not this architecture's own "
                   "ops — run the exact check (estimate --dry-run, or 'Exact check' in the app) for its true peak")
    if s.num_gpus > 1:
        out.append(sharding(s.sharding).assumption)
    if s.cpu_offload:
        what = ("parameter shards, gradients and optimizer states" if shards_parameters(s)
                else "optimizer states (and the optimizer step)")
        out.append(f"CPU offload: {what} in host memory — needs {mem.detail.get('cpu_ram', 0) / GIB:,.0f} GiB of "
                   "host RAM per node" + ("" if host is None else f" (host has {host / GIB:,.0f} GiB)"))
        step = getattr(time, "step", None)
        if step is not None and step.total:
            penalty = step.offload + step.cpu_optimizer
            out.append(f"offload time: {penalty:.2f} s of each {step.total:.2f} s step ({penalty / step.total:.0%}) is "
                       "host-link copies and the CPU optimizer step (estimators/transfer.py)")
    if host is not None and mem.detail.get("cpu_ram", 0) > host:
        out.append(f"does not fit the host: needs {mem.detail['cpu_ram'] / GIB:,.0f} GiB of host RAM, the host has "
                   f"{host / GIB:,.0f} GiB" + ("" if host_given else f" (typical for {gpu.name if gpu else 'this GPU'}: "
                                                                    "give host_memory_gib for yours)"))
    elif host is not None and gpu is not None and not host_given:
        out.append(f"host RAM: {host / GIB:,.0f} GiB assumed ({host_for(gpu.id).name}); give host_memory_gib "
                   "(--host-memory-gib) for yours")
    if s.device == "cuda":
        if calibration is not None and calibration.overhead_bytes is not None:
            out.append(f"overhead {calibration.describe()}")
        else:
            out.append(f"overhead: CUDA context {CUDA_CONTEXT_BYTES / GIB:.2f} GiB + {ALLOCATOR_SLACK:.0%} allocator slack")
    if gpu is not None:
        eff = (calibration.efficiency if calibration is not None else gpu.efficiency) * method_efficiency(s)
        out.append(f"time: compute at {eff:.0%} of {gpu.name} peak {s.precision} FLOP/s (less for small micro-batches)"
                   + (f" ({calibration.describe()})" if calibration is not None else " (default efficiency)")
                   + ", plus kernel launches, the optimizer step, dequantization and communication (estimators/steptime.py)")
        if s.examples and s.tokens_per_example:
            if s.packing:
                out.append(f"examples packed into rows of {s.seq_len} tokens (no padding)")
            elif s.length_quantiles is None:
                out.append("example lengths assumed equal to the mean (no padding counted): give the data's "
                           "token-length spread (data.token_lengths p50/p95) for padded micro-batches")
            else:
                out.append(f"micro-batches padded to their longest example ({padding_ratio(s):.2f}× the real tokens, "
                           "from the data's p50/p95 lengths)")
        if gpu.price_per_hour_usd is not None and gpu.price_date:
            out.append(f"price {gpu.price_per_hour_usd} USD/GPU-hour ({gpu.price_date} list price unless --price-per-hour)")
    return tuple(out)
