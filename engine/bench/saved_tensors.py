"""Bytes autograd keeps for backward, counted with saved-tensor hooks (tests and `bench memory`).

Why hooks rather than allocator statistics: they see exactly what a graph holds between forward
and backward, on any device, including CPU where there is no peak-memory counter. A storage
saved twice (Linear's input is ReLU's output) is counted once; parameters are not counted.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class SavedBytes:
    """Context manager: `bytes` = distinct non-parameter storages saved for backward inside it."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self._skip = {_key(t) for t in exclude}
        self._seen: set[tuple[Any, ...]] = set()
        self.bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _key(t)
        if key not in self._skip and key not in self._seen:
            self._seen.add(key)
            self.bytes += t.untyped_storage().nbytes()
        return t

    def __enter__(self) -> SavedBytes:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


def _key(t: torch.Tensor) -> tuple[Any, ...]:
    try:
        return (str(t.device), t.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):  # fake or meta tensors have no data pointer: count each once
        return ("id", id(t))


def saved_bytes(fn: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> tuple[Any, int]:
    """Run `fn` and return (its result, bytes it saved for backward outside `exclude`)."""
    with SavedBytes(exclude) as counter:
        out = fn()
    return out, counter.bytes
