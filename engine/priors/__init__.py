"""Diffusion priors behind one interface: the analytic prior (tests, benchmarks) and Stable Diffusion.

The package imports nothing heavy by itself: spec validation and the CLI read the prior table
(registry.py) without loading torch; the interface classes load on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"Conditioning": ".base", "Prior": ".base", "VariationalScore": ".base", "load_prior": ".registry"}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)
