"""Which torch build 'Set up engine' installs: the hardware it finds, the wheel index that matches.

Pure functions (stdlib only, no bpy) so every OS × hardware case is tested without that machine:
NVIDIA cards are found with `nvidia-smi`, whose header names the newest CUDA the driver runs; Apple
Silicon by the platform; anything else gets the CPU build. PyPI's torch is the CUDA build on Linux
(6 GB with its nvidia-* wheels) and CPU-only on Windows, so both OSes install from the PyTorch wheel
index of the build they need; macOS takes PyPI's wheel (MPS included). The user can override.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PYTORCH_INDEX = "https://download.pytorch.org/whl"
PYPI = "https://pypi.org/simple"
# CUDA builds the PyTorch index publishes for the pinned torch, oldest first (assumed for torch 2.13
# from the releases before it: PyPI's own Linux wheel of 2.13.0 is the CUDA 13.0 build)
CUDA_BUILDS: tuple[str, ...] = ("cu126", "cu128", "cu130")
OVERRIDES: tuple[str, ...] = ("auto", "cpu", *CUDA_BUILDS, "default")
_CUDA_HEADER = re.compile(r"CUDA Version\s*:\s*(\d+)\.(\d+)")
_GPU_LINE = re.compile(r"^GPU \d+:\s*(.+?)\s*(?:\(UUID:.*)?$")


@dataclass(frozen=True)
class Hardware:
    """What set-up found: OS ('linux' | 'windows' | 'darwin'), CPU architecture, NVIDIA GPUs."""
    os: str
    machine: str
    gpus: tuple[str, ...] = ()
    driver_cuda: tuple[int, int] | None = None  # newest CUDA the NVIDIA driver supports
    smi_error: str = ""  # why nvidia-smi gave nothing usable (empty: not installed, or fine)

    @property
    def apple_silicon(self) -> bool:
        return self.os == "darwin" and self.machine.lower() in ("arm64", "aarch64")

    def describe(self) -> str:
        if self.gpus:
            cuda = f"driver supports CUDA {self.driver_cuda[0]}.{self.driver_cuda[1]}" if self.driver_cuda else \
                "driver CUDA version unknown"
            return f"NVIDIA {', '.join(self.gpus)} ({cuda})"
        if self.apple_silicon:
            return "Apple Silicon (Metal / MPS)"
        extra = f"; nvidia-smi: {self.smi_error}" if self.smi_error else ""
        return f"no NVIDIA GPU found ({self.os} {self.machine}){extra}"


@dataclass(frozen=True)
class TorchChoice:
    """The build to install and where from. `index_url` None: pip's configured index (PyPI)."""
    build: str  # 'cpu', 'cu128', …, 'mps' (PyPI's macOS wheel) or 'default' (whatever the index gives)
    index_url: str | None
    reason: str
    ok: bool = True  # False: no torch build fits this machine (the reason says why and what to do)

    def pip_args(self, torch_req: str) -> list[str]:
        """`pip install` arguments for torch alone. The PyTorch index comes first and PyPI stays an
        extra index (torch's own dependencies; a CUDA/CPU-tagged release sorts above PyPI's), so an
        unreachable PyTorch index falls back to PyPI's wheel, which the closing summary then names."""
        args = [torch_req]
        if self.index_url:
            args += ["--index-url", self.index_url, "--extra-index-url", PYPI]
        return args


def os_name(platform_name: str) -> str:
    """sys.platform → 'linux' | 'windows' | 'darwin'."""
    if platform_name.startswith("win") or platform_name == "cygwin":
        return "windows"
    if platform_name == "darwin":
        return "darwin"
    return "linux"


def parse_driver_cuda(smi_text: str) -> tuple[int, int] | None:
    """'CUDA Version: 12.4' in `nvidia-smi`'s header → (12, 4); None when absent."""
    m = _CUDA_HEADER.search(smi_text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_gpu_names(list_text: str) -> tuple[str, ...]:
    """`nvidia-smi -L` lines ('GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-…)') → names."""
    names = []
    for line in list_text.splitlines():
        m = _GPU_LINE.match(line.strip())
        if m:
            names.append(m.group(1))
    return tuple(names)


def cuda_build_for(driver: tuple[int, int], builds: tuple[str, ...] = CUDA_BUILDS) -> str | None:
    """The newest CUDA build the driver can run ('cu128' needs a driver for CUDA ≥ 12.8), else None."""
    fitting = [b for b in builds if _cuda_version(b) <= driver]
    return fitting[-1] if fitting else None


def _cuda_version(build: str) -> tuple[int, int]:
    digits = build.removeprefix("cu")
    return int(digits[:-1]), int(digits[-1])


def choose(hw: Hardware, override: str = "auto") -> TorchChoice:
    """The torch build for `hw`; `override` forces 'cpu', a 'cuXYZ' build or 'default' (pip's index)."""
    if override not in OVERRIDES:
        return TorchChoice("", None, f"unknown torch build {override!r}: use one of {', '.join(OVERRIDES)}", ok=False)
    if hw.os == "darwin":
        return _mac(hw, override)
    if override == "default":
        return TorchChoice("default", None, "override: pip's configured index decides (PyPI: CUDA build on Linux, "
                                            "CPU build on Windows)")
    if override == "cpu":
        return TorchChoice("cpu", f"{PYTORCH_INDEX}/cpu", "override: CPU build")
    if override != "auto":
        note = ""
        if hw.driver_cuda and _cuda_version(override) > hw.driver_cuda:
            note = (f" (the driver supports CUDA {hw.driver_cuda[0]}.{hw.driver_cuda[1]} only: update it or torch "
                    "will not see the GPU)")
        return TorchChoice(override, f"{PYTORCH_INDEX}/{override}", f"override: {override}{note}")
    if not hw.gpus:
        return TorchChoice("cpu", f"{PYTORCH_INDEX}/cpu", "no NVIDIA GPU: CPU build (a few hundred MB)")
    if hw.driver_cuda is None:
        return TorchChoice("cpu", f"{PYTORCH_INDEX}/cpu", "NVIDIA GPU found but nvidia-smi named no CUDA version: "
                                                          "CPU build (choose a CUDA build to override)")
    build = cuda_build_for(hw.driver_cuda)
    if build is None:
        oldest = _cuda_version(CUDA_BUILDS[0])
        return TorchChoice("cpu", f"{PYTORCH_INDEX}/cpu",
                           f"the NVIDIA driver supports CUDA {hw.driver_cuda[0]}.{hw.driver_cuda[1]}, older than "
                           f"the oldest torch CUDA build ({oldest[0]}.{oldest[1]}): CPU build; update the driver "
                           "and set up again to use the GPU")
    return TorchChoice(build, f"{PYTORCH_INDEX}/{build}", f"CUDA build {build} for the driver's CUDA "
                                                          f"{hw.driver_cuda[0]}.{hw.driver_cuda[1]}")


def _mac(hw: Hardware, override: str) -> TorchChoice:
    if not hw.apple_silicon:
        return TorchChoice("", None, "Intel Macs: PyTorch publishes no macOS x86-64 wheels of this torch "
                                     "release; run the engine on another machine (Remote engine)", ok=False)
    if override.startswith("cu"):
        return TorchChoice("", None, f"{override}: there are no CUDA builds for macOS; use auto or cpu", ok=False)
    return TorchChoice("mps", None, "Apple Silicon: PyPI's macOS wheel (Metal / MPS and CPU)")


def find_nvidia_smi(os_kind: str) -> str | None:
    """nvidia-smi on PATH, else where the Windows driver puts it."""
    found = shutil.which("nvidia-smi")
    if found or os_kind != "windows":
        return found
    root = Path(os.environ.get("SystemRoot", r"C:\Windows"))
    for cand in (root / "System32" / "nvidia-smi.exe",
                 Path(os.environ.get("ProgramFiles", r"C:\Program Files")) / "NVIDIA Corporation" / "NVSMI" /
                 "nvidia-smi.exe"):
        if cand.is_file():
            return str(cand)
    return None


def detect(platform_name: str, machine: str, smi: list[str] | None = None, timeout_s: float = 15.0) -> Hardware:
    """The Hardware of this machine (runs nvidia-smi when there is one; never raises).
    `smi`: the command that runs nvidia-smi (default: found on PATH / the driver's folder)."""
    kind = os_name(platform_name)
    if smi is None:
        found = find_nvidia_smi(kind)
        smi = [found] if found else []
    if not smi or kind == "darwin":
        return Hardware(kind, machine)
    try:
        header = subprocess.run(smi, capture_output=True, text=True, timeout=timeout_s)
        listing = subprocess.run([*smi, "-L"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as exc:
        return Hardware(kind, machine, smi_error=f"{type(exc).__name__}: {exc}")
    if header.returncode != 0:
        return Hardware(kind, machine, smi_error=(header.stdout + header.stderr).strip()[:200])
    return Hardware(kind, machine, parse_gpu_names(listing.stdout), parse_driver_cuda(header.stdout))
