"""Preview frames on disk, so a client that re-attaches gets the very bytes it missed.

The engine already writes a lossless PNG of each RGB preview and names it in the event's `path`;
when it did, events.jsonl references that file. Otherwise (normal maps, other job sources) the
server writes its own PNGs. Either way replay decodes them back to the exact 8-bit RGB bytes.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from engine.run_dir import atomic_write_bytes

from .paths import resolve_inside


def store_preview(root: Path, header: dict[str, Any], payload: bytes) -> dict[str, str]:
    """Files to record in the event line: {"file": rel, ["normal_file": rel]} (paths relative to root)."""
    w, h = int(header["width"]), int(header["height"])
    n_rgb, n_normal = int(header.get("rgb_bytes", 0)), int(header.get("normal_bytes") or 0)
    out: dict[str, str] = {}
    engine_png = resolve_inside(root, header.get("path"))
    if engine_png is not None and engine_png.is_file():
        out["file"] = engine_png.relative_to(root.resolve()).as_posix()
    else:
        out["file"] = _write_png(root, f"previews/ev-{header['seq']:08d}.png", w, h, payload[:n_rgb])
    if n_normal:
        out["normal_file"] = _write_png(root, f"previews/ev-{header['seq']:08d}-normal.png", w, h,
                                        payload[n_rgb:n_rgb + n_normal])
    return out


def load_preview(root: Path, header: dict[str, Any]) -> bytes | None:
    """The payload (rgb + normal) of a stored preview, or None when the files are gone or differ."""
    parts = []
    for key, size_key in (("file", "rgb_bytes"), ("normal_file", "normal_bytes")):
        size = int(header.get(size_key) or 0)
        if not size:
            continue
        path = resolve_inside(root, header.get(key))
        if path is None or not path.is_file():
            return None
        with Image.open(path) as img:
            data = img.convert("RGB").tobytes()
        if len(data) != size:
            return None
        parts.append(data)
    return b"".join(parts)


def _write_png(root: Path, rel: str, w: int, h: int, rgb: bytes) -> str:
    buf = io.BytesIO()
    Image.frombytes("RGB", (w, h), rgb).save(buf, format="PNG", compress_level=1)
    atomic_write_bytes(root / rel, buf.getvalue())
    return rel
