"""Checks every request passes before its schema: all text is valid Unicode, nesting is bounded.

Both protect the replies: a string that cannot be encoded, or a value nested so deep that the
JSON encoder runs out of stack, would otherwise break the reply that echoes it (a ping nonce) or
every later reply that shows it (a prompt in list_jobs)."""
from __future__ import annotations

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
    return [{"field": field, "value": value[:200], "allowed": ALLOWED} for field, value in bad_text(header)]
