"""Start and stop the local engine server with the engine's own Python (never Blender's torch-less one).

`python -m server --port 0 --runs-dir DIR --parent-pid PID`, token in VSDREAM_TOKEN. The server's
first stdout line is the JSON handshake {"event": "ready", "port", "pid", "protocol", "version"};
everything after it, and stderr, goes to a log file the panel shows when the engine fails.
A pid file lets the next Blender session stop an engine a crash left behind.
"""
import json
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path

from . import os_process

ENGINE_MARKERS = ("server", "--runs-dir")


class EngineStartError(RuntimeError):
    """The engine did not come up; the message says why and where the log is."""


class EngineProcess:
    def __init__(self, python: str, runs_dir: Path, log_path: Path, pid_path: Path,
                 backend_dir: Path | None = None, device: str = "", token: str = ""):
        self.python = str(python)
        self.runs_dir = Path(runs_dir)
        self.log_path = Path(log_path)
        self.pid_path = Path(pid_path)
        self.backend_dir = backend_dir
        self.device = device
        self.token = token or secrets.token_hex(24)
        self.proc: subprocess.Popen | None = None
        self.handshake: dict | None = None
        self._ready = threading.Event()
        self._log = None

    # ------------------------------------------------------------------ launch
    def command(self) -> list:
        cmd = [self.python, "-u", "-m", "server", "--port", "0", "--runs-dir", str(self.runs_dir),
               "--parent-pid", str(os.getpid())]
        if self.device:
            cmd += ["--device", self.device]
        return cmd

    def environment(self) -> dict:
        env = dict(os.environ)
        env["VSDREAM_TOKEN"] = self.token
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONHOME", None)  # Blender's own Python home must not leak into the engine
        if self.backend_dir is not None and Path(self.backend_dir).is_dir():
            parts = [str(self.backend_dir)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
            env["PYTHONPATH"] = os.pathsep.join(parts)
        return env

    def launch(self) -> None:
        if not self.python or not Path(self.python).exists():
            raise EngineStartError(f"engine Python not found: {self.python!r}; set it in the add-on "
                                   "preferences or press 'Set up engine'")
        stop_stale(self.pid_path)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w", encoding="utf-8", errors="replace")
        self._log.write(f"$ {' '.join(self.command())}\n")
        self._log.flush()
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._log, env=self.environment(), cwd=str(self.runs_dir),
                                     creationflags=flags)
        write_pid_file(self.pid_path, self.proc.pid, self.python)
        threading.Thread(target=self._read_stdout, name="vsdream-engine-stdout", daemon=True).start()

    def _read_stdout(self) -> None:
        """Find the handshake line, then copy the rest of stdout into the log."""
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            if self.handshake is None:
                try:
                    msg = json.loads(line)
                except ValueError:
                    msg = None
                if isinstance(msg, dict) and msg.get("event") == "ready":
                    self.handshake = msg
                    self._ready.set()
                    continue
            try:
                self._log.write(line)
                self._log.flush()
            except (ValueError, OSError):  # log closed by stop()
                pass
        self._ready.set()  # EOF: wake a waiter so it can report the exit

    def wait_ready(self, timeout_s: float) -> dict:
        """Block (in a worker thread, never the UI) until the handshake arrives."""
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.1):
            if time.monotonic() > deadline:
                self.stop()
                raise EngineStartError(f"the engine did not report ready within {timeout_s:.0f} s; "
                                       f"log: {self.log_path}\n{self.log_tail()}")
        if self.handshake is None:
            code = self.proc.wait(timeout=10) if self.proc else None
            raise EngineStartError(f"the engine exited (status {code}) before it was ready; "
                                   f"log: {self.log_path}\n{self.log_tail()}")
        return self.handshake

    # ------------------------------------------------------------------ state
    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    @property
    def port(self) -> int:
        return int((self.handshake or {}).get("port", 0))

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def wait_exit(self, timeout_s: float) -> int | None:
        """The exit status once the process has exited within `timeout_s`, else None."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 5.0) -> None:
        """Terminate (the server checkpoints running jobs on SIGTERM), then kill."""
        if self.proc is not None:
            os_process.stop_popen(self.proc, grace_s)
            if self.proc.stdout:
                self.proc.stdout.close()
        if self._log is not None:
            try:
                self._log.close()
            except OSError:
                pass
        remove_pid_file(self.pid_path, self.pid)


def write_pid_file(path: Path, pid: int, python: str) -> None:
    path.write_text(json.dumps({"pid": pid, "python": python, "started": time.time(),
                                "parent": os.getpid()}), encoding="utf-8")


def remove_pid_file(path: Path, pid: int) -> None:
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def stop_stale(pid_path: Path) -> int:
    """Stop an engine a previous (crashed) Blender left running. Returns its pid, or 0."""
    try:
        info = json.loads(Path(pid_path).read_text(encoding="utf-8"))
        pid = int(info.get("pid", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0
    stopped = 0
    if pid and pid != os.getpid() and os_process.pid_alive(pid):
        cmd = os_process.command_line(pid)
        parent = int(info.get("parent", 0) or 0)
        # another live Blender's engine is not stale; where the OS hides command lines, trust the file
        orphaned = parent == os.getpid() or not os_process.pid_alive(parent)
        if orphaned and (not cmd or all(m in cmd for m in ENGINE_MARKERS)):
            os_process.terminate_pid(pid)
            stopped = pid
    try:
        Path(pid_path).unlink()
    except OSError:
        pass
    return stopped


def default_engine_python(prefs_value: str, venv_python: Path) -> str:
    """The preference, else the set-up engine venv, else $VSDREAM_ENGINE_PYTHON, else ''."""
    if prefs_value:
        return prefs_value
    if venv_python.exists():
        return str(venv_python)
    return os.environ.get("VSDREAM_ENGINE_PYTHON", "")
