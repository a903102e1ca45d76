"""Replies that can always be encoded: a server message never dies on its way to the socket.

Text read back from disk (a spec.json an older version wrote, an events.jsonl line) may hold lone
surrogates; those are sent as U+FFFD with a warning naming the fields. Anything else that cannot
be encoded (a server bug) becomes an `error` reply to the same request and a log line, instead
of a connection closed without a word."""
from __future__ import annotations

import logging

from . import protocol as P
from .wire_text import bad_text, scrub

log = logging.getLogger("vsdream.server")


def encode_reply(frame: P.Frame) -> tuple[bytes, bytes]:
    """(head, payload) of `frame`, repaired or replaced by an error frame when it cannot be encoded."""
    try:
        return P.encode_frame_parts(frame.header, frame.payload)
    except UnicodeEncodeError:
        fields = ", ".join(f for f, _ in bad_text(frame.header)[:5])
        log.warning("%s reply: text that is not valid Unicode in %s; sent with U+FFFD in its place",
                    frame.type, fields)
        try:
            return P.encode_frame_parts(scrub(frame.header), frame.payload)
        except (ValueError, TypeError, RecursionError, P.ProtocolError) as exc:
            return _replacement(frame, exc)
    except (ValueError, TypeError, RecursionError, P.ProtocolError) as exc:
        return _replacement(frame, exc)


def _replacement(frame: P.Frame, exc: BaseException) -> tuple[bytes, bytes]:
    code = exc.code if isinstance(exc, P.ProtocolError) else "internal"
    log.error("cannot encode a %s reply (%s: %s); sending an error instead", frame.type, type(exc).__name__,
              str(exc)[:300])
    re_id = frame.get("re")
    err = P.error(code, f"the server could not encode its {frame.type!r} reply ({type(exc).__name__}: "
                        f"{str(exc)[:200]})", re_id=re_id if bad_text(re_id) == [] else None,
                  job_id=frame.get("job_id") if isinstance(frame.get("job_id"), str) else None)
    return P.encode_frame_parts(scrub(err.header))
