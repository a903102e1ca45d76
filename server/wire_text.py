"""Text that can cross the wire: every string must be encodable as UTF-8.

JSON may carry `"\\ud83d"`, a lone UTF-16 surrogate: Python decodes it into a str that cannot be
encoded again, so echoing or storing it later breaks every reply that contains it. `bad_text`
finds such strings (requests are refused, see request_check.py); `scrub` replaces them with U+FFFD
(replies and text read back from disk, see reply_encode.py).
"""
from __future__ import annotations

from typing import Any

# one test of encodability and one printable form (surrogates as \\udXXX escapes) for the spec
# problems and the wire
from engine.spec_problems import safe_text as shown
from engine.spec_problems import utf8_ok as _ok

ALLOWED = "text that can be encoded as UTF-8 (no lone UTF-16 surrogate such as \\ud83d)"


def bad_text(obj: Any, root: str = "") -> list[tuple[str, str]]:
    """(field path, shown value) for each string or key that is not valid Unicode text.

    Paths read like `overrides.camera[0]` or `nonce.<key>`; a bad key is named by itself. Walks
    iteratively: a header may be nested as deep as the JSON parser allows."""
    out: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [(root, obj)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _ok(value):
                out.append((path or "<header>", shown(value)))
        elif isinstance(value, dict):
            for key, item in value.items():
                key_s = str(key)
                sub = f"{path}.{shown(key_s)}" if path else shown(key_s)
                if not _ok(key_s):
                    out.append((sub, shown(key_s)))
                stack.append((sub, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    out.sort()
    return out


def scrub(obj: Any) -> Any:
    """A copy with every lone surrogate replaced by U+FFFD, in strings and keys alike."""
    if isinstance(obj, str):
        return _replace(obj)
    if isinstance(obj, dict):
        return {(_replace(k) if isinstance(k, str) else k): scrub(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


def _replace(s: str) -> str:
    if _ok(s):
        return s
    return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in s)
