"""Checks every request passes before its schema: all text is valid Unicode, nesting is bounded,
every number is finite.

All three protect the replies: a string that cannot be encoded, a value nested so deep that the
JSON encoder runs out of stack, or a literal such as 1e309 that Python reads as infinity (JSON has
no infinity, so the encoder refuses it) would otherwise break the reply that echoes it (a ping
nonce, an error's "re") or every later reply that shows it (a prompt in list_jobs)."""
from __future__ import annotations

import math
from typing import Any

from .wire_text import ALLOWED, bad_text, shown

MAX_DEPTH = 64  # real messages nest 4 deep (a spec's camera ranges); JSON allows ~1000


def too_deep(obj: Any, limit: int = MAX_DEPTH) -> str | None:
    """Path of the first value nested deeper than `limit` levels, or None."""
    stack: list[tuple[str, Any, int]] = [("", obj, 0)]
    while stack:
        path, value, depth = stack.pop()
        if depth > limit:
            return path
        if isinstance(value, dict):
            stack.extend((f"{path}.{shown(str(k))}" if path else shown(str(k)), v, depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v, depth + 1) for i, v in enumerate(value))
    return None


def problems(header: dict[str, Any]) -> list[dict[str, Any]]:
    """Field-level problems ({"field", "value", "allowed"}); [] when the request may go on."""
    deep = too_deep(header)
    if deep is not None:
        field = deep.split(".")[0].split("[")[0]
        return [{"field": field, "value": f"<nested more than {MAX_DEPTH} levels>",
                 "allowed": f"JSON nested at most {MAX_DEPTH} levels deep"}]
    huge = infinite_numbers(header)
    if huge:
        return [{"field": field, "value": "<a number beyond ±1.8e308>",
                 "allowed": "a finite number (at most about ±1.8e308, a 64-bit float's range)"} for field in huge]
    return [{"field": field, "value": value[:200], "allowed": ALLOWED} for field, value in bad_text(header)]


def infinite_numbers(obj: Any) -> list[str]:
    """Field paths of numbers that are not finite (the JSON parser reads 1e309 as inf), sorted."""
    out: list[str] = []
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            out.append(path or "<header>")
        elif isinstance(value, dict):
            stack.extend((f"{path}.{shown(str(k))}" if path else shown(str(k)), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
    return sorted(out)
