"""Registries for the axes besides the method: sharding strategies and optimizers.

Like ``estimators/methods``, each entry says once what the estimators, the UI, the CLI and the runtime
need: what a sharding strategy shards and how the runtime runs it; what an optimizer stores per
trainable element and which class builds it. Nothing else lists their names (``SHARDINGS`` and
``OPTIMIZERS`` are the registries' keys). Pure Python: no torch.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShardingSpec:
    id: str
    label: str
    """What the app calls it."""
    assumption: str
    """The line an estimate's ``assumptions`` carries on several GPUs."""
    shards_optimizer: bool = False
    """Optimizer states split over the ranks (ZeRO-1 and up; Rajbhandari et al. 2020)."""
    shards_gradients: bool = False
    """Gradients reduce-scattered to their owner (ZeRO-2 and up)."""
    shards_parameters: bool = False
    """Parameters split and all-gathered per block for forward and backward (ZeRO-3, FSDP full shard):
    per micro-batch every 16-bit parameter is gathered twice."""
    engine: str = "ddp"
    """How the runtime runs it: ``ddp`` (DistributedDataParallel) or ``fully_shard`` (FSDP2)."""
    reshard_after_forward: bool = True
    """FSDP2: free the gathered parameters after forward (False keeps them to backward: ZeRO-2 as run here)."""
    runs_as: str = ""
    """How a trial and the exported project run it (launch.sh says so)."""
    gathers_after_step: bool = False
    """Its communication per step (estimators/transfer.py): the gradients are reduce-scattered during the
    backward and the updated 16-bit parameters all-gathered once after the optimizer step, since each rank
    updated only its shard of a full replica (ZeRO-1/2; Rajbhandari et al. 2020). Otherwise either an
    all-reduce of the gradients (DDP: no ``shards_optimizer``) or gathers every micro-batch
    (``shards_parameters``)."""
    cpu_optimizer: str = "deepspeed"
    """Whose CPU optimizer steps the offloaded states (``cpu_offload``): ``deepspeed`` (DeepSpeedCPUAdam,
    vectorised) or ``torch`` (FSDP2's ``CPUOffloadPolicy`` steps torch's own AdamW on the host shard, which
    the DeepSpeed ZeRO-Offload tutorial puts 5-7x slower)."""

    def runtime(self) -> dict:
        """What the runtime (and the exported train.py) reads from the plan's recipe."""
        return {"engine": self.engine, "reshard_after_forward": self.reshard_after_forward}


SHARDING_REGISTRY: dict[str, ShardingSpec] = {s.id: s for s in (
    ShardingSpec("none", "DDP (replicas)", "DDP: every GPU holds a full replica plus gradient buckets (C6.8)",
                 runs_as="DDP (a full replica per GPU)"),
    # ZeRO-1 runs as DDP here (torch has no ZeRO-1 engine of its own); estimated with its sharded states.
    ShardingSpec("zero1", "ZeRO-1", "ZeRO-1: optimizer states sharded", shards_optimizer=True,
                 gathers_after_step=True, runs_as="DDP (a full replica per GPU)"),
    ShardingSpec("zero2", "ZeRO-2", "ZeRO-2 (DeepSpeed): every GPU keeps the whole 16-bit model; gradients and "
                 "optimizer states sharded (the CPU trial runs it as FSDP2 reshard_after_forward=False, which also "
                 "holds a 1/n parameter shard)", shards_optimizer=True,
                 shards_gradients=True, engine="fully_shard", reshard_after_forward=False, gathers_after_step=True,
                 runs_as="FSDP2 keeping parameters gathered between forward and backward (ZeRO-2-like)"),
    ShardingSpec("zero3", "ZeRO-3", "ZeRO-3: parameters, gradients and optimizer states sharded",
                 shards_optimizer=True, shards_gradients=True, shards_parameters=True, engine="fully_shard",
                 runs_as="FSDP2 full shard (ZeRO-3-like)"),
    ShardingSpec("fsdp", "FSDP / ZeRO-3", "FSDP full shard: parameters, gradients and optimizer states sharded",
                 shards_optimizer=True, shards_gradients=True, shards_parameters=True, engine="fully_shard",
                 cpu_optimizer="torch", runs_as="FSDP2 full shard"),
)}
SHARDINGS = tuple(SHARDING_REGISTRY)


def sharding(sharding_id: str) -> ShardingSpec:
    return SHARDING_REGISTRY[sharding_id]


@dataclass(frozen=True)
class OptimizerSpec:
    id: str
    label: str
    state_copies: float | None
    """States per trainable element in the parameter's own dtype (AdamW's two moments, SGD's momentum);
    None when the states have their own storage (``state_bytes``) or are factored."""
    state_bytes: float | None = None
    """Bytes of state per trainable element when fixed by the optimizer, not the parameter's dtype."""
    moved_state_bytes: float | None = None
    """Bytes of state per element an update reads (and writes) when not ``state_copies`` × the dtype."""
    factored: bool = False
    """Second moment kept as row and column statistics per matrix (Shazeer & Stern 2018)."""
    constructor: str = ""
    """The class the runtime builds (module path and name)."""
    kwargs: tuple = ()
    """Constructor arguments besides the parameters and the learning rate, as (name, value) pairs."""
    foreach: bool = False
    """Accepts torch's ``foreach`` switch (list-wide kernels and their temporaries)."""
    needs: tuple = ()
    """Packages beyond torch the runtime needs for it."""

    def runtime(self) -> dict:
        return {"class": self.constructor, "kwargs": dict(self.kwargs), "foreach": self.foreach}


OPTIMIZER_REGISTRY: dict[str, OptimizerSpec] = {o.id: o for o in (
    # torch.optim.AdamW: exp_avg and exp_avg_sq in the parameter's dtype.
    OptimizerSpec("adamw", "AdamW", 2, constructor="torch.optim.AdamW", foreach=True),
    # bitsandbytes AdamW8bit: two uint8 states plus an fp32 absmax per 256-value block (Dettmers et al. 2021):
    # 2 + 2·4/256 = 2.03 bytes per element; an update moves the two one-byte states.
    OptimizerSpec("adamw_8bit", "8-bit AdamW", None, state_bytes=2 + 2 * 4 / 256, moved_state_bytes=2,
                  constructor="bitsandbytes.optim.AdamW8bit", needs=("bitsandbytes",)),
    # SGD with momentum 0.9: one buffer in the parameter's dtype.
    OptimizerSpec("sgd", "SGD (momentum)", 1, constructor="torch.optim.SGD", kwargs=(("momentum", 0.9),),
                  foreach=True),
    # Adafactor without momentum, fixed learning rate (transformers' implementation): rows + cols per matrix.
    OptimizerSpec("adafactor", "Adafactor", None, moved_state_bytes=0, factored=True,
                  constructor="transformers.optimization.Adafactor",
                  kwargs=(("scale_parameter", False), ("relative_step", False), ("warmup_init", False))),
)}
OPTIMIZERS = tuple(OPTIMIZER_REGISTRY)


def optimizer(optimizer_id: str) -> OptimizerSpec:
    return OPTIMIZER_REGISTRY[optimizer_id]
