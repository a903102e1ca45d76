"""Framing: the byte layout of a frame, its size limits, and the errors that end a stream.

    4 bytes   big-endian unsigned length N of the header (1 ≤ N ≤ MAX_HEADER_BYTES)
    N bytes   UTF-8 JSON object, the header; "type" names the message
    P bytes   binary payload, P = header["payload_bytes"] (absent = 0, ≤ MAX_PAYLOAD_BYTES)

ProtocolError lives here because framing raises it (too_large, bad_frame) and every error is
answered with an "error" frame built by ProtocolError.to_frame.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

PREFIX = struct.Struct(">I")
MAX_HEADER_BYTES = 1 << 20            # 1 MiB of JSON is far beyond any real message
MAX_PAYLOAD_BYTES = 256 << 20         # mesh uploads and artifact downloads

# code -> default hint a user can act on (servers may send a more specific hint)
ERROR_HINTS: dict[str, str] = {
    "unauthorized": "send hello with the token the server was started with (VSDREAM_TOKEN or --token-file)",
    "protocol_mismatch": "the add-on and the engine come from different VSDream versions; update both",
    "bad_frame": "frames are a 4-byte big-endian header length, a JSON object header, then payload_bytes",
    "invalid_message": "fix the fields listed in problems",
    "unknown_type": "see docs/protocol.md for the message types",
    "invalid_spec": "fix the job spec fields listed in problems",
    "invalid_mesh": "send a GLB, OBJ or PLY with at least one triangle (export the selected mesh from Blender)",
    "unknown_job": "list_jobs shows the jobs this server knows",
    "not_found": "ask for a file the job listed in an artifact event, or a path inside its run folder",
    "too_large": "ask for the file in pieces with offset and length",
    "not_resumable": "only an interrupted, cancelled or crashed job with a checkpoint can resume",
    "busy": "the queue is full; wait for a job to finish or cancel one",
    "shutting_down": "the server is stopping; start it again",
    "out_of_memory": "lower the resolution, use fewer particles, or pick the 'fast' or 'preview' preset",
    "weights_missing": "fetch the model weights with: vsdream models fetch",
    "worker_crashed": "the checkpoint is kept: resume the job; if it happens again, see worker.log in the run folder",
    "engine_error": "see the traceback in the job's worker.log; report it with the run folder's spec.json",
    "disk_full": "free space on the disk of the engine's runs folder, then try again or resume the job",
    "storage_error": "check that the engine's runs folder exists and is writable, then try again",
    "internal": "a server bug; the server log has details",
}


class ProtocolError(Exception):
    """A protocol-level problem with a code, a hint and optional field-level problems.

    `fatal` means the connection cannot continue (framing is lost or auth failed)."""

    def __init__(self, code: str, message: str, hint: str | None = None,
                 problems: list[dict[str, Any]] | None = None, fatal: bool = False):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message
        self.hint = ERROR_HINTS.get(code, "") if hint is None else hint
        self.problems = problems or []
        self.fatal = fatal

    def to_frame(self, re_id: Any = None) -> Frame:
        """This error as an "error" message; "re" echoes the request's id when there is one."""
        header = {"type": "error", "code": self.code, "message": self.message, "hint": self.hint,
                  "problems": self.problems, "fatal": self.fatal}
        if re_id is not None:
            header["re"] = re_id
        return Frame(header)


class FrameError(ProtocolError):
    """The byte stream is not valid framing; the connection must close."""

    def __init__(self, message: str):
        super().__init__("bad_frame", message, fatal=True)


@dataclass
class Frame:
    header: dict[str, Any]
    payload: bytes = b""

    @property
    def type(self) -> str:
        return str(self.header.get("type", ""))

    def get(self, key: str, default: Any = None) -> Any:
        return self.header.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.header[key]

    def __contains__(self, key: str) -> bool:
        return key in self.header

    def encode(self) -> bytes:
        return encode_frame(self.header, self.payload)


def is_int(v: Any) -> bool:
    """A JSON integer (bool is not one, though Python says it is an int)."""
    return isinstance(v, int) and not isinstance(v, bool)


def encode_frame_parts(header: dict[str, Any], payload: bytes = b"") -> tuple[bytes, bytes]:
    """(length prefix + header JSON, payload); sets header["payload_bytes"]. Avoids copying payloads."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("too_large", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    header = dict(header)
    if payload:
        header["payload_bytes"] = len(payload)
    else:
        header.pop("payload_bytes", None)
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError("too_large", f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
    return PREFIX.pack(len(raw)) + raw, bytes(payload)


def encode_frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head, body = encode_frame_parts(header, payload)
    return head + body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_header(raw: bytes) -> dict[str, Any]:
    """Parse a header: a UTF-8 JSON object with a string "type" and a sane "payload_bytes"."""
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError(f"header is not UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise FrameError(f"header is a JSON {type(header).__name__}, not an object")
    if not isinstance(header.get("type"), str) or not header["type"]:
        raise FrameError('header has no string "type"')
    size = header.get("payload_bytes", 0)
    if not is_int(size) or size < 0:
        raise FrameError('"payload_bytes" must be a non-negative integer')
    return header


class FrameReader:
    """Incremental decoder: feed() it whatever recv() returned, get complete frames back.

    Raises FrameError (fatal) on an oversized or malformed frame — after first returning the good
    frames that came before it in the stream. `max_payload` can be lowered, e.g. to 0 before
    authentication so a stranger cannot make the server buffer 256 MiB; `limit` stops after that
    many frames so the limits can change before the rest of the buffer is parsed (feed(b"") later)."""

    def __init__(self, max_header: int = MAX_HEADER_BYTES, max_payload: int = MAX_PAYLOAD_BYTES):
        self.max_header, self.max_payload = max_header, max_payload
        self._buf = bytearray()
        self._header: dict[str, Any] | None = None
        self._need = 0
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a returned frame (0 at a frame boundary)."""
        return len(self._buf) + (PREFIX.size if self._header is not None else 0)

    def feed(self, data: bytes = b"", limit: int | None = None) -> list[Frame]:
        if self._error is not None:
            raise self._error
        self._buf += data
        frames: list[Frame] = []
        try:
            while limit is None or len(frames) < limit:
                frame = self._next()
                if frame is None:
                    break
                frames.append(frame)
        except FrameError as exc:
            if not frames:
                raise
            self._error = exc  # deliver the good frames first; the error comes with the next call
        return frames

    def _next(self) -> Frame | None:
        if self._header is None:
            if len(self._buf) < PREFIX.size:
                return None
            (n,) = PREFIX.unpack_from(self._buf)
            if n == 0 or n > self.max_header:
                raise FrameError(f"declared header length {n} is outside 1..{self.max_header}")
            if len(self._buf) < PREFIX.size + n:
                return None
            header = decode_header(bytes(self._buf[PREFIX.size:PREFIX.size + n]))
            size = header.get("payload_bytes", 0)
            if size > self.max_payload:
                raise FrameError(f"declared payload of {size} bytes exceeds {self.max_payload}")
            del self._buf[:PREFIX.size + n]
            self._header, self._need = header, size
        if len(self._buf) < self._need:
            return None
        with memoryview(self._buf) as view:
            payload = bytes(view[:self._need])
        del self._buf[:self._need]
        frame = Frame(self._header, payload)
        self._header, self._need = None, 0
        return frame

    def eof(self) -> None:
        """Call at end of stream: raises FrameError when a frame was cut off."""
        if self._error is not None:
            raise self._error
        if self.buffered:
            raise FrameError(f"connection closed inside a frame ({self.buffered} bytes pending)")


def decode_frames(data: bytes, max_payload: int = MAX_PAYLOAD_BYTES) -> list[Frame]:
    """Decode a complete byte string of frames (raises FrameError if anything is left over)."""
    reader = FrameReader(max_payload=max_payload)
    frames = reader.feed(data)
    reader.eof()
    return frames
