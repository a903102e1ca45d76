"""The worker process: runs jobs with the engine, one at a time, and sends events back over a pipe.

It is a `multiprocessing` spawn child, so a segfault, CUDA OOM or kill here never takes the server
down. Each job's stdout/stderr (and faulthandler dumps of a crash) go to <run>/worker.log, which
the server quotes when the worker dies. The job function is `engine.pipeline:run_job` unless the
server was started with --job-fn (benchmarks use a synthetic preview source).

Flow control: progress and preview events (data) each take a credit from `credits`, a semaphore
the server releases once it has recorded the event (a preview: once its PNG is on disk), so at
most `worker_handle.CREDITS` of them are ever in the pipe or the server's queue; a job that
emits faster than the server records waits here instead of growing the server's memory. Control
messages (stage, artifact, log, terminal events, "stopping") take no credit, and a cancel is a
shared event, so neither ever waits behind data; once a stop is requested, data that finds no
credit is dropped. "stopping" tells the server the job saw its stop request and is writing its
last checkpoint: the server starts the cancel grace from then.
"""
from __future__ import annotations

import faulthandler
import importlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_JOB_FN = "engine.pipeline:run_job"
TRACEBACK_TAIL = 6000


def load_job_fn(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name or "run_job")


FLOW_CONTROLLED = ("progress", "preview")
CREDIT_POLL_S = 0.05  # how often a data event waiting for a credit looks at the stop flag


def worker_main(conn: Any, stop: Any, device: str, job_fn: str, server_pid: int, credits: Any = None) -> None:
    """Spawn target: prewarm the engine import, then serve ("job", body) messages until "quit"/EOF."""
    _stdout_to_stderr()
    faulthandler.enable(all_threads=True)
    threading.Thread(target=_watch_server, args=(server_pid, stop), daemon=True).start()
    fn, import_error = None, None
    try:
        fn = load_job_fn(job_fn)
    except BaseException:  # noqa: BLE001 - any import failure (even SystemExit) is reported with every job
        import_error = traceback.format_exc()
    conn.send(("ready", {"pid": os.getpid(), "error": import_error}))
    while True:
        try:
            kind, body = conn.recv()
        except (EOFError, OSError):
            return
        if kind == "quit":
            return
        if kind == "job":
            run_one(conn, stop, device, fn, import_error, body, credits)
            try:
                conn.send(("end", {"job_id": body["job_id"]}))
            except OSError:
                return


def run_one(conn: Any, stop: Any, device: str, fn: Callable[..., Any] | None, import_error: str | None,
            body: dict[str, Any], credits: Any = None) -> None:
    """Run one job; always ends with exactly one terminal event (done, failed or cancelled)."""
    from engine.errors import JobCancelled, error_code
    from engine.events import Cancelled, Done, Failed, event_to_dict
    from engine.spec import JobSpec, SpecError

    run_dir = Path(body["run_dir"])
    terminal: list[str] = []
    lock = threading.Lock()  # a job may emit from more than one thread; the pipe takes one message at a time
    stopping: list[bool] = []

    def post(msg: tuple) -> None:
        try:
            with lock:
                conn.send(msg)
        except OSError:  # the server is gone: stop at the next step, which writes a checkpoint
            stop.set()

    def send(ev: Any, extra: dict[str, Any] | None = None) -> None:
        if terminal:
            return  # at most one terminal event; anything after it is ignored
        header, payload = event_to_dict(ev)
        header.update(extra or {})
        if header["event"] in ("done", "failed", "cancelled"):
            terminal.append(header["event"])
        credited = credits is not None and header["event"] in FLOW_CONTROLLED
        if credited and not _take_credit(credits, stop):
            return  # cancelled while the server was behind: this progress/preview is stale anyway
        post(("event", header, payload, credited))

    def should_stop() -> bool:
        if not stop.is_set():
            return False
        if not stopping:  # the job is about to write its cancel checkpoint: the server's grace starts now
            stopping.append(True)
            post(("stopping", {"job_id": body["job_id"]}))
        return True

    with open(run_dir / "worker.log", "ab", buffering=0) as log, _redirect_fds(log.fileno()):
        print(f"[worker {os.getpid()}] job {body['job_id']} on device {device}", file=sys.stderr, flush=True)
        try:
            if fn is None:
                raise RuntimeError(f"the engine could not be imported:\n{import_error}")
            spec = JobSpec.from_dict(body["spec"]).validate()
            if spec.device == "auto" and device != "auto":
                spec.device = device
            result = fn(spec, run_dir, send, should_stop)
            send(Done(result if isinstance(result, dict) else {}))
        except JobCancelled as exc:
            send(Cancelled(exc.stage, exc.step, exc.checkpoint))
        except SpecError as exc:
            code, hint = error_code(exc)
            send(Failed(code, str(exc), hint), {"problems": exc.to_list()})
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a failed event, never a dead worker
            traceback.print_exc()
            code, hint = error_code(exc)
            send(Failed(code, f"{type(exc).__name__}: {exc}"[:2000], hint, traceback.format_exc()[-TRACEBACK_TAIL:]))
        finally:
            sys.stderr.flush()
            _release_gpu_memory()


def _take_credit(credits: Any, stop: Any) -> bool:
    """Wait for the server to have room for one more data event; False once a stop is requested."""
    while not credits.acquire(timeout=CREDIT_POLL_S):
        if stop.is_set():
            return False
    return True


def _release_gpu_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _stdout_to_stderr() -> None:
    """The server's stdout carries the handshake line; nothing of ours may write there."""
    try:
        sys.stdout.flush()
        os.dup2(2, 1)
    except (OSError, AttributeError, ValueError):
        pass


@contextmanager
def _redirect_fds(fd: int) -> Iterator[None]:
    """Point fds 1 and 2 (Python and native output, faulthandler dumps) at `fd` for one job."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for s in saved:
            os.close(s)


def _watch_server(server_pid: int, stop: Any, poll_s: float = 1.0, grace_s: float = 120.0) -> None:
    """If the server vanishes (SIGKILL), stop the job so it checkpoints, then exit."""
    from .liveness import pid_alive
    while pid_alive(server_pid):
        time.sleep(poll_s)
    stop.set()
    time.sleep(grace_s)
    os._exit(3)
