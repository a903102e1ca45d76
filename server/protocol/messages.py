"""Messages: the client requests and server replies as Frames, built and validated in one place.

See docs/protocol.md for every message and the session flow.
"""
from __future__ import annotations

import json
from typing import Any

from .framing import Frame, ProtocolError, is_int
from .validation import validate

PROTOCOL_VERSION = 1
HELLO_TIMEOUT_S = 5.0                 # the server's default time for the first frame
TOKEN_ENV = "VSDREAM_TOKEN"


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


def list_jobs(offset: int | None = None, limit: int | None = None, id: Any = None) -> Frame:
    """One page of the job history, newest first (the reply says `total` and `next_offset`)."""
    return make("list_jobs", offset=offset, limit=limit, id=id)


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
    """An "error" message; the hint defaults to ERROR_HINTS[code]."""
    frame = ProtocolError(code, message, hint, problems, fatal).to_frame(re_id)
    if job_id is not None:
        frame.header["job_id"] = job_id
    return frame


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
    if not isinstance(data, dict) or data.get("event") != "ready" or not is_int(data.get("port")):
        raise ProtocolError("bad_frame", f"not a ready handshake: {line[:120]!r}")
    if data.get("protocol") != PROTOCOL_VERSION:
        raise ProtocolError("protocol_mismatch",
                            f"engine speaks protocol {data.get('protocol')}, this client {PROTOCOL_VERSION}")
    return data
