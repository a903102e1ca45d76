"""Device and precision rules as plain functions of what the machine has (tested without that machine).

auto picks CUDA, then Apple's Metal (MPS), then the CPU. The frozen Stable Diffusion UNets and VAE
run in fp16 on CUDA and MPS unless asked otherwise; bf16 runs on CUDA GPUs that have it, and on MPS
becomes fp32 (MPS's bf16 support depends on the macOS release); CPUs always compute in fp32. Ops
MPS lacks run on the CPU instead of failing (PYTORCH_ENABLE_MPS_FALLBACK=1, set in engine/__init__).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache

from .errors import EngineError

PRECISIONS = ("fp16", "bf16", "fp32")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,4})?")


class DeviceUnavailable(EngineError, ValueError):
    """The spec names a device this machine does not have: the spec's problem, said before any work."""

    code = "invalid_spec"
    hint = "set device to 'auto' (the best device this machine has) or 'cpu'"


def device_problem(name: str, cuda_ok: bool, mps_ok: bool, cuda_count: int | None = None) -> str | None:
    """Why device `name` cannot run here (None: it can). `cuda_count` None = unknown, any index allowed."""
    if not _DEVICE.fullmatch(name):
        return f"device {name!r}: use auto, cpu, cuda, cuda:N or mps"
    if name == "mps" and not mps_ok:
        return ("device 'mps' is not available: it needs an Apple Silicon Mac with macOS 12.3+ and a "
                "torch build with MPS; use auto or cpu")
    if name.startswith("cuda"):
        if not cuda_ok or cuda_count == 0:
            return (f"device {name!r} is not available: this machine's torch sees no CUDA GPU (a CPU-only "
                    "torch build, or no driver); use auto or cpu")
        index = int(name.partition(":")[2] or 0)
        if cuda_count is not None and index >= cuda_count:
            return (f"device {name!r} is not available: this machine has {cuda_count} CUDA GPU"
                    f"{'s' if cuda_count != 1 else ''} (cuda:0{f' … cuda:{cuda_count - 1}' if cuda_count > 1 else ''}); "
                    "use one of them, auto or cpu")
    return None


def pick_device(name: str, cuda_ok: bool, mps_ok: bool, cuda_count: int | None = None) -> str:
    """The torch device string for a requested name ('auto', 'cpu', 'cuda', 'cuda:N', 'mps');
    DeviceUnavailable (a ValueError) when this machine lacks it."""
    why = device_problem(name, cuda_ok, mps_ok, cuda_count)
    if why is not None:
        raise DeviceUnavailable(why)
    if name == "auto":
        return "cuda" if cuda_ok else "mps" if mps_ok else "cpu"
    return name


@cache
def probe_devices(timeout_s: float = 120.0) -> tuple[int, bool] | None:
    """(CUDA device count, MPS available) as this Python's torch sees them, asked in a child process so
    the caller (the server, which never imports torch) pays no memory for it; None when it cannot tell."""
    code = ("import json, torch; m = getattr(torch.backends, 'mps', None); "
            "print(json.dumps([torch.cuda.device_count() if torch.cuda.is_available() else 0, "
            "bool(m is not None and m.is_available())]))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s,
                             check=True).stdout
        count, mps = json.loads(out.strip().splitlines()[-1])
        return int(count), bool(mps)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, TypeError):
        return None


def cuda_index(device: str) -> int | None:
    """The CUDA ordinal a device string names ('cuda:N' → N); None for 'cuda' (the current one) and non-CUDA."""
    kind, _, index = device.partition(":")
    return int(index) if kind == "cuda" and index.isdigit() else None


def pin_cuda_device(device: str) -> int | None:
    """Make 'cuda:N' this thread's current CUDA device (torch.cuda.set_device) and return N (None: nothing to pin).

    Why: what is built on "the current device" rather than on an explicit one (tiny-cuda-nn modules,
    nerfacc's kernels, cuBLAS handles, `torch.cuda.*` calls without a device) lands on cuda:0
    otherwise, so a worker given cuda:1 would put its hash grid on another GPU. Call it once the job's
    device is known, before anything builds a CUDA module (engine/context.resolve_device does)."""
    index = cuda_index(device)
    if index is not None:
        import torch  # here, not at the top: this module stays importable without torch
        torch.cuda.set_device(index)
    return index


def precision_for(device_type: str, precision: str = "auto", bf16_ok: bool = False) -> str:
    """'fp16' | 'bf16' | 'fp32': the dtype of the frozen diffusion models on this device type."""
    if precision != "auto" and precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of auto, {', '.join(PRECISIONS)}")
    if device_type == "cuda":
        if precision == "bf16" and not bf16_ok:
            raise ValueError("precision 'bf16' is not supported by this GPU: use 'fp16' (the default)")
        return "fp16" if precision == "auto" else precision
    if device_type == "mps":
        return "fp32" if precision in ("bf16", "fp32") else "fp16"
    return "fp32"
