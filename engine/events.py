"""Typed events a running job emits. The server forwards them; the CLI prints them.

Every event serialises to a JSON-safe dict (`to_dict`) whose "event" key names its kind; binary
image data travels separately (`payload`) so it never bloats JSON.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class Progress:
    kind: ClassVar[str] = "progress"
    stage: str
    step: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    it_per_s: float = 0.0
    eta_s: float = 0.0
    gpu_mem_mb: float | None = None


@dataclass
class Preview:
    """One preview frame: 8-bit RGB, top row first (`rgb` has width*height*3 bytes)."""

    kind: ClassVar[str] = "preview"
    stage: str
    step: int
    width: int
    height: int
    rgb: bytes = b""
    normal: bytes | None = None
    path: str | None = None


@dataclass
class Artifact:
    kind: ClassVar[str] = "artifact"
    name: str
    path: str
    size: int
    role: str = "result"


@dataclass
class Log:
    kind: ClassVar[str] = "log"
    level: str
    message: str


@dataclass
class StageStarted:
    kind: ClassVar[str] = "stage"
    stage: str
    total: int
    resumed_from: int = 0


@dataclass
class Done:
    kind: ClassVar[str] = "done"
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class Failed:
    kind: ClassVar[str] = "failed"
    code: str
    message: str
    hint: str = ""
    traceback: str = ""


@dataclass
class Cancelled:
    kind: ClassVar[str] = "cancelled"
    stage: str = ""
    step: int = 0
    checkpoint: str | None = None


Event = Progress | Preview | Artifact | Log | StageStarted | Done | Failed | Cancelled
EventSink = Callable[[Event], None]


def event_to_dict(ev: Event) -> tuple[dict[str, Any], bytes]:
    """JSON-safe header and binary payload (preview RGB, then normal RGB if any)."""
    d = dataclasses.asdict(ev)
    payload = b""
    if isinstance(ev, Preview):
        rgb, normal = d.pop("rgb"), d.pop("normal")
        d["rgb_bytes"] = len(rgb)
        d["normal_bytes"] = len(normal) if normal else 0
        payload = rgb + (normal or b"")
    d["event"] = ev.kind
    return d, payload
