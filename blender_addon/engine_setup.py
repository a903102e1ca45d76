"""'Set up engine': create the engine's own virtual environment from the bundled backend.

Runs in a worker thread and streams every output line (pip's progress included) to the inbox as
('setup_line', text), finishing with ('setup_done', (ok, message)). Blender's Python gets no pip.
"""
import os
import subprocess
import sys
import threading
from pathlib import Path


def backend_source(bundled: Path) -> Path | None:
    """The bundled backend, else the source checkout the add-on sits in (a developer setup)."""
    if (bundled / "engine").is_dir():
        return bundled
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file() and (repo / "engine").is_dir():
        return repo
    return None


def setup_commands(base_python: str, venv: Path, backend: Path, venv_python: Path) -> list:
    """The commands, in order: make the venv, upgrade pip, install requirements, then the backend."""
    cmds = [[base_python, "-m", "venv", str(venv)],
            [str(venv_python), "-m", "pip", "install", "--upgrade", "pip"]]
    req = backend / "requirements.txt"
    if req.is_file():
        cmds.append([str(venv_python), "-m", "pip", "install", "-r", str(req)])
        cmds.append([str(venv_python), "-m", "pip", "install", "--no-deps", str(backend)])
    else:
        cmds.append([str(venv_python), "-m", "pip", "install", str(backend)])
    return cmds


def _stream(cmd: list, put) -> int:
    """Run one command, passing each line (split on \\n and pip's \\r) to put()."""
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    put(f"$ {' '.join(cmd)}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env)
    buf = b""
    while True:
        chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.replace(b"\r", b"\n").split(b"\n")
        for line in lines:
            if line.strip():
                put(line.decode("utf-8", "replace").rstrip())
    if buf.strip():
        put(buf.decode("utf-8", "replace").rstrip())
    return proc.wait()


def run_setup(commands: list, inbox) -> threading.Thread:
    """Start the set-up thread; returns it (tests join it)."""
    def work():
        for cmd in commands:
            try:
                code = _stream(cmd, lambda text: inbox.put(("setup_line", text)))
            except OSError as exc:
                inbox.put(("setup_done", (False, f"could not run {cmd[0]}: {exc}")))
                return
            if code != 0:
                inbox.put(("setup_done", (False, f"'{' '.join(cmd[:4])} …' failed with status {code}")))
                return
        inbox.put(("setup_done", (True, "engine environment ready")))
    thread = threading.Thread(target=work, name="vsdream-setup", daemon=True)
    thread.start()
    return thread


def default_base_python(pref: str) -> str:
    return pref or sys.executable
