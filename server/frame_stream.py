"""Reading frames off a client connection: a real per-frame deadline, and payloads streamed to disk.

- Idle time *between* frames is unbounded here (the connection's heartbeat and the client decide
  when a quiet link is dead). Once a frame's first byte has arrived, the whole frame must arrive
  within `frame_timeout_s`, plus `payload_bytes / MIN_PAYLOAD_RATE` seconds for its payload, so a
  frame trickled a byte at a time is cut however steadily the bytes come.
- A payload larger than `SPOOL_MIN` is written to a file under `spool_dir` as it arrives, in
  pieces of at most `CHUNK` bytes, so a 256 MiB mesh upload costs a few MiB of memory, not the
  payload twice over. The frame comes back as a `SpooledFrame` naming that file; whoever handles
  the frame may move it, and `discard()` removes it otherwise. When the disk fills up, the rest of
  the payload is read and dropped (the framing stays intact) and the frame carries `write_error`,
  so the request gets a clear error reply instead of a reset connection.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import protocol as P

SPOOL_MIN = 1 << 20          # payloads up to this stay in memory
CHUNK = 1 << 20              # write to disk in pieces of this size
MIN_PAYLOAD_RATE = 1 << 20   # bytes/s a payload is granted on top of --frame-timeout


@dataclass
class SpooledFrame(P.Frame):
    """A frame whose payload is in a file (`spool`) instead of memory (`payload` is b"").

    `write_error` is set (and `spool` is None) when the payload could not be written (a full disk)."""
    spool: Path | None = None
    write_error: OSError | None = None

    def discard(self) -> None:
        if self.spool is not None:
            try:
                self.spool.unlink()
            except FileNotFoundError:
                pass
            self.spool = None


class FrameStream:
    """`await next()` returns one frame; EOFError at a clean end, FrameError (fatal) otherwise."""

    def __init__(self, reader: asyncio.StreamReader, frame_timeout_s: float, spool_dir: Path,
                 max_header: int = P.MAX_HEADER_BYTES, max_payload: int = P.MAX_PAYLOAD_BYTES):
        self.reader, self.frame_timeout_s, self.spool_dir = reader, frame_timeout_s, Path(spool_dir)
        self.max_header, self.max_payload = max_header, max_payload
        self._got = 0  # bytes of the current frame received so far (for messages)

    async def next(self) -> P.Frame:
        first = await self.reader.read(1)  # idle wait: no deadline until a frame begins
        if not first:
            raise EOFError
        loop = asyncio.get_running_loop()
        self._got, start = 1, loop.time()
        try:
            async with asyncio.timeout_at(start + self.frame_timeout_s) as budget:
                return await self._rest_of_frame(first, budget)
        except TimeoutError:  # quote the budget this frame had: --frame-timeout plus its payload's share
            allowed = (budget.when() or start + self.frame_timeout_s) - start
            raise P.FrameError(f"frame not complete within {allowed:.3g} s of its first byte (--frame-timeout "
                               f"{self.frame_timeout_s:g} s + 1 s per MiB of payload; {self._got} bytes "
                               "received)") from None

    async def _rest_of_frame(self, first: bytes, budget: asyncio.Timeout) -> P.Frame:
        (n,) = P.PREFIX.unpack(first + await self._exact(P.PREFIX.size - 1))
        if n == 0 or n > self.max_header:
            raise P.FrameError(f"declared header length {n} is outside 1..{self.max_header}")
        header = P.decode_header(await self._exact(n))
        size = header.get("payload_bytes", 0)
        if size > self.max_payload:
            raise P.FrameError(f"declared payload of {size} bytes exceeds {self.max_payload}")
        if size == 0:
            return P.Frame(header)
        budget.reschedule(budget.when() + size / MIN_PAYLOAD_RATE)
        if size <= SPOOL_MIN:
            return P.Frame(header, await self._exact(size))
        try:
            return SpooledFrame(header, b"", await self._spool(size))
        except _SpoolFailed as failed:
            return SpooledFrame(header, b"", None, failed.error)

    async def _exact(self, n: int) -> bytes:
        try:
            data = await self.reader.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            raise P.FrameError(f"connection closed inside a frame ({self._got + len(exc.partial)} bytes "
                               f"received)") from None
        self._got += n
        return data

    async def _spool(self, size: int) -> Path:
        """The payload in a new file; _SpoolFailed (after reading the whole payload) when it cannot be written."""
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.spool_dir, prefix="upload-", suffix=".part")
        except OSError as exc:
            await self._drop(size)
            raise _SpoolFailed(exc) from None
        path, ok, error = Path(name), False, None
        try:
            with os.fdopen(fd, "wb", buffering=0) as fh:  # unbuffered: a failed write leaves nothing pending
                left, buf = size, bytearray()
                while left:
                    piece = await self.reader.read(min(CHUNK - len(buf), left))
                    if not piece:
                        raise P.FrameError(f"connection closed inside a frame's payload ({size - left} of "
                                           f"{size} bytes received)")
                    left -= len(piece)
                    self._got += len(piece)
                    buf += piece
                    if len(buf) >= CHUNK or not left:
                        try:
                            await asyncio.to_thread(_write_all, fh, buf)  # off the loop; buf is untouched meanwhile
                        except OSError as exc:
                            error = exc
                            break
                        buf.clear()
            if error is not None:
                await self._drop(left)
                raise _SpoolFailed(error)
            ok = True
            return path
        finally:
            if not ok:
                path.unlink(missing_ok=True)

    async def _drop(self, left: int) -> None:
        """Read and discard the rest of a payload that cannot be stored, keeping the framing intact."""
        while left:
            piece = await self.reader.read(min(CHUNK, left))
            if not piece:
                raise P.FrameError(f"connection closed inside a frame's payload ({self._got} bytes received)")
            left -= len(piece)
            self._got += len(piece)


def _write_all(fh: Any, data: bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[fh.write(view):]


class _SpoolFailed(Exception):
    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error
