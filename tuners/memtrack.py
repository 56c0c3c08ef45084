"""Peak live tensor bytes of a training step, on any device (CPU included).

``LiveTensorTracker`` is a ``TorchDispatchMode`` that sees every tensor an op creates, counts each
storage once (views share it) and subtracts it when the storage is freed, so its ``peak`` is what
``torch.cuda.max_memory_allocated()`` would report without allocator rounding. It plays the role of
torch's ``MemTracker`` with two differences we need: frozen parameters are fine (no gradient hooks),
and it keeps only the global peak plus the phase it fell in (``forward``/``backward``/``optimizer``),
which makes it several times faster.

Tensors that exist before the step (weights, optimizer states) are registered with ``track``.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveTensorTracker(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self._live: dict[int, int] = {}  # id of a storage's finalizer key -> bytes
        self.current = 0
        self.peak = 0
        self.peak_phase = "setup"
        self.phase = "setup"
        self.by_phase: dict[str, int] = {}

    # -- bookkeeping ----------------------------------------------------------------------------
    def _add(self, t) -> None:
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            return
        t = getattr(t, "_local_tensor", t)  # a DTensor (FSDP2's sharded parameters) holds only its local shard
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse / opaque tensors
            return
        key = st._cdata
        if key in self._live:
            return
        size = st.nbytes()
        self._live[key] = size
        self.current += size
        weakref.finalize(st, self._free, key)
        if self.current > self.peak:
            self.peak, self.peak_phase = self.current, self.phase
        if self.current > self.by_phase.get(self.phase, 0):
            self.by_phase[self.phase] = self.current

    def _free(self, key: int) -> None:
        size = self._live.pop(key, 0)
        self.current -= size

    def track(self, *objects) -> None:
        """Registers tensors that already exist: modules (parameters, buffers, grads), optimizers, tensors."""
        for obj in objects:
            if isinstance(obj, torch.nn.Module):
                for p in obj.parameters():
                    self._add(p)
                    if p.grad is not None:
                        self._add(p.grad)
                for b in obj.buffers():
                    self._add(b)
            elif isinstance(obj, torch.optim.Optimizer):
                for state in obj.state.values():
                    for v in state.values():
                        self._add(v)
            else:
                for t in tree_flatten(obj)[0]:
                    self._add(t)

    def set_phase(self, name: str) -> None:
        self.phase = name

    def reset_peak(self) -> None:
        self.peak, self.peak_phase, self.by_phase = self.current, self.phase, {}

    # -- the dispatch hook ----------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out
