"""Which compiled accelerators the engine may use: `VSDREAM_ACCEL` (why: one switch to compare
every accelerator with the no-build, pure-torch path on the same machine, e.g. `make gpu-check`).

Unset or "auto": every accelerator that imports is used. "none": none (pure torch everywhere).
Otherwise a comma-separated list of the allowed ones, e.g. "tcnn" or "nerfacc,tcnn".
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path

ENV = "VSDREAM_ACCEL"
KNOWN = ("tcnn", "nerfacc")  # tiny-cuda-nn hash grid; nerfacc's CUDA ray-marching kernels


def allowed(name: str, env: dict[str, str] | None = None) -> bool:
    """Whether accelerator `name` may be used (it still has to import and find CUDA)."""
    if name not in KNOWN:
        raise ValueError(f"unknown accelerator {name!r}: one of {', '.join(KNOWN)}")
    value = (os.environ if env is None else env).get(ENV, "").strip().lower()
    if value in ("", "auto", "all"):
        return True
    if value == "none":
        return False
    names = {part.strip() for part in value.split(",") if part.strip()}
    unknown = names - set(KNOWN)
    if unknown:
        raise ValueError(f"{ENV}={value!r}: unknown {', '.join(sorted(unknown))}; use 'auto', 'none' "
                         f"or a comma-separated list of {', '.join(KNOWN)}")
    return name in names


NERFACC_BUILD_MESSAGE = ("building nerfacc's CUDA kernels: first use only, can take a few minutes "
                         "(the job goes on by itself afterwards)")
_NERFACC: bool | None = None


def nerfacc_build_pending() -> bool:
    """Whether loading nerfacc's kernels would compile them now: nerfacc 0.5 JIT-builds on first use
    when it has no prebuilt `nerfacc.csrc`, nvcc is on PATH and torch's extension folder for
    `nerfacc_cuda` is empty (its own rule in nerfacc/cuda/_backend.py)."""
    try:
        if importlib.util.find_spec("nerfacc.csrc") is not None:
            return False
    except (ImportError, ValueError):
        return False
    if shutil.which("nvcc") is None:
        return False
    try:
        from torch.utils.cpp_extension import _get_build_directory
        build = Path(_get_build_directory("nerfacc_cuda", verbose=False))
    except Exception:  # noqa: BLE001 - a torch without this helper: say nothing rather than guess
        return False
    return not (build.is_dir() and any(build.iterdir()))


def nerfacc_kernels(log: Callable[[str], None] | None = None) -> bool:
    """Whether nerfacc's CUDA kernels load (tried once per process). When loading means compiling,
    `log` hears it first: otherwise the build runs silently inside the first step, for minutes."""
    global _NERFACC
    if _NERFACC is None:
        building = log is not None and nerfacc_build_pending()
        if building:
            log(NERFACC_BUILD_MESSAGE)
        try:
            from nerfacc.cuda._backend import _C
            _NERFACC = _C is not None
        except Exception:  # noqa: BLE001 - no nvcc, failed build, missing CUDA libraries: the packed torch path
            _NERFACC = False
        if building:
            log("nerfacc's CUDA kernels are built" if _NERFACC else
                "nerfacc's CUDA kernels could not be built: rendering with the pure-PyTorch path instead")
    return _NERFACC


def load_nerfacc(device_type: str, log: Callable[[str], None]) -> bool:
    """At the start of a job that volume-renders on CUDA: load nerfacc's kernels now, announcing a build."""
    if device_type != "cuda" or not allowed("nerfacc"):
        return False
    return nerfacc_kernels(log)
