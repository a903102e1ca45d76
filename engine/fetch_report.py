"""What `vsdream models fetch` tells its reader: sentences for people, `VSDREAM_FETCH {json}` lines
for programs (the Blender add-on's "Download weights" turns them into bytes / total / ETA).

Events: plan (total, present, need, free bytes and the cache folder, before anything downloads),
progress (done / total bytes, twice a second while downloading), done, error (message and hint).
"""
from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import EngineError

PREFIX = "VSDREAM_FETCH"


class FetchReport:
    def __init__(self, machine: bool, interval_s: float = 0.5, human_every_s: float = 10.0) -> None:
        self.machine = machine
        self.interval_s = interval_s if machine else human_every_s
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)

    def event(self, kind: str, **data) -> None:
        if self.machine:
            with self._lock:
                print(f"{PREFIX} {json.dumps({'event': kind, **data})}", flush=True)

    def error(self, repo: str, exc: EngineError) -> int:
        print(f"error: {exc}\nhint: {exc.hint}", file=sys.stderr, flush=True)
        self.event("error", repo=repo, message=str(exc), hint=exc.hint or "")
        return 1

    @contextmanager
    def watch(self, done_bytes: Callable[[], int], total: int, repo: str) -> Iterator[None]:
        """Report done_bytes() every interval while the body downloads."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.interval_s):
                done = done_bytes()
                if self.machine:
                    self.event("progress", repo=repo, done=done, total=total)
                else:
                    self.say(f"  {done / 1e9:.2f} / {total / 1e9:.2f} GB")

        thread = threading.Thread(target=loop, name="fetch-progress", daemon=True)
        started = time.monotonic()
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            if not self.machine and time.monotonic() - started > self.interval_s:
                self.say(f"  {done_bytes() / 1e9:.2f} / {total / 1e9:.2f} GB")
