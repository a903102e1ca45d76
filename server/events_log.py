"""events.jsonl: every event of a job, one JSON object per line, with a per-job sequence number.

Appends are flushed per line (a crash loses at most the line being written) and terminal events
are fsynced. Reading skips a torn last line, so a server killed mid-write still restarts cleanly.
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
        if self._fh is None:
            self._fh = open(self.path, "ab")
            if self._fh.tell() and not _ends_with_newline(self.path):
                self._fh.write(b"\n")  # seal a torn line left by a crash
        self._fh.write(json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n")
        self._fh.flush()
        if sync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def read(self, after_seq: int = 0, upto_seq: int | None = None) -> Iterator[dict[str, Any]]:
        """Events with after_seq < seq ≤ upto_seq, in order; unreadable lines are skipped."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            for line in fh:
                try:
                    ev = json.loads(line)
                    seq = ev["seq"]
                except (ValueError, KeyError, TypeError, RecursionError):
                    continue
                if not isinstance(seq, int) or isinstance(seq, bool):
                    continue  # a line some other program wrote: not an event of ours
                if seq <= after_seq:
                    continue
                if upto_seq is not None and seq > upto_seq:
                    break
                yield ev


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
