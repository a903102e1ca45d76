"""Live tensor memory (current and peak bytes) of code run under FakeTensorMode, any device.

Why not torch's MemTracker: it registers a gradient hook on every parameter (frozen UNet weights
make it fail), refuses a root module called twice, and loses its module bookkeeping when backward
runs inside a module's forward, all of which one VSD step does. This mode counts what an allocator
would hold: every storage an op creates or that is registered up front, once, until its last
reference goes (a weakref on the storage, as MemTracker does). Phases give a split: bytes alive
at the end of each phase and the peak reached inside it.
"""
from __future__ import annotations

import weakref
from collections.abc import Iterable
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveMemory(TorchDispatchMode):
    """Dispatch mode: `current` and `peak` bytes of distinct live storages; `phases` the split."""

    def __init__(self) -> None:
        super().__init__()
        self.current = self.peak = 0
        self._live: dict[int, int] = {}
        self._refs: dict[int, Any] = {}
        self.phases: dict[str, dict[str, float]] = {}
        self._phase_peak = 0

    def track(self, *objs: torch.nn.Module | torch.Tensor | Iterable[torch.Tensor]) -> None:
        """Count tensors created before the mode was entered: module parameters and buffers, tensors."""
        for obj in objs:
            if isinstance(obj, torch.nn.Module):
                for t in [*obj.parameters(), *obj.buffers()]:
                    self._add(t)
            elif isinstance(obj, torch.Tensor):
                self._add(obj)
            else:
                for t in obj:
                    self._add(t)

    def _add(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        key = st._cdata
        if key in self._live:
            return
        nbytes = st.nbytes()
        self._live[key] = nbytes
        self._refs[key] = weakref.ref(st, lambda _, k=key: self._free(k))
        self.current += nbytes
        self.peak = max(self.peak, self.current)
        self._phase_peak = max(self._phase_peak, self.current)

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)
        self._refs.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out

    @contextmanager
    def phase(self, name: str):
        """Record bytes alive at the end of the block and the peak inside it (GiB), under `name`."""
        start, self._phase_peak = self.current, self.current
        yield
        gib = 2 ** 30
        self.phases[name] = {"start_gb": start / gib, "end_gb": self.current / gib, "peak_gb": self._phase_peak / gib}
