"""'Download weights': the engine's own `models fetch` in the engine environment, watched from Blender.

The fetch runs as a subprocess of the engine's Python (Blender never imports huggingface_hub) and
prints `VSDREAM_FETCH {json}` lines (engine/fetch_report.py); a reader thread turns them into inbox
items and the pump's hook feeds them to a DownloadState, which the preferences draw as bytes /
total / speed / ETA. Stopping it kills the process: the next download continues the partial file.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field

PREFIX = "VSDREAM_FETCH "
RATE_WINDOW_S = 15.0  # speed over the last seconds: a stalled link shows as a falling speed


def parse_line(line: str) -> dict | None:
    """A fetch event from one output line, None for anything else (human text, hub progress bars)."""
    if not line.startswith(PREFIX):
        return None
    try:
        data = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("event"), str) else None


def human_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def human_time(s: float) -> str:
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@dataclass
class DownloadState:
    """What the preferences show about the weights download."""
    running: bool = False
    total: int = 0
    done: int = 0
    need: int = 0
    free: int = 0
    cache: str = ""
    repo: str = ""
    result: str = ""  # the closing line: done, or the error and its hint
    ok: bool | None = None
    samples: deque = field(default_factory=deque)  # (time, done bytes)

    def start(self) -> None:
        self.__init__()
        self.running = True

    def apply(self, ev: dict, now: float) -> None:
        kind = ev.get("event")
        if kind == "plan":
            self.total, self.need, self.free = int(ev["total"]), int(ev["need"]), int(ev["free"])
            self.done, self.cache = int(ev.get("present", 0)), str(ev.get("cache", ""))
            self.samples.clear()
            self.samples.append((now, self.done))
        elif kind == "progress":
            self.done, self.total, self.repo = int(ev["done"]), int(ev["total"]), str(ev.get("repo", ""))
            self.samples.append((now, self.done))
            while len(self.samples) > 2 and now - self.samples[0][0] > RATE_WINDOW_S:
                self.samples.popleft()
        elif kind == "error":
            self.ok, self.result = False, f"{ev.get('message', '')} — {ev.get('hint', '')}".strip(" —")
        elif kind == "done":
            self.ok = True
            self.done = self.total = max(self.total, int(ev.get("total", 0)))
            self.result = "weights ready" if self.total else "weights already in the cache"

    def rate(self) -> float | None:
        """Bytes per second over the recent window (None before two samples a moment apart)."""
        if len(self.samples) < 2:
            return None
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 - t0 >= 0.5 else None

    def eta_s(self) -> float | None:
        r = self.rate()
        return (self.total - self.done) / r if r and r > 0 and self.total > self.done else None

    def lines(self) -> list[str]:
        out = []
        if self.total:
            out.append(f"Needs {human_bytes(self.need)} ({human_bytes(self.free)} free in {self.cache})")
            pct = 100.0 * self.done / self.total
            line = f"{human_bytes(self.done)} / {human_bytes(self.total)} ({pct:.0f}%)"
            r, eta = self.rate(), self.eta_s()
            if self.running and r is not None:
                line += f", {human_bytes(r)}/s"
            if self.running and eta is not None:
                line += f", ETA {human_time(eta)}"
            out.append(line)
        if self.result:
            out.append(("Done: " if self.ok else "Failed: ") + self.result)
        return out


STATE = DownloadState()  # the one download the preferences show (main thread only)
CURRENT: Fetch | None = None


def fetch_command(python: str, model_ids: list[str] | None = None) -> list[str]:
    """The engine's fetch with machine-readable progress (default: the two models VSD uses)."""
    return [python, "-m", "engine.models_cli", "fetch", "--progress", *(model_ids or [])]


def engine_env(backend_dir: str = "") -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    if backend_dir:
        env["PYTHONPATH"] = os.pathsep.join([backend_dir] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


class Fetch:
    """One running fetch: its process and the thread that reads it into `put(kind, data)`."""

    def __init__(self, cmd: list[str], env: dict[str, str], put) -> None:
        self.cmd, self.env, self.put = cmd, env, put
        self.proc: subprocess.Popen | None = None
        self.stopped = False
        self.thread = threading.Thread(target=self._work, name="vsdream-weights", daemon=True)

    def start(self) -> Fetch:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Kill the fetch; its partial file stays and the next fetch continues it."""
        self.stopped = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def _work(self) -> None:
        tail: deque[str] = deque(maxlen=6)
        try:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env)
        except OSError as exc:
            self.put("weights_done", (False, f"could not run {self.cmd[0]}: {exc}"))
            return
        for raw in iter(self.proc.stdout.readline, b""):
            for line in raw.decode("utf-8", "replace").replace("\r", "\n").split("\n"):
                ev = parse_line(line.strip())
                if ev is not None:
                    self.put("weights_event", (ev, time.monotonic()))
                elif line.strip() and not _is_progress_bar(line):
                    tail.append(line.strip()[:300])
        code = self.proc.wait()
        if self.stopped:
            self.put("weights_done", (False, "stopped; 'Download weights' continues where it stopped"))
        elif code != 0:
            self.put("weights_done", (False, f"fetch exited with status {code}: " + " | ".join(tail)))
        else:
            self.put("weights_done", (True, tail[-1] if tail else "done"))


def _is_progress_bar(line: str) -> bool:
    return "%|" in line or "it/s]" in line or "B/s]" in line
