"""Type and range checks derived from the spec dataclasses themselves.

Each field's annotation says what type it holds; an optional `Rule` in the field's metadata
(`spec_field(default, within(lo, hi))`) says which values of that type are allowed. `field_problems`
walks a dataclass (and the dataclasses nested in it) and reports every field whose value breaks
either, so adding a field to a spec class is all it takes to have it checked: there is no second
list of field names to keep in sync.

Types understood: bool, int, float, str, None, Literal[...], X | Y, list[X], tuple[X, ...] of fixed
length, and nested dataclasses. bool is not an int; an int is a float; NaN and ±inf are not numbers.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from .spec_problems import FieldProblem, utf8_ok

BAD_TEXT = "text that can be encoded as UTF-8 (a lone surrogate such as \\ud83d cannot)"


@dataclass(frozen=True)
class Rule:
    """Which well-typed values a field allows: `ok(value)`, and `text(type_words)` says so in words."""

    ok: Callable[[Any], bool]
    text: Callable[[str], str]


def _num_text(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def within(lo: float, hi: float) -> Rule:
    return Rule(lambda v: lo <= v <= hi, lambda words: f"{words} in [{_num_text(lo)}, {_num_text(hi)}]")


def among(*allowed: Any) -> Rule:
    """One of `allowed`; for a list field, every item one of them."""
    def ok(v: Any) -> bool:
        return all(x in allowed for x in v) if isinstance(v, list) else v in allowed
    return Rule(ok, lambda words: ("a list of items among " if words.startswith("a list") else "one of ")
                + ", ".join(map(repr, allowed)))


def ordered(lo: float, hi: float, max_span: float | None = None) -> Rule:
    """A [min, max] pair inside [lo, hi], optionally no wider than `max_span`."""
    def ok(v: Any) -> bool:
        return lo <= v[0] <= v[1] <= hi and (max_span is None or v[1] - v[0] <= max_span)
    span = "" if max_span is None else f", max − min ≤ {_num_text(max_span)}"
    return Rule(ok, lambda words: f"[min, max] with {_num_text(lo)} ≤ min ≤ max ≤ {_num_text(hi)}{span}")


def nonblank() -> Rule:
    return Rule(lambda v: v is None or bool(v.strip()), lambda words: f"{words}, not blank")


def max_length(n: int) -> Rule:
    return Rule(lambda v: v is None or len(v) <= n, lambda words: f"{words} of at most {n} characters")


def described(ok: Callable[[Any], bool], text: str) -> Rule:
    """A rule whose words replace the type's (for shapes the type alone cannot say)."""
    return Rule(ok, lambda words: text)


def spec_field(default: Any, rule: Rule | None = None) -> Any:
    """A dataclass field with a range rule; list and tuple defaults are copied per instance."""
    meta = {"rule": rule} if rule is not None else {}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: [list(x) if isinstance(x, list) else x for x in default],
                                 metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Field name → resolved annotation (string annotations evaluated in the class's module)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@functools.cache
def is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@functools.cache
def _layout(cls: type) -> tuple[tuple[str, Any, bool, Rule | None], ...]:
    """(name, type, is a section, rule) per field of `cls`, worked out once per class."""
    types_ = field_types(cls)
    return tuple((f.name, types_[f.name], is_section(types_[f.name]), f.metadata.get("rule"))
                 for f in dataclasses.fields(cls))


def is_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


def conforms(v: Any, tp: Any) -> bool:
    """Whether value `v` has type `tp` (JSON lists are accepted for tuples)."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is bool:
        return isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if tp is float:
        return is_number(v)
    if tp is str:
        return isinstance(v, str) and utf8_ok(v)
    if tp is type(None):
        return v is None
    if origin is Literal:
        return any(type(v) is type(a) and v == a for a in args)
    if origin in (Union, types.UnionType):
        return any(conforms(v, a) for a in args)
    if origin is list:
        return isinstance(v, list) and all(conforms(x, args[0]) for x in v)
    if origin is tuple:
        return isinstance(v, (tuple, list)) and len(v) == len(args) and all(conforms(x, a) for x, a in zip(v, args, strict=True))
    raise TypeError(f"spec field type {tp!r} has no checker in engine/spec_types.py; add one there")


_WORDS: dict[Any, tuple[str, str]] = {
    bool: ("true or false", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"),
    str: ("a string", "strings"), type(None): ("null", "nulls"),
}


def describe(tp: Any, plural: bool = False) -> str:
    """The type in words: 'a number', 'null or a string', 'a list of lists of integers'…"""
    if tp in _WORDS:
        return _WORDS[tp][plural]
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return ("values among " if plural else "one of ") + ", ".join(map(repr, args))
    if origin in (Union, types.UnionType):
        ordered_args = sorted(args, key=lambda a: a is not type(None))  # 'null or …' reads best
        return " or ".join(describe(a, plural) for a in ordered_args)
    if origin is list:
        return ("lists of " if plural else "a list of ") + describe(args[0], True)
    if origin is tuple:
        inner = describe(args[0], True) if len(set(args)) == 1 else ", ".join(describe(a) for a in args)
        return ("lists of " if plural else "a list of ") + f"{len(args)} {inner}"
    if is_section(tp):
        return "JSON objects" if plural else "a JSON object"
    return repr(tp)


def allowed_text(tp: Any, rule: Rule | None) -> str:
    words = describe(tp)
    return rule.text(words) if rule is not None else words


def _has_bad_text(v: Any) -> bool:
    if isinstance(v, str):
        return not utf8_ok(v)
    return isinstance(v, (list, tuple)) and any(isinstance(x, str) and not utf8_ok(x) for x in v)


def field_problems(obj: Any, prefix: str = "") -> list[FieldProblem]:
    """Every field of dataclass `obj` (recursively) whose value has the wrong type or breaks its rule.

    Never raises for any value: rules run only on values that already have the field's type."""
    problems: list[FieldProblem] = []
    for name, tp, section, rule in _layout(type(obj)):
        value, path = getattr(obj, name), prefix + name
        if section:
            if isinstance(value, tp):
                problems.extend(field_problems(value, path + "."))
            else:
                problems.append(FieldProblem(path, value, f"a JSON object (the {name} section)"))
            continue
        if not conforms(value, tp):
            allowed = BAD_TEXT if _has_bad_text(value) else allowed_text(tp, rule)
            problems.append(FieldProblem(path, value, allowed))
        elif rule is not None and not rule.ok(value):
            problems.append(FieldProblem(path, value, allowed_text(tp, rule)))
    return problems


def all_paths(cls: type, prefix: str = "") -> list[str]:
    """Every leaf field path of dataclass `cls` ('nerf.steps', 'camera.fov_deg', …)."""
    out: list[str] = []
    for name, tp in field_types(cls).items():
        out.extend(all_paths(tp, prefix + name + ".") if is_section(tp) else [prefix + name])
    return out
