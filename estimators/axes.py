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
    # --- time fields (estimators/transfer.py reads these instead of the ids; issue 21/22) ---
    gathers_after_step: bool = False
    """Gradients reduce-scattered during the backward and the updated 16-bit parameters all-gathered
    after the optimizer step (DeepSpeed ZeRO-1/2, ``stage_1_and_2.py``); else DDP's all-reduce, or a
    gather per pass where parameters are sharded."""
    host_optimizer: str = "deepspeed"
    """Whose CPU optimizer an offloaded run steps with: ``deepspeed`` (DeepSpeedCPUAdam, vectorised) or
    ``torch`` (torch.optim.AdamW on the host shard, what FSDP2's CPUOffloadPolicy runs)."""

    def runtime(self) -> dict:
        """What the runtime (and the exported train.py) reads from the plan's recipe."""
        return {"engine": self.engine, "reshard_after_forward": self.reshard_after_forward}


SHARDING_REGISTRY: dict[str, ShardingSpec] = {s.id: s for s in (
    ShardingSpec("none", "DDP (replicas)", "DDP: every GPU holds a full replica plus gradient buckets (C6.8)",
                 runs_as="DDP (a full replica per GPU)"),
    # ZeRO-1 runs as DDP here (torch has no ZeRO-1 engine of its own); estimated with its sharded states.
    ShardingSpec("zero1", "ZeRO-1", "ZeRO-1: optimizer states sharded", shards_optimizer=True,
                 runs_as="DDP (a full replica per GPU)", gathers_after_step=True),
    ShardingSpec("zero2", "ZeRO-2", "ZeRO-2 (DeepSpeed): every GPU keeps the whole 16-bit model; gradients and "
                 "optimizer states sharded (the CPU trial runs it as FSDP2 reshard_after_forward=False, which also "
                 "holds a 1/n parameter shard)", shards_optimizer=True,
                 shards_gradients=True, engine="fully_shard", reshard_after_forward=False,
                 runs_as="FSDP2 keeping parameters gathered between forward and backward (ZeRO-2-like)",
                 gathers_after_step=True),
    ShardingSpec("zero3", "ZeRO-3", "ZeRO-3: parameters, gradients and optimizer states sharded",
                 shards_optimizer=True, shards_gradients=True, shards_parameters=True, engine="fully_shard",
                 runs_as="FSDP2 full shard (ZeRO-3-like)"),
    ShardingSpec("fsdp", "FSDP / ZeRO-3", "FSDP full shard: parameters, gradients and optimizer states sharded",
                 shards_optimizer=True, shards_gradients=True, shards_parameters=True, engine="fully_shard",
                 runs_as="FSDP2 full shard", host_optimizer="torch"),
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
    """Bytes of one state element an update pass moves when the states are not in the parameter's dtype."""
    factored: bool = False
    """Second moment kept as row and column statistics per matrix (Shazeer & Stern 2018)."""
    constructor: str = ""
    """The class the runtime builds (module path and name)."""
    kwargs: tuple = ()
    """Constructor arguments besides the parameters and the learning rate, as (name, value) pairs."""
    foreach: bool = False
    """Accepts torch's ``foreach`` switch (list-wide kernels and their temporaries)."""
    update_passes: tuple = (2, 1, 2, 0)
    """Full-tensor memory passes one update makes per trainable element, counted in the implementation
    the runtime builds, as (weights, gradients, state elements, temporaries): each weight or gradient pass
    moves the parameter's dtype, each state pass one state element (``moved_state_bytes``, else the
    parameter's dtype), each temporary pass a state-sized element (``estimators/steptime.py``)."""
    needs: tuple = ()
    """Packages beyond torch the runtime needs for it."""

    def runtime(self) -> dict:
        return {"class": self.constructor, "kwargs": dict(self.kwargs), "foreach": self.foreach}


OPTIMIZER_REGISTRY: dict[str, OptimizerSpec] = {o.id: o for o in (
    # torch.optim.AdamW: exp_avg and exp_avg_sq in the parameter's dtype. Its default on CUDA is the foreach
    # path (torch 2.13 optim/adam.py: fused is not the default), one list-wide kernel per op, counted in
    # _multi_tensor_adam: weight decay mul_ (weights r+w), lerp_ of exp_avg (state r+w, gradient r),
    # mul_ and addcmul_ of exp_avg_sq (state r+w twice, gradient r), sqrt into a temporary (state r, temp w),
    # div_ and add_ of eps on it (temp r+w twice), addcdiv_ (weights r+w, state r, temp r).
    OptimizerSpec("adamw", "AdamW", 2, constructor="torch.optim.AdamW", foreach=True, update_passes=(4, 2, 8, 6)),
    # bitsandbytes AdamW8bit: two uint8 states plus an fp32 absmax per 256-value block (Dettmers et al. 2021):
    # 2 + 2·4/256 = 2.03 bytes per element. One fused kernel per tensor reads weight, gradient and the two
    # one-byte states and writes weight and states back.
    OptimizerSpec("adamw_8bit", "8-bit AdamW", None, state_bytes=2 + 2 * 4 / 256, moved_state_bytes=1,
                  constructor="bitsandbytes.optim.AdamW8bit", needs=("bitsandbytes",), update_passes=(2, 1, 4, 0)),
    # SGD with momentum 0.9: one buffer in the parameter's dtype; torch's _multi_tensor_sgd: buffer mul_ and
    # add_ of the gradient (buffer r+w twice, gradient r), then the weights' add_ of the buffer (weights r+w,
    # buffer r).
    OptimizerSpec("sgd", "SGD (momentum)", 1, constructor="torch.optim.SGD", kwargs=(("momentum", 0.9),),
                  foreach=True, update_passes=(2, 1, 5, 0)),
    # Adafactor without momentum, fixed learning rate (transformers' implementation): rows + cols per matrix.
    # Not counted pass by pass: weights read and written, the gradient read and a weight-sized update
    # written and read (its factored statistics are small).
    OptimizerSpec("adafactor", "Adafactor", None, moved_state_bytes=0, factored=True,
                  constructor="transformers.optimization.Adafactor",
                  kwargs=(("scale_parameter", False), ("relative_step", False), ("warmup_init", False)),
                  update_passes=(4, 1, 0, 0)),
)}
OPTIMIZERS = tuple(OPTIMIZER_REGISTRY)


def optimizer(optimizer_id: str) -> OptimizerSpec:
    return OPTIMIZER_REGISTRY[optimizer_id]
