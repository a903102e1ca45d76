"""VSDream wire protocol: frames, message schemas, validation, and a small blocking client.

Pure standard library on purpose: the Blender add-on bundles this very file (build_addon.py copies
it) and imports it as-is, so it must not import engine/, server/ internals or third-party code.

Frame (both directions):

    4 bytes   big-endian unsigned length N of the header (1 ≤ N ≤ MAX_HEADER_BYTES)
    N bytes   UTF-8 JSON object, the header; "type" names the message
    P bytes   binary payload, P = header["payload_bytes"] (absent = 0, ≤ MAX_PAYLOAD_BYTES)

See docs/protocol.md for every message and the session flow.
"""
from __future__ import annotations

import json
import math
import re
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

PROTOCOL_VERSION = 1
PREFIX = struct.Struct(">I")
MAX_HEADER_BYTES = 1 << 20            # 1 MiB of JSON is far beyond any real message
MAX_PAYLOAD_BYTES = 256 << 20         # mesh uploads and artifact downloads
HELLO_TIMEOUT_S = 5.0                 # the server's default time for the first frame
TOKEN_ENV = "VSDREAM_TOKEN"

JOB_STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
TERMINAL_EVENTS = ("done", "failed", "cancelled")
MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
MAX_SAFE_INT = 2**53 - 1             # offsets, lengths and seqs every JSON reader keeps exact
_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")

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

    def to_frame(self, re_id: Any = None) -> "Frame":
        return error(self.code, self.message, hint=self.hint, problems=self.problems, fatal=self.fatal,
                     re_id=re_id)


class FrameError(ProtocolError):
    """The byte stream is not valid framing; the connection must close."""

    def __init__(self, message: str):
        super().__init__("bad_frame", message, fatal=True)


# ------------------------------------------------------------------------- frames
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
    if not _is_int(size) or size < 0:
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


# ---------------------------------------------------------------------- schemas
# field -> kind; "!" suffix = required; kinds: str int num bool obj list any; "?" prefix = may be null
_COMMON = {"type": "str!", "id": "id", "payload_bytes": "int"}
CLIENT_MESSAGES: dict[str, dict[str, str]] = {
    "hello": {"token": "str!", "protocol": "int!", "client": "str"},
    "submit": {"spec": "obj", "preset": "str", "overrides": "obj", "mesh_name": "str", "attach": "bool",
               "previews": "bool"},
    "cancel": {"job_id": "str!"},
    "resume": {"job_id": "str!", "attach": "bool", "previews": "bool"},
    "list_jobs": {},
    "attach": {"job_id": "str!", "from_seq": "int", "previews": "bool"},
    "detach": {"job_id": "str!"},
    "get_artifact": {"job_id": "str!", "name": "str!", "offset": "int", "length": "int"},
    "ping": {"nonce": "any"},
    "shutdown": {},
}
_EVENT = {"job_id": "str!", "seq": "int!", "time": "num!"}
SERVER_MESSAGES: dict[str, dict[str, str]] = {
    "welcome": {"protocol": "int!", "version": "str!", "server_pid": "int!", "devices": "list!",
                "runs_dir": "str"},
    "accepted": {"job_id": "str!", "position": "int!", "run_dir": "str!", "resumed": "bool"},
    "attached": {"job_id": "str!", "state": "str!", "last_seq": "int!"},
    "detached": {"job_id": "str!"},
    "jobs": {"jobs": "list!", "workers": "list!", "unreadable": "list"},
    "artifact_data": {"job_id": "str!", "name": "str!", "size": "int!", "offset": "int!", "sha256": "str!"},
    "pong": {"nonce": "any", "time": "num!"},
    "ack": {"what": "str!", "job_id": "str", "state": "str"},
    "error": {"code": "str!", "message": "str!", "hint": "str", "problems": "list", "fatal": "bool!",
              "job_id": "str"},
    "heartbeat": {"time": "num!", "running": "list!", "queued": "int!"},
    # job events (also the lines of events.jsonl); "seq" orders them per job
    "queued": {**_EVENT, "position": "int"},
    "started": {**_EVENT, "device": "str", "worker_pid": "int"},
    "stage": {**_EVENT, "stage": "str!", "total": "int!", "resumed_from": "int"},
    "progress": {**_EVENT, "stage": "str!", "step": "int!", "total": "int!", "losses": "obj",
                 "it_per_s": "num", "eta_s": "num", "gpu_mem_mb": "?num"},
    "preview": {**_EVENT, "stage": "str!", "step": "int!", "width": "int!", "height": "int!",
                "rgb_bytes": "int!", "normal_bytes": "int", "path": "?str"},
    "artifact": {**_EVENT, "name": "str!", "path": "str!", "size": "int!", "role": "str"},
    "log": {**_EVENT, "level": "str!", "message": "str!"},
    "done": {**_EVENT, "result": "obj!"},
    "failed": {**_EVENT, "code": "str!", "message": "str!", "hint": "str", "traceback": "str",
               "exit_status": "?int", "log_tail": "str", "problems": "list", "checkpoint": "?str"},
    "cancelled": {**_EVENT, "stage": "str", "step": "int", "checkpoint": "?str", "reason": "str"},
}
JOB_EVENTS = ("queued", "started", "stage", "progress", "preview", "artifact", "log", "done", "failed",
              "cancelled")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _kind_ok(kind: str, v: Any) -> bool:
    if kind.startswith("?"):
        if v is None:
            return True
        kind = kind[1:]
    if kind == "str":
        return isinstance(v, str)
    if kind == "int":
        return _is_int(v)
    if kind == "num":
        return _is_int(v) or isinstance(v, float) and math.isfinite(v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "obj":
        return isinstance(v, dict)
    if kind == "list":
        return isinstance(v, list)
    if kind == "id":
        return isinstance(v, str) and len(v) <= 200 or _is_int(v)
    return True  # any


_KIND_WORDS = {"str": "a string", "int": "an integer", "num": "a finite number", "bool": "true or false",
               "obj": "a JSON object", "list": "a JSON array", "id": "a string (≤ 200 chars) or an integer",
               "any": "any JSON value"}


def problem(name: str, value: Any, allowed: str) -> dict[str, Any]:
    """One field-level problem {"field", "value", "allowed"}; long values are shortened for the wire."""
    try:
        small = len(json.dumps(value, allow_nan=False)) <= 200
    except (TypeError, ValueError, RecursionError):
        small = False
    if not small:
        value = f"<{type(value).__name__}>" if isinstance(value, (dict, list)) else repr(value)[:80] + "…"
    return {"field": name, "value": value, "allowed": allowed}


def validate(header: dict[str, Any], side: str = "client") -> list[dict[str, Any]]:
    """Field-level problems of one message ([] = valid), each {"field", "value", "allowed"}.

    side="client" checks what a client may send (strict: unknown fields are problems);
    side="server" checks what a server sends (extra fields are allowed for forward compatibility)."""
    table = CLIENT_MESSAGES if side == "client" else SERVER_MESSAGES
    mtype = header.get("type")
    if mtype not in table:
        return [problem("type", mtype, "one of " + ", ".join(sorted(table)))]
    schema = {**_COMMON, **table[mtype]}
    problems = []
    for name, kind in schema.items():
        required = kind.endswith("!")
        kind = kind.rstrip("!")
        if name not in header:
            if required:
                problems.append(problem(name, None, "required: " + _KIND_WORDS[kind.lstrip("?")]))
            continue
        if not _kind_ok(kind, header[name]):
            words = _KIND_WORDS[kind.lstrip("?")] + (" or null" if kind.startswith("?") else "")
            problems.append(problem(name, header[name], words))
    if side == "client":
        problems += [problem(k, header[k], "not a field of " + mtype) for k in header if k not in schema]
        problems += _client_rules(mtype, header)
    return problems


def _client_rules(mtype: str, h: dict[str, Any]) -> list[dict[str, Any]]:
    """Checks beyond types: ids, ranges, which payloads are allowed."""
    out = []
    if "job_id" in h and isinstance(h["job_id"], str) and not _JOB_ID.match(h["job_id"]):
        out.append(problem("job_id", h["job_id"], "letters, digits, '_', '-', '.' (1-80 chars)"))
    for name in ("from_seq", "offset", "length"):
        if _is_int(h.get(name)) and not 0 <= h[name] <= MAX_SAFE_INT:
            out.append(problem(name, h[name], "an integer in [0, 2^53 - 1]"))
    has_payload = _is_int(h.get("payload_bytes")) and h["payload_bytes"] > 0
    if mtype == "submit":
        if ("spec" in h) == ("preset" in h):
            out.append(problem("spec", h.get("spec"), "exactly one of spec (a full JobSpec) or preset"))
        if "overrides" in h and "preset" not in h:
            out.append(problem("overrides", h["overrides"], "only together with preset"))
        name = h.get("mesh_name")
        if has_payload and not (isinstance(name, str) and name.lower().endswith(MESH_SUFFIXES)):
            out.append(problem("mesh_name", name, "a file name ending in " + ", ".join(MESH_SUFFIXES)
                                + " when a mesh payload is sent"))
        if "mesh_name" in h and not has_payload:
            out.append(problem("payload_bytes", h.get("payload_bytes", 0), "> 0 (the mesh bytes) with mesh_name"))
    elif has_payload:
        out.append(problem("payload_bytes", h["payload_bytes"], "0: only submit carries a payload"))
    return out


def make(mtype: str, payload: bytes = b"", side: str = "client", **fields: Any) -> Frame:
    """Build and validate a message; raises ProtocolError(invalid_message) naming every bad field."""
    header = {"type": mtype, **{k: v for k, v in fields.items() if v is not None}}
    if payload:
        header["payload_bytes"] = len(payload)
    problems = validate(header, side)
    if problems:
        raise ProtocolError("invalid_message", f"bad {mtype} message", problems=problems)
    return Frame(header, bytes(payload))


# ----------------------------------------------------------- client messages
def hello(token: str, client: str = "", id: Any = None) -> Frame:
    return make("hello", token=token, protocol=PROTOCOL_VERSION, client=client or None, id=id)


def submit(spec: dict[str, Any] | None = None, preset: str | None = None,
           overrides: dict[str, Any] | None = None, mesh: bytes | None = None, mesh_name: str | None = None,
           attach: bool = True, previews: bool = True, id: Any = None) -> Frame:
    """A job from a full JobSpec dict or from a preset + overrides; `mesh` = re-texture input bytes."""
    return make("submit", payload=mesh or b"", spec=spec, preset=preset, overrides=overrides,
                mesh_name=mesh_name, attach=attach, previews=previews, id=id)


def cancel(job_id: str, id: Any = None) -> Frame:
    return make("cancel", job_id=job_id, id=id)


def resume(job_id: str, attach: bool = True, previews: bool = True, id: Any = None) -> Frame:
    return make("resume", job_id=job_id, attach=attach, previews=previews, id=id)


def list_jobs(id: Any = None) -> Frame:
    return make("list_jobs", id=id)


def attach(job_id: str, from_seq: int = 0, previews: bool = True, id: Any = None) -> Frame:
    """Stream a job's events with seq > from_seq: replayed from disk, then live."""
    return make("attach", job_id=job_id, from_seq=from_seq, previews=previews, id=id)


def detach(job_id: str, id: Any = None) -> Frame:
    return make("detach", job_id=job_id, id=id)


def get_artifact(job_id: str, name: str, offset: int = 0, length: int | None = None, id: Any = None) -> Frame:
    return make("get_artifact", job_id=job_id, name=name, offset=offset, length=length, id=id)


def ping(nonce: Any = None, id: Any = None) -> Frame:
    return make("ping", nonce=nonce, id=id)


def shutdown(id: Any = None) -> Frame:
    return make("shutdown", id=id)


# ----------------------------------------------------------- server messages
def error(code: str, message: str, hint: str | None = None, problems: list[dict[str, Any]] | None = None,
          fatal: bool = False, re_id: Any = None, job_id: str | None = None) -> Frame:
    header = {"type": "error", "code": code, "message": message,
              "hint": ERROR_HINTS.get(code, "") if hint is None else hint,
              "problems": problems or [], "fatal": fatal}
    if re_id is not None:
        header["re"] = re_id
    if job_id is not None:
        header["job_id"] = job_id
    return Frame(header)


def reply(mtype: str, request: Frame | None = None, payload: bytes = b"", **fields: Any) -> Frame:
    """A server message; carries "re" = the request's "id" when the client sent one."""
    frame = make(mtype, payload=payload, side="server", **fields)
    if request is not None and request.get("id") is not None:
        frame.header["re"] = request.get("id")
    return frame


def raise_for_error(frame: Frame) -> Frame:
    """Return the frame, or raise ProtocolError when it is an error message."""
    if frame.type == "error":
        raise ProtocolError(str(frame.get("code")), str(frame.get("message")), frame.get("hint", ""),
                            frame.get("problems") or [], bool(frame.get("fatal")))
    return frame


def preview_images(frame: Frame) -> tuple[int, int, bytes, bytes | None]:
    """(width, height, rgb, normal-or-None) of a preview event: 8-bit RGB, top row first."""
    n_rgb = int(frame["rgb_bytes"])
    n_normal = int(frame.get("normal_bytes") or 0)
    rgb = frame.payload[:n_rgb]
    normal = frame.payload[n_rgb:n_rgb + n_normal] if n_normal else None
    return int(frame["width"]), int(frame["height"]), rgb, normal


def parse_ready_line(line: str | bytes) -> dict[str, Any]:
    """Parse the server's first stdout line; raises ProtocolError when it is not a usable handshake."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    try:
        data = json.loads(line)
    except ValueError:
        raise ProtocolError("bad_frame", f"handshake line is not JSON: {line[:120]!r}",
                            hint="the engine printed something else first; check its log") from None
    if not isinstance(data, dict) or data.get("event") != "ready" or not _is_int(data.get("port")):
        raise ProtocolError("bad_frame", f"not a ready handshake: {line[:120]!r}")
    if data.get("protocol") != PROTOCOL_VERSION:
        raise ProtocolError("protocol_mismatch",
                            f"engine speaks protocol {data.get('protocol')}, this client {PROTOCOL_VERSION}")
    return data


# ------------------------------------------------------ blocking socket client
@dataclass
class Channel:
    """A framed, blocking socket: send() frames, recv() one frame at a time.

    recv() honours the socket timeout (raising TimeoutError/socket.timeout) without losing a
    partially received frame, so a reader thread can poll a stop flag between reads."""

    sock: socket.socket
    reader: FrameReader = field(default_factory=FrameReader)
    _ready: list[Frame] = field(default_factory=list)

    @classmethod
    def connect(cls, host: str, port: int, token: str, timeout: float = 10.0, client: str = "") -> tuple["Channel", Frame]:
        """Connect and authenticate; returns (channel, welcome). Raises ProtocolError on refusal."""
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        chan = cls(sock)
        try:
            chan.send(hello(token, client))
            welcome = chan.recv()
            if welcome is None:
                raise ProtocolError("unauthorized", "the server closed the connection during hello")
            raise_for_error(welcome)
        except BaseException:
            chan.close()
            raise
        return chan, welcome

    def send(self, frame: Frame) -> None:
        head, body = encode_frame_parts(frame.header, frame.payload)
        self.sock.sendall(head)
        if body:
            self.sock.sendall(body)

    def request(self, frame: Frame, timeout: float | None = None) -> Frame:
        """Send a request with an id and return its reply, keeping other frames for later recv()."""
        if frame.get("id") is None:
            frame.header["id"] = f"r{time.monotonic_ns()}"
        self.send(frame)
        rid, kept = frame.get("id"), []
        try:
            while True:
                got = self.recv(timeout)
                if got is None:
                    raise ProtocolError("internal", "connection closed while waiting for a reply")
                if got.get("re") == rid:
                    return got
                kept.append(got)
        finally:
            self._ready[:0] = kept

    def recv(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None when the server closed the connection cleanly."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while not self._ready:
            data = self.sock.recv(1 << 20)
            if not data:
                self.reader.eof()
                return None
            self._ready.extend(self.reader.feed(data))
        return self._ready.pop(0)

    def take_pending(self) -> list[Frame]:
        """Frames already received but not yet returned by recv(); hand them, with `reader`, to
        your own reader loop when you take the socket over after connect()."""
        pending, self._ready = self._ready, []
        return pending

    def frames(self, timeout: float | None = None) -> Iterable[Frame]:
        while (frame := self.recv(timeout)) is not None:
            yield frame

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
