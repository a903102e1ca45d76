"""One worker process seen from the server: spawn it, hand it jobs, stop or kill it, notice its death.

A reader thread turns pipe messages into event-loop callbacks, so the engine never waits on the
server's clients. The server's own pace does bound it: data events (progress, previews) need one
of CREDITS credits, which the manager gives back once each is recorded (server/worker.py), so the
pipe and the manager's queue hold at most CREDITS of them however fast a job emits. Each spawned
process is one WorkerHandle; after a crash the manager makes a new one.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Callable
from typing import Any

from .worker import worker_main

OnMessage = Callable[["WorkerHandle", tuple], None]
OnExit = Callable[["WorkerHandle", "int | None"], None]
CREDITS = 16  # data events in flight from one worker (≈ 12 MiB of 512² previews)


class WorkerHandle:
    def __init__(self, slot: int, device: str, job_fn: str, loop: asyncio.AbstractEventLoop,
                 on_message: OnMessage, on_exit: OnExit):
        self.slot, self.device, self.job_fn = slot, device, job_fn
        self.loop, self.on_message, self.on_exit = loop, on_message, on_exit
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self.stop = ctx.Event()
        self.credits = ctx.Semaphore(CREDITS)
        self.process = ctx.Process(target=worker_main,
                                   args=(child, self.stop, device, job_fn, os.getpid(), self.credits),
                                   name=f"vsdream-worker-{slot}", daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.import_error: str | None = None
        self.job_id: str | None = None  # the job it runs now
        self.exited = False
        threading.Thread(target=self._read, name=f"worker-{slot}-reader", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def idle(self) -> bool:
        return self.ready and self.job_id is None and not self.exited

    def _read(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            self._call(self.on_message, self, msg)
        self.process.join(timeout=10)
        if self.process.is_alive():  # closed its pipe but lives on: not a usable worker
            self.process.kill()
            self.process.join(timeout=10)
        self._call(self.on_exit, self, self.process.exitcode)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop already closed during shutdown
            pass

    def run(self, job_id: str, spec: dict[str, Any], run_dir: str) -> bool:
        """Hand over a job; False when the pipe is already broken (the exit callback follows)."""
        self.stop.clear()
        self.job_id = job_id
        try:
            self.conn.send(("job", {"job_id": job_id, "spec": spec, "run_dir": run_dir}))
            return True
        except OSError:
            return False

    def release_credit(self) -> None:
        """One data event is recorded: the worker may send another."""
        self.credits.release()

    def request_stop(self) -> None:
        self.stop.set()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    def quit(self) -> None:
        try:
            self.conn.send(("quit", {}))
        except OSError:
            pass
