"""Start an engine server as a child process and talk to it (benchmarks, tests, scripts).

The Blender add-on has its own launcher (blender_addon/engine_process.py); this one is for Python
callers that have the engine installed.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import protocol as P
from . import tls_pin


def read_until(chan: P.Channel, done: Callable[[P.Frame], bool], timeout: float = 120.0,
               skip_heartbeats: bool = True) -> list[P.Frame]:
    """Frames up to and including the first for which done(frame) is true (TimeoutError otherwise)."""
    import time
    deadline = time.monotonic() + timeout
    out: list[P.Frame] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no matching frame within {timeout} s; got {[f.type for f in out][-20:]}")
        frame = chan.recv(timeout=left)
        if frame is None:
            raise ConnectionError(f"server closed the connection; got {[f.type for f in out][-20:]}")
        if skip_heartbeats and frame.type == "heartbeat":
            continue
        out.append(frame)
        if done(frame):
            return out


def job_ended(job_id: str) -> Callable[[P.Frame], bool]:
    return lambda f: f.get("job_id") == job_id and f.type in P.TERMINAL_EVENTS


class ServerProcess:
    """`with ServerProcess(runs_dir) as srv: chan = srv.connect()` — a real server on 127.0.0.1:0."""

    def __init__(self, runs_dir: Path, *args: str, token: str | None = None, env: dict[str, str] | None = None,
                 log_path: Path | None = None, start_timeout: float = 60.0):
        self.runs_dir = Path(runs_dir)
        self.args, self.start_timeout = list(args), start_timeout
        self.token = token or secrets.token_hex(16)
        self.env = {**os.environ, **(env or {}), P.TOKEN_ENV: self.token}
        self.log_path = Path(log_path) if log_path else self.runs_dir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.ready: dict[str, Any] = {}

    @property
    def port(self) -> int:
        return int(self.ready["port"])

    @property
    def fingerprint(self) -> str | None:
        """The certificate fingerprint to pin when the server serves TLS (--allow-remote), else None."""
        return self.ready.get("fingerprint") if self.ready.get("tls") else None

    def start(self) -> ServerProcess:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parent.parent
        self.env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [self.env.get("PYTHONPATH")] if p])
        cmd = [sys.executable, "-m", "server", "--port", "0", "--runs-dir", str(self.runs_dir), *self.args]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, env=self.env, cwd=str(root))
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.start_timeout)
        if not line or not line[0]:
            self.stop()
            raise RuntimeError(f"server did not print its ready line; log: {self.log_path}:\n{self.log_tail()}")
        self.ready = P.parse_ready_line(line[0])
        return self

    def connect(self, timeout: float = 30.0) -> P.Channel:
        """An authenticated channel: plain TCP, or TLS pinned to the printed fingerprint (--allow-remote)."""
        if self.fingerprint:
            chan, _ = tls_pin.connect_channel("127.0.0.1", self.port, self.token, self.fingerprint, timeout=timeout)
        else:
            chan, _ = P.Channel.connect("127.0.0.1", self.port, self.token, timeout=timeout)
        return chan

    def wait_workers_ready(self, chan: P.Channel, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Block until every worker has imported the engine (so timings exclude start-up)."""
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # one job is enough: the reply names every worker
            workers = P.raise_for_error(chan.request(P.list_jobs(limit=1), timeout=timeout))["workers"]
            if all(w["ready"] for w in workers):
                return workers
            time.sleep(0.1)
        raise TimeoutError("workers did not become ready")

    def stop(self, timeout: float = 60.0) -> int | None:
        """Ask politely (shutdown message), then terminate; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None and self.ready:
            try:
                chan = self.connect(timeout=5)
                chan.send(P.shutdown())
                chan.close()
                self.proc.wait(timeout)
            except (OSError, P.ProtocolError, subprocess.TimeoutExpired):  # PinError is an OSError
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
