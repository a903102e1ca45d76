"""A job as the server tracks it: state rebuilt from events, so a restarted server knows its past."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.run_dir import RunDir

from .events_log import EventLog
from .paths import resolve_inside
from .wire_text import bad_text, scrub

RESUMABLE = ("interrupted", "cancelled", "failed")
log = logging.getLogger("vsdream.server")


class UnreadableRun(Exception):
    """A run folder with a spec.json that cannot be read as a job; the message says why."""


@dataclass
class Job:
    id: str
    run: RunDir
    spec: dict[str, Any]
    created: float = field(default_factory=time.time)
    state: str = "queued"
    last_seq: int = 0
    stage: str = ""
    step: int = 0
    total: int = 0
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path relative to the run folder
    error: dict[str, Any] | None = None
    cancel_reason: str | None = None  # "user" | "shutdown" once a cancel was asked for / happened
    queued_seq: int = 0  # seq of the latest "queued" event: where this run (or resumed run) begins
    subscribers: dict[Any, bool] = field(default_factory=dict)  # client -> wants previews
    worker: Any = None
    kill_timer: Any = None  # the pending hard kill of a cancelled run (asyncio.TimerHandle)
    checkpoint_name: str | None = None  # newest checkpoint, as of the last look (refresh_checkpoint)
    log: EventLog = field(init=False)
    _summary: tuple[dict[str, Any], bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.log = EventLog(self.run.events_path)

    @property
    def terminal(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def unfinished(self) -> bool:
        """Stopped by the server going away rather than by the user or an error: auto-resume these."""
        return self.state == "interrupted" or (self.state == "cancelled" and self.cancel_reason == "shutdown")

    def apply(self, ev: dict[str, Any]) -> None:
        """Fold one event into the job's state (live, and when re-reading events.jsonl)."""
        kind = ev.get("type")
        self._summary = None
        self.last_seq = max(self.last_seq, int(ev.get("seq", 0)))
        if kind == "queued":
            self.state, self.error, self.cancel_reason = "queued", None, None
            self.queued_seq = self.last_seq
        elif kind == "started":
            self.state = "running"
        elif kind == "stage":
            self.stage, self.total, self.step = ev.get("stage", ""), ev.get("total", 0), ev.get("resumed_from", 0)
        elif kind == "progress":
            self.stage, self.step, self.total = ev.get("stage", ""), ev.get("step", 0), ev.get("total", 0)
        elif kind == "artifact":
            path = resolve_inside(self.run.root, ev.get("path"))
            if path is not None:
                self.artifacts[str(ev.get("name"))] = path.relative_to(self.run.root.resolve()).as_posix()
        elif kind in ("done", "failed", "cancelled"):
            self.state = kind
            if kind == "failed":
                self.error = {k: ev.get(k, "") for k in ("code", "message", "hint")}
            if kind == "cancelled":
                self.cancel_reason = ev.get("reason", "user")
            if isinstance(ev.get("checkpoint"), str) and ev["checkpoint"]:
                self.checkpoint_name = Path(ev["checkpoint"]).name

    def checkpoint(self) -> str | None:
        """Newest checkpoint file name in ckpt/, if any (a folder walk: keep it off the event loop)."""
        try:
            files = sorted(self.run.ckpt.glob("*.pt"), key=lambda p: p.stat().st_mtime)
        except OSError:  # the folder, or a file in it, went away meanwhile
            files = []
        return files[-1].name if files else None

    def refresh_checkpoint(self) -> None:
        """Look at ckpt/ again (a worker thread calls this when a run ends)."""
        self.checkpoint_name = self.checkpoint()
        self._summary = None

    def summary_sized(self) -> tuple[dict[str, Any], bytes]:
        """list_jobs' entry and its JSON, cached until the next event (no disk access, no re-encoding)."""
        if self._summary is None:
            entry = self._summary_now()
            self._summary = entry, json.dumps(entry, separators=(",", ":"), ensure_ascii=False,
                                              default=str).encode("utf-8", "replace")
        return self._summary

    def summary(self) -> dict[str, Any]:
        return self.summary_sized()[0]

    def _summary_now(self) -> dict[str, Any]:
        """What list_jobs shows; text an older version stored unchecked is shown with U+FFFD."""
        return scrub({
            "job_id": self.id, "state": self.state, "created": self.created, "last_seq": self.last_seq,
            "prompt": self.spec.get("prompt", ""), "preset": self.spec.get("preset", ""),
            "prior": self.spec.get("prior", ""), "mode": self.spec.get("mode", "text"),
            "stage": self.stage, "step": self.step, "total": self.total, "run_dir": str(self.run.root),
            "artifacts": sorted(self.artifacts), "error": self.error, "checkpoint": self.checkpoint_name,
            "resumable": self.state in RESUMABLE,
        })

    @classmethod
    def load(cls, root: Path) -> Job | None:
        """Rebuild a job from its run folder; None when it is not a job folder (no spec.json).

        Raises UnreadableRun when spec.json is there but cannot be read as a JSON object."""
        run = RunDir(root)
        if not run.spec_path.is_file():
            return None
        try:
            raw = run.spec_path.read_bytes()
            created = run.spec_path.stat().st_mtime
        except OSError as exc:
            raise UnreadableRun(f"spec.json cannot be read ({exc.strerror})") from None
        try:
            spec = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise UnreadableRun(f"spec.json is not UTF-8 text (byte {exc.start})") from None
        except (ValueError, RecursionError) as exc:
            raise UnreadableRun(f"spec.json is not valid JSON ({exc})") from None
        if not isinstance(spec, dict):
            raise UnreadableRun(f"spec.json holds a JSON {type(spec).__name__}, not an object")
        bad = bad_text(spec)
        if bad:
            log.warning("run folder %s: spec.json has text that is not valid Unicode in %s (%s); "
                        "list_jobs shows it with U+FFFD", root, ", ".join(f for f, _ in bad), bad[0][1])
        job = cls(root.name, run, spec, created=created)
        for ev in job.log.read():
            job.apply(ev)
        job.checkpoint_name = job.checkpoint()
        if job.state in ("queued", "running"):
            job.state = "interrupted"  # the server went away before the job ended
        return job
