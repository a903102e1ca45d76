"""The blocking client: a framed socket that authenticates, sends requests and reads replies."""
from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from .framing import Frame, FrameReader, ProtocolError, encode_frame_parts
from .messages import hello, raise_for_error


@dataclass
class Channel:
    """A framed, blocking socket: send() frames, recv() one frame at a time.

    recv() honours the socket timeout (raising TimeoutError/socket.timeout) without losing a
    partially received frame, so a reader thread can poll a stop flag between reads."""

    sock: socket.socket
    reader: FrameReader = field(default_factory=FrameReader)
    _ready: list[Frame] = field(default_factory=list)

    @classmethod
    def connect(cls, host: str, port: int, token: str, timeout: float = 10.0,
                client: str = "") -> tuple[Channel, Frame]:
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
