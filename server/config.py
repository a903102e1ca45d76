"""The engine server's settings: one dataclass, read by the app and by each client connection.

It lives apart from app.py so that connection.py can read it without importing the app.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .path_policy import PathPolicy
from .tls import TlsIdentity
from .worker import DEFAULT_JOB_FN


@dataclass
class Config:
    runs_dir: Path
    token: str
    host: str = "127.0.0.1"
    port: int = 0
    devices: list[str] = field(default_factory=lambda: ["auto"])
    parent_pid: int | None = None
    resume_unfinished: bool = False
    job_fn: str = DEFAULT_JOB_FN
    hello_timeout_s: float = 5.0
    frame_timeout_s: float = 30.0
    heartbeat_s: float = 2.0
    cancel_grace_s: float = 30.0
    max_queue: int = 32
    max_outbox: int = 10_000
    max_unauthenticated: int = 64  # connections at once that have not sent a good hello (more are closed at once)
    token_file: Path | None = None  # reported in the handshake when the server made the token itself
    path_policy: PathPolicy = field(default_factory=PathPolicy)  # which files a job's spec may name
    tls: TlsIdentity | None = None  # set by --allow-remote: serve TLS with this certificate, never plaintext
