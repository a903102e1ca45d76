"""Which compiled accelerators the engine may use: `VSDREAM_ACCEL` (why: one switch to compare
every accelerator with the no-build, pure-torch path on the same machine, e.g. `make gpu-check`).

Unset or "auto": every accelerator that imports is used. "none": none (pure torch everywhere).
Otherwise a comma-separated list of the allowed ones, e.g. "tcnn" or "nerfacc,tcnn".
"""
from __future__ import annotations

import os

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
