"""Preview frames on disk, so a client that re-attaches gets the very bytes it missed.

The engine already writes a lossless PNG of each RGB preview and names it in the event's `path`;
when it did, events.jsonl references that file. Otherwise (normal maps, other job sources) the
server writes its own PNGs — off the event path, so delivery never waits for an encoder; until a
write lands, the bytes are served from memory. Replay decodes the PNGs back to the exact RGB bytes.
The frames waiting for their PNG are bounded by the worker's flow-control credits: the manager
gives a preview's credit back only once its file is written (`on_written`), so a job that emits
faster than the encoder keeps waiting in its worker instead of piling frames up here.
"""
from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from engine.run_dir import atomic_write_bytes

from .paths import resolve_inside

Write = tuple[str, int, int, bytes]  # (path relative to the run folder, width, height, rgb)


def plan_preview(root: Path, header: dict[str, Any], payload: bytes) -> tuple[dict[str, str], list[Write]]:
    """Files to record in the event line ({"file": rel[, "normal_file": rel]}) and the PNGs still to write."""
    w, h = int(header["width"]), int(header["height"])
    n_rgb, n_normal = int(header.get("rgb_bytes", 0)), int(header.get("normal_bytes") or 0)
    files: dict[str, str] = {}
    writes: list[Write] = []
    engine_png = resolve_inside(root, header.get("path"))
    if engine_png is not None and engine_png.is_file():
        files["file"] = engine_png.relative_to(Path(root).resolve()).as_posix()
    elif n_rgb:
        files["file"] = f"previews/ev-{header['seq']:08d}.png"
        writes.append((files["file"], w, h, payload[:n_rgb]))
    if n_normal:
        files["normal_file"] = f"previews/ev-{header['seq']:08d}-normal.png"
        writes.append((files["normal_file"], w, h, payload[n_rgb:n_rgb + n_normal]))
    return files, writes


def write_pngs(root: Path, writes: list[Write]) -> None:
    for rel, w, h, rgb in writes:
        buf = io.BytesIO()
        Image.frombytes("RGB", (w, h), rgb).save(buf, format="PNG", compress_level=1)
        atomic_write_bytes(Path(root) / rel, buf.getvalue())


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


class PreviewStore:
    """Ordered background PNG writes plus the in-memory bytes of frames not yet on disk."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview-png")
        self._pending: dict[tuple[str, int], bytes] = {}

    def store(self, job_id: str, root: Path, header: dict[str, Any], payload: bytes,
              on_written: Callable[[], None] | None = None) -> dict[str, str]:
        """Plan (and start writing) the frame's PNGs; `on_written` runs on the loop once they are
        written or failed (at once when there is nothing to write)."""
        files, writes = plan_preview(root, header, payload)
        if not writes:
            if on_written is not None:
                on_written()
            return files
        key = (job_id, int(header["seq"]))
        self._pending[key] = payload
        loop = asyncio.get_running_loop()

        def written() -> None:
            self._pending.pop(key, None)
            if on_written is not None:
                on_written()

        future = self._pool.submit(write_pngs, root, writes)
        future.add_done_callback(lambda _f: loop.call_soon_threadsafe(written))
        return files

    @property
    def pending_bytes(self) -> int:
        return sum(len(v) for v in self._pending.values())

    async def load(self, job_id: str, root: Path, header: dict[str, Any]) -> bytes | None:
        pending = self._pending.get((job_id, int(header.get("seq", 0))))
        if pending is not None:
            return pending
        return await asyncio.to_thread(load_preview, root, header)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
