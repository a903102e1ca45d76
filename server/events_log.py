"""events.jsonl: every event of a job, one JSON object per line, with a per-job sequence number.

Appends are written unbuffered, one line per write (a crash loses at most the line being written)
and terminal events are fsynced. A failed write (a full disk) drops the file handle, so nothing
half-written stays buffered; the next append seals the torn line first. Reading skips torn lines,
so a server killed mid-write still restarts cleanly. Replays read in chunks from a byte offset,
so a long history never sits in memory whole.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class EventLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh: Any = None

    def append(self, header: dict[str, Any], sync: bool = False) -> None:
        """Write one event line; OSError (ENOSPC…) when it could not be written whole."""
        line = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"
        try:
            if self._fh is None:
                self._fh = open(self.path, "ab", buffering=0)
                if self._fh.tell() and not _ends_with_newline(self.path):
                    line = b"\n" + line  # seal a torn line left by a crash or a full disk
            view = memoryview(line)
            while view:
                view = view[self._fh.write(view):]
            if sync:
                os.fsync(self._fh.fileno())
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None

    def read_chunk(self, pos: int, after_seq: int, upto_seq: int, max_events: int) -> tuple[list[dict], int, bool]:
        """Up to `max_events` events with after_seq < seq ≤ upto_seq from byte `pos` on:
        (events, the byte offset to continue from, whether the range is finished)."""
        out: list[dict[str, Any]] = []
        if not self.path.exists():
            return out, pos, True
        with open(self.path, "rb") as fh:
            fh.seek(pos)
            while len(out) < max_events:
                line = fh.readline()
                if not line:
                    return out, fh.tell(), True
                ev = _parse(line)
                if ev is None or ev["seq"] <= after_seq:
                    continue
                if ev["seq"] > upto_seq:
                    return out, fh.tell(), True
                out.append(ev)
            return out, fh.tell(), False

    def read(self, after_seq: int = 0, upto_seq: int | None = None) -> Iterator[dict[str, Any]]:
        """Events with after_seq < seq ≤ upto_seq, in order; unreadable lines are skipped."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            for line in fh:
                ev = _parse(line)
                if ev is None or ev["seq"] <= after_seq:
                    continue
                if upto_seq is not None and ev["seq"] > upto_seq:
                    break
                yield ev


def _parse(line: bytes) -> dict[str, Any] | None:
    """One event line, or None for a torn line or one some other program wrote."""
    try:
        ev = json.loads(line)
        seq = ev["seq"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None
    return ev


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
