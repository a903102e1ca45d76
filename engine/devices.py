"""Device and precision rules as plain functions of what the machine has (tested without that machine).

auto picks CUDA, then Apple's Metal (MPS), then the CPU. The frozen Stable Diffusion UNets and VAE
run in fp16 on CUDA and MPS unless asked otherwise; bf16 runs on CUDA GPUs that have it, and on MPS
becomes fp32 (MPS's bf16 support depends on the macOS release); CPUs always compute in fp32. Ops
MPS lacks run on the CPU instead of failing (PYTORCH_ENABLE_MPS_FALLBACK=1, set in engine/__init__).
"""
from __future__ import annotations

import re

PRECISIONS = ("fp16", "bf16", "fp32")
_DEVICE = re.compile(r"(auto|cpu|cuda|mps)(:\d+)?")


def pick_device(name: str, cuda_ok: bool, mps_ok: bool) -> str:
    """The torch device string for a requested name ('auto', 'cpu', 'cuda', 'cuda:N', 'mps')."""
    if not _DEVICE.fullmatch(name):
        raise ValueError(f"device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        return "cuda" if cuda_ok else "mps" if mps_ok else "cpu"
    if name == "mps" and not mps_ok:
        raise ValueError("device 'mps' is not available: it needs an Apple Silicon Mac with macOS 12.3+ and a "
                         "torch build with MPS; use auto or cpu")
    return name


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
