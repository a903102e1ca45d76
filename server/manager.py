"""The job manager: FIFO queue, one worker per device, run folders, events, cancel, resume, crashes.

Every event a job produces goes through `_record`: it gets the job's next sequence number, lands
in events.jsonl (previews as PNG files next to it), updates the job's state, and is handed to each
attached client's outbox. Nothing here ever waits for a client. An event that cannot be written
(a full disk) is still applied and delivered, and fails its job (`disk_full`): a job never stays
"running" because its log could not grow.

list_jobs is served from summaries cached on each job (updated by its events; the checkpoint name
is looked up off the loop when a run ends), newest first, one bounded page at a time.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import math
import re
import secrets
import shutil
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol

from engine.run_dir import RunDir, remove_checkpoint_orphans

from .job import RESUMABLE, Job, UnreadableRun
from .path_policy import PathPolicy
from .paths import resolve_inside
from .preview_store import PreviewStore
from .protocol import ERROR_HINTS, TERMINAL_EVENTS, Frame, ProtocolError, problem
from .protocol.validation import LIST_PAGE_MAX
from .storage_errors import storage_error, storage_problem
from .submit_check import UploadQuota, check_submit
from .wire_text import scrub
from .worker_handle import WorkerHandle

log = logging.getLogger("vsdream.server")
LOG_TAIL_LINES = 40
PAGE_DEFAULT = 100  # list_jobs entries per reply unless the client asks (at most LIST_PAGE_MAX)
PAGE_BYTES = 512 << 10  # a page stops before its jobs would pass this many bytes of JSON (header cap: 1 MiB)
UNREADABLE_SHOWN = 100  # unreadable run folders named per reply (the count is always whole)


class Subscriber(Protocol):
    def deliver(self, frame: Frame) -> None: ...
    def queue_replay(self, job: Job, after_seq: int, upto_seq: int, previews: bool) -> None: ...


class JobManager:
    def __init__(self, runs_dir: Path, devices: list[str], job_fn: str, max_queue: int = 32,
                 cancel_grace_s: float = 30.0, path_policy: PathPolicy | None = None):
        self.runs_dir = Path(runs_dir)
        self.spool_dir = self.runs_dir / ".uploads"  # uploads arrive here, then move into their run folder
        self.uploads = UploadQuota(self.runs_dir)  # bounds on uploaded meshes kept (server/submit_check.py)
        self.path_policy = path_policy or PathPolicy()
        self.unreadable: dict[str, str] = {}  # run folder name -> why it cannot be listed as a job
        self.devices, self.job_fn = devices, job_fn
        self.max_queue, self.cancel_grace_s = max_queue, cancel_grace_s
        self.jobs: dict[str, Job] = {}
        self.order: list[Job] = []  # oldest first (list_jobs pages from the end)
        self.queue: deque[Job] = deque()
        self.slots: list[WorkerHandle | None] = [None] * len(devices)
        self.closing = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._inbox: asyncio.Queue[tuple[WorkerHandle, tuple]] = asyncio.Queue()
        self._crash_backoff = [0.0] * len(devices)
        self._tasks: set[asyncio.Task] = set()
        self.previews = PreviewStore()

    # ------------------------------------------------------------------ start
    def start(self, resume_unfinished: bool = False) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self._spawn_task(self._pump())
        shutil.rmtree(self.spool_dir, ignore_errors=True)  # uploads cut off by a previous server's exit
        for root in sorted(p for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                job = Job.load(root)
            except UnreadableRun as exc:
                log.warning("run folder %s cannot be listed as a job: %s", root, exc)
                self.unreadable[root.name] = str(exc)
                continue
            except Exception as exc:  # noqa: BLE001 - one broken folder must not stop the server
                log.exception("run folder %s cannot be read", root)
                self.unreadable[root.name] = f"{type(exc).__name__}: {exc}"
                continue
            if job is not None:
                self.jobs[job.id] = job
        self.order = sorted(self.jobs.values(), key=lambda j: (j.created, j.id))
        for slot in range(len(self.devices)):
            self._spawn_worker(slot)
        if resume_unfinished:
            for job in sorted(self.jobs.values(), key=lambda j: j.created):
                if job.unfinished:
                    log.info("resuming unfinished job %s", job.id)
                    self._spawn_task(self._resume_logged(job))

    def _spawn_task(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _spawn_worker(self, slot: int) -> None:
        loop = asyncio.get_running_loop()
        feed = lambda w, msg: self._inbox.put_nowait((w, msg))  # noqa: E731 - on the loop; bounded by credits
        self.slots[slot] = WorkerHandle(slot, self.devices[slot], self.job_fn, loop, feed,
                                        lambda w, code: feed(w, ("exit", code)))

    # ------------------------------------------------------------- requests
    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise ProtocolError("unknown_job", f"no job {job_id!r} on this server")
        return job

    async def submit(self, header: dict[str, Any], mesh: bytes = b"", mesh_file: Path | None = None) -> Job:
        """A new job; the mesh upload is `mesh` (small) or `mesh_file` (spooled to disk, moved here)."""
        self._check_capacity()
        job_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        root = self.runs_dir / job_id
        uploaded = bool(mesh) or mesh_file is not None
        mesh_path = root / "input" / _safe_name(header.get("mesh_name", "mesh.glb")) if uploaded else None
        spec = build_spec(header, mesh_path)
        problems = self.path_policy.check(spec, root)
        if problems:
            raise ProtocolError("invalid_spec", "the job spec names files this server does not serve: "
                                + ", ".join(p["field"] for p in problems), problems=problems)
        await check_submit(spec, mesh, mesh_file, header.get("mesh_name"), self.spool_dir, self.uploads)
        job = None
        try:  # a full disk answers disk_full and leaves no half run folder behind
            run = RunDir(root).create()
            if mesh_path is not None:  # up to 256 MiB: off the event loop
                mesh_path.parent.mkdir(parents=True, exist_ok=True)
                if mesh_file is not None:
                    await asyncio.to_thread(shutil.move, mesh_file, mesh_path)  # a rename on one file system
                else:
                    await asyncio.to_thread(mesh_path.write_bytes, mesh)
            run.write_spec(spec)
            job = Job(job_id, run, spec.to_dict())
            await self._enqueue(job, resumed=False)
        except OSError as exc:
            if job is not None:
                job.log.close()
            await asyncio.to_thread(shutil.rmtree, root, ignore_errors=True)
            log.error("submit: cannot write the run folder %s: %s", root, exc)
            raise storage_error(exc, "the new job's run folder", self.runs_dir) from None
        self.jobs[job_id] = job
        self.order.append(job)
        return job

    async def resume(self, job: Job) -> Job:
        if job.state not in RESUMABLE:
            raise ProtocolError("not_resumable", f"job {job.id} is {job.state}")
        self._check_capacity()
        await self._enqueue(job, resumed=True)
        return job

    async def _resume_logged(self, job: Job) -> None:
        try:
            await self.resume(job)
        except ProtocolError as exc:
            log.warning("cannot resume %s: %s", job.id, exc)

    def _check_capacity(self) -> None:
        if self.closing:
            raise ProtocolError("shutting_down", "the server is shutting down")
        if len(self.queue) >= self.max_queue:
            raise ProtocolError("busy", f"{len(self.queue)} jobs are already waiting (limit {self.max_queue})")

    async def _enqueue(self, job: Job, resumed: bool) -> None:
        """Queue it once its "queued" event is on disk; an OSError (full disk) leaves the job as it was."""
        try:
            await self._record(job, "queued", {"position": len(self.queue), "resumed": resumed}, strict=True)
        except OSError as exc:
            if resumed:
                raise storage_error(exc, f"the events of job {job.id}", self.runs_dir) from None
            raise
        self.queue.append(job)
        job.worker = None
        self._schedule()

    async def cancel(self, job: Job, reason: str = "user") -> str:
        """Queued: dropped now. Running: stop at the next step (checkpoint kept), hard kill after the grace."""
        if job.state == "queued" and job in self.queue:
            self.queue.remove(job)
            await self._record(job, "cancelled", {"reason": reason, "stage": job.stage, "step": job.step,
                                                  "checkpoint": job.checkpoint()})
        elif job.state == "running" and job.cancel_reason is None and job.worker is not None:
            job.cancel_reason = reason
            self._stop_worker(job)
        return job.state

    def _stop_worker(self, job: Job) -> None:
        """Ask the job's worker to stop (it checkpoints); kill it if it has not stopped after the grace."""
        if job.worker is not None:
            job.worker.request_stop()
            self._arm_kill(job, job.worker)

    def _arm_kill(self, job: Job, worker: WorkerHandle) -> None:
        """(Re)start the grace: from the cancel request, and again when the worker says it is saving."""
        if job.kill_timer is not None:
            job.kill_timer.cancel()
        job.kill_timer = asyncio.get_running_loop().call_later(self.cancel_grace_s, self._hard_kill, job, worker,
                                                               job.queued_seq)

    def _hard_kill(self, job: Job, worker: WorkerHandle, run_seq: int) -> None:
        """Kill the worker if this very run of the job (not a later resume) is still going."""
        job.kill_timer = None
        if worker.job_id == job.id and job.queued_seq == run_seq and not worker.exited:
            log.warning("job %s did not stop within %.0f s; killing its worker", job.id, self.cancel_grace_s)
            worker.kill()

    def subscribe(self, client: Subscriber, job: Job, after_seq: int, previews: bool) -> None:
        """Replay events after `after_seq` from disk, then stream live ones: no gap, no duplicate."""
        job.subscribers[client] = previews
        if after_seq < job.last_seq:
            client.queue_replay(job, after_seq, job.last_seq, previews)

    def unsubscribe(self, client: Subscriber, job: Job | None = None) -> None:
        for j in [job] if job is not None else self.jobs.values():
            j.subscribers.pop(client, None)

    def artifact_path(self, job: Job, name: str) -> Path:
        path = resolve_inside(job.run.root, job.artifacts.get(name, name))
        if path is None or not path.is_file():
            raise ProtocolError("not_found", f"job {job.id} has no file {name!r}")
        return path

    def spec_for(self, header: dict[str, Any]) -> Any:
        """The JobSpec a submit-shaped header (preset + overrides, or a spec) asks for, built as
        submit builds it, without a mesh or a run folder (the estimate request)."""
        return build_spec(header, None)

    def queue_position(self, job: Job) -> int:
        """0 for the next job to start (and for a job not in the queue)."""
        return next((i for i, j in enumerate(self.queue) if j is job), 0)

    def job_page(self, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """One list_jobs page, newest first: {jobs (each already JSON), total, offset, next_offset}. The
        page ends after `limit` jobs or before its JSON would pass PAGE_BYTES (at least one job per
        page); built from cached, pre-encoded summaries, so it neither touches the disk nor re-encodes."""
        total, limit = len(self.order), max(1, min(int(limit or PAGE_DEFAULT), LIST_PAGE_MAX))
        jobs: list[bytes] = []
        used, i = 0, offset
        while i < total and len(jobs) < limit:
            raw = self.order[total - 1 - i].summary_sized()[1]
            if jobs and used + len(raw) + 1 > PAGE_BYTES:
                break
            jobs.append(raw)
            used += len(raw) + 1
            i += 1
        return {"jobs": jobs, "total": total, "offset": offset, "next_offset": i if i < total else None}

    async def preview_payload(self, job: Job, event: dict[str, Any]) -> bytes | None:
        """The image bytes of a recorded preview event; None when its files are gone."""
        return await self.previews.load(job.id, job.run.root, event)

    def unreadable_runs(self) -> list[dict[str, Any]]:
        """Run folders that exist but cannot be read as jobs, with the reason (list_jobs shows them)."""
        return scrub([{"job_id": name, "run_dir": str(self.runs_dir / name), "error": why[:500]}
                      for name, why in sorted(self.unreadable.items())[:UNREADABLE_SHOWN]])

    def unreadable_count(self) -> int:
        return len(self.unreadable)

    def status(self) -> dict[str, Any]:
        return {"running": [j.id for j in self.jobs.values() if j.state == "running"], "queued": len(self.queue)}

    def workers(self) -> list[dict[str, Any]]:
        return [{"slot": i, "device": self.devices[i], "pid": w.pid if w else None, "ready": bool(w and w.ready),
                 "job_id": w.job_id if w else None, "engine_ok": bool(w and not w.import_error)}
                for i, w in enumerate(self.slots)]

    # ------------------------------------------------------------- workers
    def _schedule(self) -> None:
        if self.closing:
            return
        for worker in self.slots:
            if worker is not None and worker.idle and self.queue:
                job = self.queue.popleft()
                worker.job_id = job.id  # reserve it before anything can yield
                job.worker = worker
                self._spawn_task(self._start(worker, job))

    async def _start(self, worker: WorkerHandle, job: Job) -> None:
        await self._record(job, "started", {"device": worker.device, "worker_pid": worker.pid or 0})
        if job.terminal:  # "started" could not be written (full disk): the job failed before it ran
            worker.job_id, job.worker = None, None
            self._schedule()
            return
        worker.run(job.id, job.spec, str(job.run.root))  # a broken pipe shows up as the worker's exit

    async def _pump(self) -> None:
        """Worker messages, in arrival order (events of one job stay ordered)."""
        while True:
            worker, msg = await self._inbox.get()
            try:
                await self._on_worker(worker, msg)
            except Exception:  # a bad event must not stop the pump
                log.exception("handling worker message %r failed", msg[0])
            # let client writers run between events: coalescing then happens only under real back-pressure
            await asyncio.sleep(0)

    async def _on_worker(self, worker: WorkerHandle, msg: tuple) -> None:
        kind = msg[0]
        job = self.jobs.get(worker.job_id or "")
        if kind == "ready":
            worker.ready, worker.import_error = True, msg[1].get("error")
            self._crash_backoff[worker.slot] = 0.0
            if worker.import_error:
                log.error("worker %s cannot import the engine:\n%s", worker.pid, worker.import_error)
            self._schedule()
        elif kind == "event":
            release = worker.release_credit if len(msg) > 3 and msg[3] else None
            if job is None or job.terminal:
                if release is not None:
                    release()
                return
            header, payload = dict(msg[1]), msg[2]
            ev = header.pop("event")
            if ev == "cancelled":
                header["reason"] = job.cancel_reason or "user"
            await self._record(job, ev, header, payload, recorded=release)
        elif kind == "stopping":
            if job is not None and job.cancel_reason is not None and job.worker is worker:
                self._arm_kill(job, worker)  # the cancel checkpoint is being written: a full grace for it
        elif kind == "end":
            worker.job_id = None
            if job is not None:
                job.worker = None
                self._spawn_task(self._run_over(job))
            self._schedule()
        elif kind == "exit":
            await self._on_exit(worker, job, msg[1])

    async def _on_exit(self, worker: WorkerHandle, job: Job | None, code: int | None) -> None:
        worker.exited = True
        if job is not None and not job.terminal:
            fields = {"stage": job.stage, "step": job.step, "checkpoint": job.checkpoint()}
            if job.cancel_reason is not None:
                await self._record(job, "cancelled", {**fields, "reason": job.cancel_reason})
            else:
                log.error("worker %s died (%s) running job %s", worker.pid, describe_exit(code), job.id)
                await self._record(job, "failed", {
                    **fields, "code": "worker_crashed", "exit_status": code,
                    "message": f"the engine worker (pid {worker.pid}) died ({describe_exit(code)}) "
                               f"in {job.stage or 'start-up'} at step {job.step}",
                    "hint": _crash_hint(code), "log_tail": log_tail(job.run.root / "worker.log")})
            job.worker = None
        if job is not None:
            self._spawn_task(self._run_over(job))
        if self.slots[worker.slot] is worker and not self.closing:
            delay = self._crash_backoff[worker.slot] if not worker.ready else 0.0
            self._crash_backoff[worker.slot] = min(max(delay * 2, 1.0), 30.0) if not worker.ready else 0.0
            self.slots[worker.slot] = None
            asyncio.get_running_loop().call_later(delay, self._respawn, worker.slot)

    async def _run_over(self, job: Job) -> None:
        """A worker is done with the job: drop temp files of checkpoint writes it never finished,
        and look up the newest checkpoint for list_jobs (a folder walk: off the loop)."""
        removed = await asyncio.to_thread(remove_checkpoint_orphans, job.run.ckpt)
        if removed:
            log.info("job %s: removed unfinished checkpoint writes %s", job.id, ", ".join(removed))
        await asyncio.to_thread(job.refresh_checkpoint)

    def _respawn(self, slot: int) -> None:
        if not self.closing and self.slots[slot] is None:
            self._spawn_worker(slot)

    # -------------------------------------------------------------- events
    async def _record(self, job: Job, kind: str, fields: dict[str, Any], payload: bytes = b"",
                      strict: bool = False, recorded: Any = None) -> None:
        """Log, apply and deliver one event. `recorded()` runs once it is fully stored (a preview:
        once its PNG is written), giving the worker its flow-control credit back. `strict`: an
        OSError from the log is raised before anything is applied (the caller refuses the request);
        otherwise the event still counts, and a non-terminal one fails the job (disk_full)."""
        lock = self._locks.setdefault(job.id, asyncio.Lock())
        async with lock:
            try:
                header = {"type": kind, "job_id": job.id, "seq": job.last_seq + 1, "time": time.time()}
                header.update((k, v) for k, v in _finite(fields).items() if k not in header)
                if kind == "preview" and payload:
                    header.update(self.previews.store(job.id, job.run.root, header, payload, on_written=recorded))
                    recorded = None
                try:
                    job.log.append(header, sync=kind in TERMINAL_EVENTS)
                except OSError as exc:
                    if strict:
                        raise
                    self._apply(job, header, payload)
                    if kind not in TERMINAL_EVENTS:
                        self._fail_unlogged(job, exc)
                    else:
                        log.error("job %s: its %s event could not be written to %s: %s", job.id, kind,
                                  job.log.path, exc)
                    return
                self._apply(job, header, payload)
            finally:
                if recorded is not None:
                    recorded()

    def _apply(self, job: Job, header: dict[str, Any], payload: bytes = b"") -> None:
        kind = header["type"]
        job.apply(header)
        if kind in TERMINAL_EVENTS:
            job.log.close()
        for client, previews in list(job.subscribers.items()):
            if kind != "preview" or previews:
                client.deliver(Frame(header, payload))

    def _fail_unlogged(self, job: Job, exc: OSError) -> None:
        """The job's log cannot grow: the job fails now (told to its clients and to list_jobs even if
        this event cannot be logged either) and its worker is stopped; resume works once there is room."""
        code, message, hint = storage_problem(exc, f"the events of job {job.id} ({job.log.path.name})",
                                              self.runs_dir)
        log.error("job %s fails: %s", job.id, message)
        header = {"type": "failed", "job_id": job.id, "seq": job.last_seq + 1, "time": time.time(),
                  "code": code, "message": message, "hint": hint, "stage": job.stage, "step": job.step}
        try:
            job.log.append(header, sync=True)
        except OSError:
            pass  # the next server start shows it as interrupted (resumable) instead
        self._apply(job, header)
        self._stop_worker(job)

    # ------------------------------------------------------------ shutdown
    async def shutdown(self) -> None:
        """Cancel running jobs (they checkpoint), wait for them, stop the workers."""
        self.closing = True
        for job in list(self.queue):  # queued jobs hear it too ("cancelled", reason shutdown: resumed at next start)
            await self.cancel(job, reason="shutdown")
        running = [j for j in self.jobs.values() if j.state == "running"]
        for job in running:
            await self.cancel(job, reason="shutdown")
        deadline = time.monotonic() + self.cancel_grace_s + 15.0
        while any(not j.terminal for j in running) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        workers = [w for w in self.slots if w is not None]
        for w in workers:
            w.quit()
        await asyncio.to_thread(_join_all, workers)
        for job in self.jobs.values():
            job.log.close()
        await asyncio.to_thread(self.previews.close)


def _join_all(workers: list[WorkerHandle], timeout: float = 10.0) -> None:
    for w in workers:
        w.process.join(timeout)
        if w.process.is_alive():
            w.process.kill()
            w.process.join(timeout)


def build_spec(header: dict[str, Any], mesh_path: Path | None) -> Any:
    """JobSpec from a submit message (preset + overrides, or a full spec); invalid_spec lists every bad field."""
    from engine.presets import make_spec
    from engine.spec import JobSpec, SpecError

    mesh = {"input_mesh": str(mesh_path), "mode": "retexture"} if mesh_path is not None else {}
    try:
        if "preset" in header:
            return make_spec(header["preset"], {**copy.deepcopy(header.get("overrides") or {}), **mesh})
        return JobSpec.from_dict({**header["spec"], **mesh}).validate()
    except SpecError as exc:
        problems = [problem(p["field"], p["value"], p["allowed"]) for p in exc.to_list()]
        raise ProtocolError("invalid_spec", str(exc)[:2000], problems=problems) from None
    except Exception as exc:  # noqa: BLE001 - values too malformed for the checker to describe field by field
        raise ProtocolError("invalid_spec", f"the job spec could not be read: {type(exc).__name__}: {exc}"[:2000]) \
            from None


def _safe_name(name: Any) -> str:
    base = Path(str(name)).name
    return re.sub(r"[^A-Za-z0-9_.-]", "_", base)[-100:] or "mesh.glb"


def _finite(obj: Any) -> Any:
    """JSON has no NaN/Infinity: a diverged loss is reported as null instead of breaking the log."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"signal {-code}, {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    if sys.platform == "win32" and code >= 0x80000000:
        return f"exit status 0x{code:08X}"
    return f"exit status {code}"


def _crash_hint(code: int | None) -> str:
    hint = ERROR_HINTS["worker_crashed"]
    if code is not None and code == -getattr(signal, "SIGKILL", 9):
        hint = ("it was killed (SIGKILL): often the system ran out of memory — lower the resolution or "
                "particles, or close other programs; " + hint)
    return hint


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 8192) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
