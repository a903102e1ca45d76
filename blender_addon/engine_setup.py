"""'Set up engine': create the engine's own virtual environment from the bundled backend.

Runs in a worker thread and streams every output line (pip's progress included) to the inbox as
('setup_line', text), finishing with ('setup_done', (ok, message)). Blender's Python gets no pip.
torch comes first, on its own, as the build torch_choice picked for this machine; every install is
held to the versions the tests ran (the bundle's constraints.txt, written by build_addon.py). pip
says nothing while a large wheel downloads, so a heartbeat line (elapsed time, environment size)
fills every silence of a few seconds; setuptools' deprecation banners are left out of the log.
"""
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import torch_choice

HEARTBEAT_S = 3.0
_WARNING = re.compile(r"\b(Setuptools\w*Warning|_DeprecatedInstaller)\b|setuptools[/\\]\S*:\d+: \w*Warning|"
                      r"^\s*warnings\.warn\(")
SUMMARY_PROBE = r"""
import json, sys
out = {"python": sys.version.split()[0]}
try:
    import torch
    out["torch"] = torch.__version__
    out["cuda"] = torch.version.cuda
    out["device"] = "cpu"
    if torch.cuda.is_available():
        out["device"] = "cuda: " + torch.cuda.get_device_name(0)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out["device"] = "mps (Apple GPU)"
except Exception as exc:
    out["torch_error"] = f"{type(exc).__name__}: {exc}"
print("VSDREAM_SETUP " + json.dumps(out))
"""


def backend_source(bundled: Path) -> Path | None:
    """The bundled backend, else the source checkout the add-on sits in (a developer setup)."""
    if (bundled / "engine").is_dir():
        return bundled
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file() and (repo / "engine").is_dir():
        return repo
    return None


def torch_requirement(constraints: Path) -> str:
    """'torch==X' as pinned in the bundle's constraints file, else plain 'torch'."""
    if constraints.is_file():
        for line in constraints.read_text(encoding="utf-8").splitlines():
            if re.fullmatch(r"torch==\S+", line.strip()):
                return line.strip()
    return "torch"


def setup_commands(base_python: str, venv: Path, backend: Path, venv_python: Path,
                   choice: "torch_choice.TorchChoice | None" = None) -> list:
    """The commands, in order: make the venv, upgrade pip, torch alone (the chosen build, when
    given), the requirements, then the backend; installs keep to the bundle's constraints.txt."""
    pip = [str(venv_python), "-m", "pip", "install"]
    cmds = [[base_python, "-m", "venv", str(venv)], pip + ["--upgrade", "pip"]]
    cons = backend / "constraints.txt"
    pinned = ["-c", str(cons)] if cons.is_file() else []
    if choice is not None:
        cmds.append(pip + choice.pip_args(torch_requirement(cons)) + pinned)
    req = backend / "requirements.txt"
    if req.is_file():
        cmds.append(pip + pinned + ["-r", str(req)])
        cmds.append([str(venv_python), "-m", "pip", "install", "--no-deps", str(backend)])
    else:
        cmds.append([str(venv_python), "-m", "pip", "install", str(backend)])
    return cmds


class NoiseFilter:
    """Drops setuptools' deprecation banners (the warning line, its `!!` … `!!` box and the source
    line Python prints after it) and counts what it dropped."""

    def __init__(self) -> None:
        self.hidden = 0
        self._in_box = False
        self._after = False  # just after a warning or a box: an indented source line may follow

    def keep(self, line: str) -> bool:
        stripped = line.strip()
        if not stripped:  # blank lines are not counted (the log leaves them out anyway)
            return not self._in_box
        if stripped == "!!":
            self._in_box = not self._in_box
            self._after = not self._in_box
        elif self._in_box or _WARNING.search(line):
            self._after = not self._in_box
        elif self._after and line.startswith("    ") and stripped:
            self._after = False
        else:
            self._after = False
            return True
        self.hidden += 1
        return False


def folder_size(path: Path) -> int:
    """Bytes under `path` (symlinks not followed; unreadable entries skipped)."""
    total = 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _mb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _stream(cmd: list, put, watch: Path | None = None, heartbeat_s: float = HEARTBEAT_S,
            noise: NoiseFilter | None = None) -> int:
    """Run one command, passing each line (split on \\n and pip's \\r) to put(); while it is
    silent for heartbeat_s, put() a line with the elapsed time and the size of `watch`."""
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    put(f"$ {' '.join(cmd)}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env)
    started = last = time.monotonic()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(heartbeat_s / 3):
            now = time.monotonic()
            if now - max(last, last_beat[0]) >= heartbeat_s:
                size = f", environment {_mb(folder_size(watch))}" if watch is not None and watch.exists() else ""
                put(f"… still working ({now - started:.0f} s{size})")
                last_beat[0] = now

    last_beat = [started]
    beat = threading.Thread(target=heartbeat, name="vsdream-setup-heartbeat", daemon=True)
    beat.start()

    def emit(raw: bytes) -> None:
        nonlocal last
        text = raw.decode("utf-8", "replace").rstrip()
        if text.strip() and (noise is None or noise.keep(text)):
            last = time.monotonic()
            put(text)
    try:
        buf = b""
        while True:
            chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.replace(b"\r", b"\n").split(b"\n")
            for line in lines:
                emit(line)
        emit(buf)
        return proc.wait()
    finally:
        done.set()
        beat.join(timeout=5)


def summarize(venv_python: Path, venv: Path, choice=None, hardware=None, elapsed_s: float = 0.0) -> tuple[bool, str]:
    """The closing line: torch build, device found, environment size (and a warning when the build
    installed is not the one chosen, e.g. when the PyTorch index could not be reached)."""
    try:
        proc = subprocess.run([str(venv_python), "-c", SUMMARY_PROBE], capture_output=True, text=True, timeout=300)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("VSDREAM_SETUP ")), None)
        info = json.loads(line[len("VSDREAM_SETUP "):]) if line else {"torch_error": proc.stderr.strip()[-300:]}
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        info = {"torch_error": f"{type(exc).__name__}: {exc}"}
    size = _mb(folder_size(venv))
    if "torch" not in info:
        return False, f"environment built ({size}) but torch does not import: {info.get('torch_error', '?')}"
    build = f"torch {info['torch']}" + (f" (CUDA {info['cuda']})" if info.get("cuda") else " (no CUDA)")
    found = f"; hardware: {hardware.describe()}" if hardware is not None else ""
    text = f"engine environment ready: {build}, device {info['device']}, environment {size}, {elapsed_s:.0f} s{found}"
    if choice is not None and choice.build.startswith("cu") and not info.get("cuda"):
        text += f" — WARNING: {choice.build} was chosen but a build without CUDA was installed (PyTorch index unreachable?)"
    if choice is not None and choice.build == "cpu" and info.get("cuda"):
        text += " — WARNING: the CPU build was chosen but a CUDA build was installed (PyTorch index unreachable?)"
    return True, text


def run_setup(commands: list, inbox, venv: Path | None = None, venv_python: Path | None = None, choice=None,
              hardware=None, heartbeat_s: float = HEARTBEAT_S) -> threading.Thread:
    """Start the set-up thread; returns it (tests join it). With venv_python, the closing message
    is summarize()'s (torch build, device, environment size)."""
    def work():
        started = time.monotonic()
        put = lambda text: inbox.put(("setup_line", text))  # noqa: E731
        if hardware is not None and choice is not None:
            put(f"Found: {hardware.describe()}")
            put(f"Torch: {choice.build} — {choice.reason}" + (f" (from {choice.index_url})" if choice.index_url else ""))
        noise = NoiseFilter()
        for cmd in commands:
            try:
                code = _stream(cmd, put, watch=venv, heartbeat_s=heartbeat_s, noise=noise)
            except OSError as exc:
                inbox.put(("setup_done", (False, f"could not run {cmd[0]}: {exc}")))
                return
            if code != 0:
                inbox.put(("setup_done", (False, f"'{' '.join(cmd[:4])} …' failed with status {code}")))
                return
        if noise.hidden:
            put(f"({noise.hidden} lines of setuptools deprecation warnings left out)")
        if venv_python is None:
            inbox.put(("setup_done", (True, "engine environment ready")))
            return
        inbox.put(("setup_done", summarize(venv_python, venv or venv_python.parent.parent, choice, hardware,
                                           time.monotonic() - started)))
    thread = threading.Thread(target=work, name="vsdream-setup", daemon=True)
    thread.start()
    return thread


def start_setup(base_python: str, venv: Path, backend: Path, venv_python: Path, override: str, inbox,
                platform_name: str = sys.platform, machine: str = "") -> threading.Thread:
    """Detect the hardware, choose the torch build and run the set-up, all off Blender's main thread
    (nvidia-smi can take a second); returns the thread."""
    def work():
        hw = torch_choice.detect(platform_name, machine or platform.machine())
        choice = torch_choice.choose(hw, override)
        if not choice.ok:
            inbox.put(("setup_line", f"Found: {hw.describe()}"))
            inbox.put(("setup_done", (False, choice.reason)))
            return
        cmds = setup_commands(base_python, venv, backend, venv_python, choice)
        run_setup(cmds, inbox, venv=venv, venv_python=venv_python, choice=choice, hardware=hw).join()
    thread = threading.Thread(target=work, name="vsdream-setup-start", daemon=True)
    thread.start()
    return thread


def default_base_python(pref: str) -> str:
    return pref or sys.executable
