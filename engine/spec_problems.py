"""Field-level spec problems: what is wrong, with which value, and what is allowed instead.

A problem travels to the CLI, the server's replies and the add-on, so its field and value are made
safe to print and to encode here, once: text that is not valid Unicode is escaped, long strings and
lists are shortened and deep nesting is cut, whatever the caller handed in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_MAX_TEXT = 200
_MAX_ITEMS = 50
_MAX_DEPTH = 6


class SpecError(ValueError):
    """Raised by `JobSpec.validate` (and the CLIs) with one entry per bad field."""

    def __init__(self, problems: list[FieldProblem], title: str = "invalid job spec"):
        self.problems = problems
        self.title = title
        lines = [f"{p.field} = {p.value!r}: {p.allowed}" for p in problems]
        super().__init__(f"{title}:\n  " + "\n  ".join(lines))

    def to_list(self) -> list[dict[str, Any]]:
        return [{"field": p.field, "value": p.value, "allowed": p.allowed} for p in self.problems]


@dataclass
class FieldProblem:
    field: str
    value: Any
    allowed: str

    def __post_init__(self) -> None:
        self.field = safe_text(str(self.field))
        self.value = shown(self.value)
        self.allowed = safe_text(str(self.allowed))


def utf8_ok(text: str) -> bool:
    """False for text holding lone surrogates (e.g. '\\ud83d'), which no UTF-8 writer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safe_text(text: str) -> str:
    return text if utf8_ok(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def shown(value: Any, depth: int = 0) -> Any:
    """A printable, encodable stand-in for a user's value (the value itself when it already is)."""
    if isinstance(value, str):
        value = safe_text(value)
        return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "…"
    if isinstance(value, int) and value.bit_length() > 256:  # repr of a huge int is slow, or refused
        return f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, (list, tuple, dict)) and depth >= _MAX_DEPTH:
        return "…"
    if isinstance(value, (list, tuple)):
        items = [shown(v, depth + 1) for v in list(value)[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            items.append("…")
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        out = {safe_text(str(k)): shown(v, depth + 1) for k, v in list(value.items())[:_MAX_ITEMS]}
        if len(value) > _MAX_ITEMS:
            out["…"] = "…"
        return out
    return value
