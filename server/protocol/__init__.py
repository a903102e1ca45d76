"""VSDream wire protocol: frames, message schemas, validation, and a small blocking client.

One public surface, `server.protocol` (or the add-on's bundled `<addon>.protocol`), over four modules:

    framing.py     the byte layout of a frame, limits, FrameReader, ProtocolError / FrameError
    validation.py  each message's schema, the rules beyond types, field-level problem()s
    messages.py    the message constructors (hello, submit, ..., reply, error) and the handshake line
    channel.py     Channel, a framed blocking socket client

Pure standard library on purpose, with relative imports only inside this package: the Blender
add-on bundles the package as-is (build_addon.py copies it), so it must not import engine/,
server/ internals or third-party code. See docs/protocol.md for every message and the session flow.
"""
from __future__ import annotations

from .channel import Channel
from .framing import (
    ERROR_HINTS,
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    PREFIX,
    Frame,
    FrameError,
    FrameReader,
    ProtocolError,
    decode_frames,
    decode_header,
    encode_frame,
    encode_frame_parts,
    is_int,
)
from .messages import (
    HELLO_TIMEOUT_S,
    PROTOCOL_VERSION,
    TOKEN_ENV,
    attach,
    cancel,
    detach,
    error,
    get_artifact,
    hello,
    list_jobs,
    make,
    parse_ready_line,
    ping,
    preview_images,
    raise_for_error,
    reply,
    resume,
    shutdown,
    submit,
)
from .validation import (
    CLIENT_MESSAGES,
    JOB_EVENTS,
    JOB_STATES,
    MAX_SAFE_INT,
    MESH_SUFFIXES,
    SERVER_MESSAGES,
    TERMINAL_EVENTS,
    problem,
    validate,
)

__all__ = [
    "CLIENT_MESSAGES", "ERROR_HINTS", "HELLO_TIMEOUT_S", "JOB_EVENTS", "JOB_STATES", "MAX_HEADER_BYTES",
    "MAX_PAYLOAD_BYTES", "MAX_SAFE_INT", "MESH_SUFFIXES", "PREFIX", "PROTOCOL_VERSION", "SERVER_MESSAGES",
    "TERMINAL_EVENTS", "TOKEN_ENV", "Channel", "Frame", "FrameError", "FrameReader", "ProtocolError", "attach",
    "cancel", "decode_frames", "decode_header", "detach", "encode_frame", "encode_frame_parts", "error",
    "get_artifact", "hello", "is_int", "list_jobs", "make", "parse_ready_line", "ping", "preview_images",
    "problem", "raise_for_error", "reply", "resume", "shutdown", "submit", "validate",
]
