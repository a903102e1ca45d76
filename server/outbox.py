"""A client's send queue: ordered, bounded in items and bytes, never a reason for the engine to wait.

Two lanes. Replies and heartbeats (anything that is not a job event) go in the *urgent* lane and
are written first, so a pong never waits behind a backlog of events or a long replay (the writer
also drains the urgent lane between replay chunks). Job events keep their order in the normal lane.

Progress, previews and heartbeats are coalesced (latest wins per job): a newer one replaces the
pending older one and moves to the back, so order relative to other events holds. Everything
else is kept; when more than `max_items` of those pile up, or the queued bytes pass `max_bytes`,
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
MAX_QUEUED_BYTES = 64 << 20  # per connection: kept + coalesced frames waiting for the socket


class Outbox:
    def __init__(self, max_items: int = 10_000, max_bytes: int = MAX_QUEUED_BYTES):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._lanes: tuple[OrderedDict[Hashable, tuple[Any, int]], ...] = (OrderedDict(), OrderedDict())
        self._ids = itertools.count()
        self._kept = 0  # items that are not coalescable
        self.bytes = 0  # bytes of every queued item (as told by put)
        self._wakeup = asyncio.Event()
        self.replaced = 0  # how many coalescable items a newer one replaced (for tests/benchmarks)

    def __len__(self) -> int:
        return len(self._lanes[0]) + len(self._lanes[1])

    def put(self, item: Any, coalesce_key: Hashable | None = None, urgent: bool = False, nbytes: int = 0,
            force: bool = False) -> bool:
        """Queue `item` (its size `nbytes`); False when the client is too far behind (nothing queued).

        `force` never refuses (the close marker)."""
        lane = self._lanes[0 if urgent else 1]
        if coalesce_key is None:
            if not force and (self._kept >= self.max_items or self.bytes + nbytes > self.max_bytes):
                return False
            self._kept += 1
            lane[("kept", next(self._ids))] = (item, nbytes)
        else:
            old = lane.pop(coalesce_key, None)
            if old is not None:
                self.replaced += 1
                self.bytes -= old[1]
            if not force and self.bytes + nbytes > self.max_bytes:
                return False
            lane[coalesce_key] = (item, nbytes)
        self.bytes += nbytes
        self._wakeup.set()
        return True

    def pop_urgent(self) -> Any | None:
        """The next urgent item, or None (the writer calls this between replay chunks)."""
        return self._pop(self._lanes[0]) if self._lanes[0] else None

    async def get(self) -> Any:
        while not len(self):
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._pop(self._lanes[0] if self._lanes[0] else self._lanes[1])

    def _pop(self, lane: OrderedDict[Hashable, tuple[Any, int]]) -> Any:
        key, (item, nbytes) = lane.popitem(last=False)
        self.bytes -= nbytes
        if key[0] == "kept":
            self._kept -= 1
        return item

    def clear(self) -> None:
        """Drop everything (a closed connection must not keep frames alive)."""
        for lane in self._lanes:
            lane.clear()
        self._kept = self.bytes = 0


def coalesce_key(header: dict[str, Any]) -> tuple[str, ...] | None:
    kind = header.get("type")
    if kind in COALESCED:
        return (str(kind), str(header.get("job_id", "")))
    return None
