"""Client side of remote engines: TLS with a pinned certificate fingerprint (stdlib only).

A remote engine (`--allow-remote`) serves TLS with a self-signed certificate and prints its
SHA-256 fingerprint. No certificate authority is involved: the client skips chain and host-name
checks and instead compares the SHA-256 of the certificate the server presents with the
fingerprint the user copied from the engine. build_addon.py bundles this file into the add-on
next to the protocol package, so Blender and Python callers share one implementation.
"""
from __future__ import annotations

import hashlib
import hmac
import socket
import ssl
import string

from . import protocol

FINGERPRINT_HEX_CHARS = 64  # SHA-256
_HEX = set(string.hexdigits)


class PinError(ConnectionError):
    """The TLS connection was refused by this client; the message says why and what to do."""


class FingerprintMismatch(PinError):
    def __init__(self, where: str, expected: str, received: str):
        self.expected, self.received = expected, received
        super().__init__(
            f"the engine at {where} presented a certificate with SHA-256 fingerprint {received}, but the "
            f"fingerprint you pinned is {expected}. Refused: someone may be intercepting the connection. "
            "Compare with the 'fingerprint' the engine printed when it started (its log or ready line); "
            "if the engine made a new certificate, paste its new fingerprint in the add-on preferences")


def normalize_fingerprint(text: str) -> str:
    """64 lowercase hex digits from a fingerprint written with or without colons/spaces, any case.

    Raises ValueError naming what is wrong, so a typo is reported before any connection."""
    if not isinstance(text, str):
        raise ValueError(f"fingerprint must be text, got {type(text).__name__}")
    raw = text.strip()
    if raw.lower().startswith("sha256"):
        raw = raw[6:].lstrip(":= ")
    digits = "".join(ch for ch in raw if ch not in ": -")
    bad = sorted({ch for ch in digits if ch not in _HEX})
    if bad or len(digits) != FINGERPRINT_HEX_CHARS:
        found = f"characters {''.join(bad)!r} that are not hex" if bad else f"{len(digits)} hex digits"
        raise ValueError(f"fingerprint {text!r} is not a SHA-256 fingerprint: expected {FINGERPRINT_HEX_CHARS} "
                         f"hex digits (colons optional), found {found}. Copy it from the engine's start-up output")
    return digits.lower()


def format_fingerprint(text: str) -> str:
    """The display form: upper-case hex pairs joined by colons (AB:CD:…)."""
    hexdigits = normalize_fingerprint(text).upper()
    return ":".join(hexdigits[i:i + 2] for i in range(0, len(hexdigits), 2))


def fingerprint_of_der(der: bytes) -> str:
    """SHA-256 fingerprint (display form) of a DER-encoded certificate."""
    return format_fingerprint(hashlib.sha256(der).hexdigest())


def fingerprints_match(expected: str, received: str) -> bool:
    """Constant-time comparison of two fingerprints in any accepted spelling."""
    return hmac.compare_digest(normalize_fingerprint(expected).encode("ascii"),
                               normalize_fingerprint(received).encode("ascii"))


def client_context() -> ssl.SSLContext:
    """TLS 1.2+ with no CA or host-name check: trust comes from the pinned fingerprint alone."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # must be cleared before verify_mode can be CERT_NONE
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def open_pinned(host: str, port: int, fingerprint: str, timeout: float = 10.0) -> ssl.SSLSocket:
    """A TLS socket to host:port whose certificate matches `fingerprint`; PinError otherwise.

    OSError (refused, unreachable, timeout) passes through for the caller's "not reachable" text."""
    expected = format_fingerprint(fingerprint)
    where = f"{host}:{port}"
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = client_context().wrap_socket(raw, server_hostname=host)
    except ssl.SSLError as exc:
        raw.close()
        raise PinError(f"TLS handshake with {where} failed ({exc.reason or exc}): the engine there is not "
                       "serving TLS. Start it with --allow-remote, or for a plain loopback or SSH-tunnel "
                       "engine clear the fingerprint") from None
    except OSError:
        raw.close()
        raise
    der = sock.getpeercert(binary_form=True)
    received = fingerprint_of_der(der) if der else "(no certificate)"
    if not der or not fingerprints_match(expected, received):
        sock.close()
        raise FingerprintMismatch(where, expected, received)
    return sock


def connect_channel(host: str, port: int, token: str, fingerprint: str, timeout: float = 10.0,
                    client: str = "") -> tuple[protocol.Channel, protocol.Frame]:
    """Like protocol.Channel.connect, over pinned TLS; returns (channel, welcome)."""
    chan = protocol.Channel(open_pinned(host, port, fingerprint, timeout))
    try:
        chan.send(protocol.hello(token, client))
        welcome = chan.recv()
        if welcome is None:
            raise protocol.ProtocolError("unauthorized", "the server closed the connection during hello")
        protocol.raise_for_error(welcome)
    except BaseException:
        chan.close()
        raise
    return chan, welcome
