"""A client's send queue: ordered, bounded, and never a reason for the engine to wait.

Progress, previews and heartbeats are coalesced (latest wins per job): a newer one replaces the
pending older one and moves to the back, so order relative to other events holds. Everything
else (stage, artifact, log, done, replies) is kept; when more than `max_items` of those pile up
the client is hopeless and `put` returns False so the server drops the connection (it can
re-attach later and replay what it missed from disk).
"""
from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

COALESCED = ("progress", "preview", "heartbeat")


class Outbox:
    def __init__(self, max_items: int = 10_000):
        self.max_items = max_items
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._ids = itertools.count()
        self._kept = 0  # items that are not coalescable
        self._wakeup = asyncio.Event()
        self.replaced = 0  # how many coalescable items a newer one replaced (for tests/benchmarks)

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any, coalesce_key: Hashable | None = None) -> bool:
        if coalesce_key is None:
            if self._kept >= self.max_items:
                return False
            self._kept += 1
            self._items[("kept", next(self._ids))] = item
        else:
            if self._items.pop(coalesce_key, None) is not None:
                self.replaced += 1
            self._items[coalesce_key] = item
        self._wakeup.set()
        return True

    async def get(self) -> Any:
        while not self._items:
            self._wakeup.clear()
            await self._wakeup.wait()
        key, item = self._items.popitem(last=False)
        if key[0] == "kept":
            self._kept -= 1
        return item


def coalesce_key(header: dict[str, Any]) -> tuple[str, ...] | None:
    kind = header.get("type")
    if kind in COALESCED:
        return (str(kind), str(header.get("job_id", "")))
    return None
