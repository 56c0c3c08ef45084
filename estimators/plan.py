"""``Plan``: one decision, carried whole from the recommendation to the what-if, the trial, the exact
check and the exported project (DESIGN.md, "The plan").

A plan names the model, the method, every setting that applies to the method (common ones plus the
method's own from its registry entry), the hardware and the data facts, and carries the estimate for
exactly that. It is validated on creation (every problem in one message), changed only by explicit
edits (``edit``, ``with_method``), and round-trips through JSON. Pure: no I/O beyond reading a file
the caller names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from estimators.catalog import GPU, custom_gpu, gpu_by_id, load_model
from estimators.errors import InputError, read_json
from estimators.methods import REGISTRY, Setting, get
from estimators.setup import ATTENTIONS, OPTIMIZERS, PRECISIONS, SHARDINGS, TrainSetup
from estimators.spec import ModelSpec

PLAN_VERSION = 1

# Settings every method has. Bounds are generous but finite: they catch typos and absurd values.
COMMON_SETTINGS: tuple[Setting, ...] = (
    Setting("batch_size", 1, "micro-batch per GPU (sequences per forward/backward)", int, low=1, high=65536),
    Setting("grad_accum", 1, "micro-batches accumulated per optimizer step", int, low=1, high=65536),
    Setting("seq_len", 512, "tokens per sequence (longer examples are truncated)", int, low=1, high=10_000_000),
    Setting("precision", "bf16", "weight and compute dtype", str, choices=PRECISIONS),
    Setting("mixed_precision", False, "fp32 master weights with autocast to the precision", bool),
    Setting("optimizer", "adamw", "optimizer", str, choices=OPTIMIZERS),
    Setting("gradient_checkpointing", False, "recompute activations in backward", bool),
    Setting("attention", "sdpa", "attention kernel: sdpa (memory linear in length) or eager (quadratic)", str, choices=ATTENTIONS),
    Setting("packing", False, "pack several examples into each sequence (no padding)", bool),
    Setting("compile", False, "run the model under torch.compile (fused elementwise kernels)", bool),
    Setting("fused_cross_entropy", False, "chunked fused linear + cross-entropy loss (Liger): no full fp32 logits",
            bool),
    Setting("optimizer_in_backward", False, "update each parameter in backward and free its gradient (grad_accum 1)",
            bool),
    Setting("activation_offloading", False, "keep saved activations in host memory between forward and backward",
            bool),
    Setting("lr", None, "learning rate (default: the method's)", float, low=1e-12, high=10, optional=True),
    Setting("epochs", 1.0, "passes over the data", float, low=1e-6, high=10_000),
)
HARDWARE_SETTINGS: tuple[Setting, ...] = (
    Setting("gpu", None, "GPU catalog id, or 'custom' with gpu_memory_gib and gpu_tflops", str, optional=True),
    Setting("num_gpus", 1, "GPUs", int, low=1, high=65536),
    Setting("sharding", "none", "multi-GPU sharding", str, choices=SHARDINGS),
    Setting("cpu_offload", False, "offload optimizer states (and sharded parameters) to CPU memory", bool),
    Setting("host_memory_gib", None, "host RAM of one machine in GiB (default: a typical host for the GPU class)",
            float, low=1, high=1e6, optional=True),
    Setting("price_per_hour", None, "USD per GPU-hour (default: the catalog's)", float, low=0, high=1e6, optional=True),
    Setting("gpu_memory_gib", None, "custom GPU: memory in GiB", float, low=0.01, high=1e5, optional=True),
    Setting("gpu_tflops", None, "custom GPU: dense bf16/fp16 peak TFLOP/s", float, low=0.01, high=1e7, optional=True),
    Setting("gpu_name", None, "custom GPU: its name as shown", str, optional=True),
)
DATA_SETTINGS: tuple[Setting, ...] = (
    Setting("path", None, "training data file (.jsonl, .csv, .parquet)", str, optional=True),
    Setting("format", None, "input_output, prompt_completion, messages or text", str, optional=True),
    Setting("num_examples", None, "training examples", int, low=1, high=10**12, optional=True),
    Setting("tokens_per_example", None, "mean tokens per example", int, low=1, high=10_000_000, optional=True),
)
# The plan's own fields that are settings too (the CLI and the app read their bounds here).
PLAN_FIELDS: tuple[Setting, ...] = (
    Setting("tasks", 1, "tuned variants served from this model (for serving memory)", int, low=1, high=1_000_000),
)
# How a plan runs as a trial (not part of the plan): the CLI's trial options, the app's trial widgets and
# tuners/trial.TrialOptions read these.
TRIAL_SETTINGS: tuple[Setting, ...] = (
    Setting("steps", 20, "optimizer steps: one warm-up, one measured for memory, the rest timed", int, low=3,
            high=100_000),
    Setting("nproc", 1, "ranks run through torchrun with the plan's sharding", int, low=1, high=1024),
    Setting("timeout", None, "stop the run after this many seconds", float, low=1e-3, high=1e9, optional=True),
)
_TOKEN_LENGTH_KEYS = ("mean", "p50", "p95", "max")
# TrainSetup fields a plan's settings feed (the rest — lr, teacher... — drive the run only).
_SETUP_FIELDS = set(TrainSetup.__dataclass_fields__)


def setting(name: str, method: str | None = None) -> Setting:
    """The one schema of a setting (default, bounds, choices, help): common, hardware, data, the plan's
    own fields, a trial's, or ``method``'s own (any method's when none is given). The CLI, the app's widgets and the validation read it."""
    own = get(method).settings if method else tuple(s for m in REGISTRY.values() for s in m.settings)
    for s in COMMON_SETTINGS + HARDWARE_SETTINGS + DATA_SETTINGS + PLAN_FIELDS + TRIAL_SETTINGS + own:
        if s.name == name:
            return s
    raise KeyError(name)


def method_settings(method: str) -> tuple[Setting, ...]:
    """Every setting that applies to ``method``: the common ones, then the method's own."""
    return COMMON_SETTINGS + get(method).settings


def _check_section(name: str, values: dict, allowed: tuple[Setting, ...], problems: list[str]) -> dict:
    if not isinstance(values, dict):
        problems.append(f"{name} must be a JSON object")
        return {}
    known = {s.name: s for s in allowed}
    for key in values:
        if key not in known:
            problems.append(f"{name}.{key} does not apply here (known: {', '.join(known)})")
    out = {}
    for s in allowed:
        value = values.get(s.name, s.default)
        if isinstance(value, int) and not isinstance(value, bool) and s.kind is float:
            value = float(value)
        problem = s.check(value)
        if problem:
            problems.append(f"{name}.{problem}")
        out[s.name] = value
    return out


def _check_token_lengths(value, problems: list[str]) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append("data.token_lengths must be an object with mean, p50, p95 and max")
        return None
    out = {}
    for key, v in value.items():
        if key not in _TOKEN_LENGTH_KEYS:
            problems.append(f"data.token_lengths.{key} is not one of {', '.join(_TOKEN_LENGTH_KEYS)}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            problems.append(f"data.token_lengths.{key} must be a number >= 0 (got {v!r})")
        else:
            out[key] = v
    ordered = [k for k in ("p50", "p95", "max") if k in out]
    for low, high in zip(ordered, ordered[1:]):
        if out[low] > out[high]:
            problems.append(f"data.token_lengths.{low} {out[low]:g} exceeds {high} {out[high]:g} "
                            "(give the data's own percentiles)")
    return out


@dataclass(frozen=True)
class Plan:
    """One tuning decision: model, method, settings, hardware, data facts, and its estimate."""

    model: str
    """Catalog id, path to a config.json, or a local model folder (for distillation: the student)."""
    method: str
    settings: dict
    """Common settings (COMMON_SETTINGS) plus the method's own (its registry entry), all filled in."""
    hardware: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    estimate: dict | None = None
    """The estimate JSON for exactly this plan (None until ``estimated``)."""
    tasks: int = 1
    """Tuned variants to serve (for serving memory)."""

    def __post_init__(self):
        problems: list[str] = []
        if not isinstance(self.model, str) or not self.model.strip():
            problems.append("model must be a catalog id, a config.json path or a model folder")
        if self.method not in REGISTRY:
            raise InputError(f"invalid plan: unknown method {self.method!r} (choose from {', '.join(REGISTRY)})")
        settings = _check_section("settings", self.settings, method_settings(self.method), problems)
        if settings.get("lr") is None:
            settings["lr"] = get(self.method).default_lr
        if "lora_alpha" in settings and settings["lora_alpha"] is None and isinstance(settings.get("lora_rank"), int):
            settings["lora_alpha"] = float(2 * settings["lora_rank"])
        hardware = _check_section("hardware", self.hardware, HARDWARE_SETTINGS, problems)
        data_in = dict(self.data) if isinstance(self.data, dict) else {}
        lengths = _check_token_lengths(data_in.pop("token_lengths", None), problems)
        data = _check_section("data", data_in, DATA_SETTINGS, problems)
        data["token_lengths"] = lengths
        if hardware.get("gpu") == "custom" and not (hardware.get("gpu_memory_gib") and hardware.get("gpu_tflops")):
            problems.append("hardware: a custom GPU needs gpu_memory_gib and gpu_tflops")
        tasks = PLAN_FIELDS[0]
        if isinstance(self.tasks, bool) or not isinstance(self.tasks, int) or not tasks.low <= self.tasks <= tasks.high:
            problems.append(f"tasks must be a whole number from {tasks.low:,} to {tasks.high:,} (got {self.tasks!r})")
        if not problems:
            try:  # the cross-field rules of TrainSetup (sharding needs GPUs, qlora needs 16 bits...)
                _setup(self.method, settings, hardware, data, "cuda")
            except InputError as exc:
                problems.append(str(exc))
        if problems:
            raise InputError("invalid plan: " + "; ".join(problems))
        object.__setattr__(self, "settings", settings)
        object.__setattr__(self, "hardware", hardware)
        object.__setattr__(self, "data", data)

    # --- building and editing -------------------------------------------------------------------

    @classmethod
    def create(cls, model: str, method: str, settings: dict | None = None, hardware: dict | None = None,
               data: dict | None = None, tasks: int = 1) -> "Plan":
        """A plan with every unspecified setting at its documented default."""
        return cls(model=model, method=method, settings=dict(settings or {}), hardware=dict(hardware or {}),
                   data=dict(data or {}), tasks=tasks)

    @classmethod
    def from_setup(cls, model: str, setup: TrainSetup, settings: dict | None = None, hardware: dict | None = None,
                   data: dict | None = None, tasks: int = 1) -> "Plan":
        """A plan holding a ``TrainSetup``'s values (what applies to its method), plus ``settings`` the
        setup does not carry (lr, lora_alpha, teacher...)."""
        names = {s.name for s in method_settings(setup.method)}
        values = {k: getattr(setup, k) for k in _SETUP_FIELDS if k in names}
        values["epochs"] = float(setup.epochs)
        hw = {"num_gpus": setup.num_gpus, "sharding": setup.sharding, "cpu_offload": setup.cpu_offload, **(hardware or {})}
        facts = {"num_examples": setup.examples, "tokens_per_example": setup.tokens_per_example, **(data or {})}
        return cls.create(model, setup.method, {**values, **(settings or {})}, hw, facts, tasks)

    @classmethod
    def from_json(cls, obj) -> "Plan":
        if not isinstance(obj, dict):
            raise InputError("invalid plan: expected a JSON object with model, method and settings")
        missing = [k for k in ("model", "method") if k not in obj]
        unknown = [k for k in obj if k not in ("model", "method", "settings", "hardware", "data", "estimate",
                                              "tasks", "version")]
        version = obj.get("version", PLAN_VERSION)
        bad_version = [] if version in range(1, PLAN_VERSION + 1) and not isinstance(version, bool) else [
            f"version must be a plan version up to {PLAN_VERSION} (a newer tuning-advisor wrote it: upgrade)"]
        if missing or unknown or bad_version:
            raise InputError("invalid plan: " + "; ".join([f"missing '{k}'" for k in missing]
                                                         + [f"unknown field '{k}'" for k in unknown] + bad_version))
        return cls(model=obj["model"], method=obj["method"], settings=obj.get("settings") or {},
                   hardware=obj.get("hardware") or {}, data=obj.get("data") or {}, estimate=obj.get("estimate"),
                   tasks=obj.get("tasks", 1))

    @classmethod
    def from_file(cls, path: str | Path) -> "Plan":
        return cls.from_json(read_json(path, "plan"))

    def to_json(self) -> dict:
        return {"version": PLAN_VERSION, "model": self.model, "method": self.method, "settings": dict(self.settings),
                "hardware": dict(self.hardware), "data": dict(self.data), "tasks": self.tasks,
                "estimate": self.estimate}

    def edit(self, settings: dict | None = None, hardware: dict | None = None, data: dict | None = None,
             model: str | None = None, tasks: int | None = None) -> "Plan":
        """This plan with some values changed (validated again; the estimate is dropped until
        ``estimated`` is called). A LoRA alpha that was the default 2r follows a new rank."""
        new_settings = {**self.settings, **(settings or {})}
        if settings and "lora_rank" in settings and "lora_alpha" not in settings \
                and self.settings.get("lora_alpha") == 2 * self.settings.get("lora_rank", 0):
            new_settings["lora_alpha"] = float(2 * settings["lora_rank"])
        new_hardware = {**self.hardware, **(hardware or {})}
        if new_hardware.get("num_gpus") == 1:
            new_hardware["sharding"] = "none"
        return replace(self, model=model or self.model, settings=new_settings, hardware=new_hardware,
                       data={**self.data, **(data or {})}, tasks=tasks or self.tasks, estimate=None)

    def with_method(self, method: str) -> "Plan":
        """The same situation with another method: common settings kept (the learning rate goes to
        the new method's default), the old method's own settings dropped, the new one's at defaults."""
        common = {s.name: self.settings[s.name] for s in COMMON_SETTINGS if s.name != "lr"}
        return replace(self, method=method, settings=common, estimate=None)

    # --- what the estimators need ---------------------------------------------------------------

    def setup(self, device: str = "cuda") -> TrainSetup:
        return _setup(self.method, self.settings, self.hardware, self.data, device)

    def gpu(self) -> GPU | None:
        h = self.hardware
        if h.get("gpu") == "custom":
            return custom_gpu(h["gpu_memory_gib"], h["gpu_tflops"], h.get("price_per_hour"),
                              name=h.get("gpu_name") or "custom GPU")
        return gpu_by_id(h["gpu"]) if h.get("gpu") else None

    def spec(self) -> ModelSpec:
        """The model's spec, after checking the settings that depend on it (a LoRA rank above the
        hidden size, virtual tokens filling the whole sequence...)."""
        spec = load_model(self.model)
        s = self.settings
        problems = [f"{name} {s[name]:,} exceeds the model's hidden size {spec.hidden:,}"
                    for name in ("lora_rank", "adapter_size") if s.get(name) and s[name] > spec.hidden]
        if s.get("num_virtual_tokens") and s["num_virtual_tokens"] >= s["seq_len"]:
            problems.append(f"num_virtual_tokens {s['num_virtual_tokens']:,} leaves no room in seq_len {s['seq_len']:,}")
        if problems:
            raise InputError(f"invalid plan for {spec.id}: {'; '.join(problems)} (lower it)")
        return spec

    def teacher_spec(self) -> ModelSpec | None:
        teacher = self.settings.get("teacher")
        return load_model(teacher) if teacher else None

    def run_estimate(self, calibration=None, spec: ModelSpec | None = None):
        """The ``Estimate`` for exactly this plan (``calibration`` looked up by the caller)."""
        from estimators.estimate import estimate

        return estimate(spec or self.spec(), self.setup(), self.gpu(), self.teacher_spec(),
                        price_per_hour=self.hardware.get("price_per_hour"), tasks=self.tasks,
                        calibration=calibration, host_memory_gib=self.hardware.get("host_memory_gib"))

    def estimated(self, calibration=None, spec: ModelSpec | None = None) -> "Plan":
        """This plan with its estimate filled in."""
        return replace(self, estimate=self.run_estimate(calibration, spec).to_json())


def _setup(method: str, settings: dict, hardware: dict, data: dict, device: str) -> TrainSetup:
    values = {k: v for k, v in settings.items() if k in _SETUP_FIELDS and v is not None}
    lengths = data.get("token_lengths") or {}
    quantiles = None
    if lengths.get("p50") and lengths.get("p95"):  # (ordered: checked with the plan)
        quantiles = (lengths["p50"], lengths["p95"], lengths.get("max") or None)
    return TrainSetup(method=method, **values, num_gpus=hardware.get("num_gpus", 1),
                      sharding=hardware.get("sharding", "none"), cpu_offload=bool(hardware.get("cpu_offload")),
                      device=device, examples=data.get("num_examples"), tokens_per_example=data.get("tokens_per_example"),
                      length_quantiles=quantiles)
