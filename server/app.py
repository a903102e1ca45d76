"""The engine server: an asyncio TCP listener, the job manager, heartbeats and the parent watch.

Connections that have not authenticated yet are capped (`--max-unauthenticated`): one past the
cap is closed at once, before any TLS handshake, so a flood of silent connections costs a few KB
each for a moment instead of a handshake's ≈ 300 KB for the whole hello timeout. TLS is
therefore started by the handler (start_tls) rather than by the listener.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import sys
import time

from .config import Config
from .connection import Connection
from .liveness import pid_alive
from .manager import JobManager
from .protocol import PROTOCOL_VERSION, Frame, reply
from .tls import server_context

log = logging.getLogger("vsdream.server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server:
    def __init__(self, config: Config):
        from engine import __version__
        self.config, self.version, self.pid = config, __version__, os.getpid()
        self.manager = JobManager(config.runs_dir, config.devices, config.job_fn, config.max_queue,
                                  config.cancel_grace_s, config.path_policy)
        self.connections: set[Connection] = set()
        self.unauthenticated = 0  # accepted connections that have not sent a good hello yet
        self.refused_unauthenticated = 0  # connections closed at once because of the cap (logged)
        self._stop = asyncio.Event()
        self._tls: ssl.SSLContext | None = None
        self.stop_reason = ""

    def connection_authenticated(self, conn: Connection) -> None:
        if conn in self.connections and not getattr(conn, "left_preauth", False):
            conn.left_preauth = True
            self.unauthenticated -= 1

    def connection_closed(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connection_authenticated(conn)  # leaves the unauthenticated count, once
        self.connections.discard(conn)

    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            log.info("stopping: %s", reason)
            self.stop_reason = reason
            self._stop.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.unauthenticated >= self.config.max_unauthenticated:
            self.refused_unauthenticated += 1
            if self.refused_unauthenticated in (1, 10, 100) or self.refused_unauthenticated % 1000 == 0:
                log.warning("%d connections are waiting for their hello (limit %d, --max-unauthenticated); "
                            "closing new ones at once (%d so far)", self.unauthenticated,
                            self.config.max_unauthenticated, self.refused_unauthenticated)
            writer.transport.abort()
            return
        self.unauthenticated += 1
        conn: Connection | None = None
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                try:
                    await writer.start_tls(self._tls, ssl_handshake_timeout=self.config.hello_timeout_s)
                except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
                    log.info("TLS handshake with %s failed: %s", writer.get_extra_info("peername"), exc)
                    writer.transport.abort()
                    return
            conn = Connection(self, self.manager, self.config, reader, writer)
            self.connections.add(conn)
            await conn.serve()
        finally:
            if conn is None or not getattr(conn, "left_preauth", False):
                if conn is not None:
                    conn.left_preauth = True
                self.unauthenticated -= 1
            if conn is not None:
                self.connections.discard(conn)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            beat = reply("heartbeat", time=time.time(), **self.manager.status())
            for conn in list(self.connections):
                if conn.authed:
                    conn.deliver(Frame(beat.header))

    async def _watch_parent(self, pid: int) -> None:
        while pid_alive(pid):
            await asyncio.sleep(0.2)
        self.request_stop(f"parent process {pid} exited")

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop, sig.name)
            except (NotImplementedError, RuntimeError):  # Windows: plain handlers, hopped onto the loop
                signal.signal(sig, lambda s, _f: loop.call_soon_threadsafe(self.request_stop, signal.Signals(s).name))

    def _announce_remote(self, port: int) -> None:
        """Say plainly that the engine is reachable from the network, over TLS, and what to pin."""
        cfg = self.config
        token_from = f"the token is in {cfg.token_file}" if cfg.token_file else "the token is the one you set"
        log.warning("REMOTE MODE (--allow-remote): listening on %s:%d; all traffic is TLS (plaintext "
                    "clients are refused). Pin this SHA-256 certificate fingerprint in the client: %s "
                    "(certificate %s%s); %s. Never share the token in plaintext.", cfg.host, port,
                    cfg.tls.fingerprint, cfg.tls.cert_path, ", new this start" if cfg.tls.created else "", token_from)

    async def run(self, ready_out=None) -> int:
        """Serve until shutdown, a signal or the parent's exit; returns the exit code."""
        cfg = self.config
        self._install_signals()
        tls = self._tls = server_context(cfg.tls) if cfg.tls else None
        listener = await asyncio.start_server(self._handle, cfg.host, cfg.port, limit=1 << 20,
                                              backlog=max(100, cfg.max_unauthenticated))
        port = listener.sockets[0].getsockname()[1]
        self.manager.start(resume_unfinished=cfg.resume_unfinished)
        ready = {"event": "ready", "port": port, "pid": self.pid, "protocol": PROTOCOL_VERSION,
                 "version": self.version, "host": cfg.host, "runs_dir": str(cfg.runs_dir), "devices": cfg.devices,
                 "tls": tls is not None}
        if cfg.token_file is not None:
            ready["token_file"] = str(cfg.token_file)
        if cfg.tls is not None:
            ready.update(fingerprint=cfg.tls.fingerprint, cert_file=str(cfg.tls.cert_path))
        out = ready_out or sys.stdout
        out.write(json.dumps(ready) + "\n")
        out.flush()
        log.info("listening on %s:%d (pid %d, runs in %s)", cfg.host, port, self.pid, cfg.runs_dir)
        if cfg.tls is not None:
            self._announce_remote(port)
        tasks = [asyncio.create_task(self._heartbeats())]
        if cfg.parent_pid:
            tasks.append(asyncio.create_task(self._watch_parent(cfg.parent_pid)))
        await self._stop.wait()
        listener.close()
        await self.manager.shutdown()
        for conn in list(self.connections):
            conn.close_after_flush()
        await asyncio.sleep(0.1)  # let final frames (cancelled events, the shutdown ack) go out
        if cfg.tls is not None:  # a TLS close waits for the peer's close_notify: do not wait on exit
            for conn in list(self.connections):
                conn.writer.transport.abort()
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        log.info("stopped (%s)", self.stop_reason)
        return 0
