"""The connection to the engine: one reader thread and one writer thread per socket, one inbox.

Nothing here touches bpy. Worker threads only put items on `Session.inbox`; the pump (pump.py)
drains it on Blender's main thread. Connecting (which may start the engine and wait for its
handshake) also runs in a worker thread, so no button ever freezes the UI.

A remote engine is reached over TLS pinned to its certificate fingerprint (tls_pin.py); a local
engine, or a loopback port (an SSH tunnel) with no fingerprint set, over plain TCP.
"""
import ipaddress
import os
import queue
import select
import socket
import threading
import time
from dataclasses import dataclass, field

from . import engine_process
from ._protocol_import import protocol, tls_pin
from .job_state import EngineView, JobView, apply_frame

READ_POLL_S = 0.5
TLS_SEND_CHUNK = 256 << 10  # a TLS socket is shared by two threads under a lock: send in slices


@dataclass
class ConnectConfig:
    """A snapshot of the preferences a connection needs (taken on the main thread)."""

    mode: str = "LOCAL"  # LOCAL | REMOTE
    host: str = "127.0.0.1"
    port: int = 0
    token: str = ""
    fingerprint: str = ""  # REMOTE: SHA-256 of the engine's TLS certificate (pinned); empty = plain loopback
    engine_python: str = ""
    runs_dir: str = ""
    log_path: str = ""
    pid_path: str = ""
    backend_dir: str = ""
    device: str = ""
    handshake_timeout: float = 120.0
    client: str = "blender"


class Connection:
    """An authenticated socket with a reader thread (frames → inbox) and a writer thread."""

    def __init__(self, chan, inbox: queue.Queue, welcome):
        """Take over a connected protocol.Channel: its socket, its decoder state and any frames
        it already received after the welcome (those go to the inbox first)."""
        self.sock = sock = chan.sock
        self.inbox = inbox
        self.welcome = welcome
        self.reader = chan.reader
        for frame in chan.take_pending():
            inbox.put(("frame", frame))
        self._out: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        # OpenSSL does not allow one connection to be read and written by two threads at once
        self._tls = hasattr(sock, "pending")
        self._io_lock = threading.Lock()
        sock.settimeout(None)  # blocking sends; the reader polls with select()
        self._threads = [threading.Thread(target=self._read_loop, name="vsdream-reader", daemon=True),
                         threading.Thread(target=self._write_loop, name="vsdream-writer", daemon=True)]
        for t in self._threads:
            t.start()

    @property
    def alive(self) -> bool:
        return not self._closed.is_set()

    def send(self, frame) -> None:
        """Queue a frame; the writer thread sends it (never blocks the caller)."""
        self._out.put(frame)

    def _read_loop(self) -> None:
        reason = "the engine closed the connection"
        try:
            while not self._closed.is_set():
                if not (self._tls and self.sock.pending()):  # TLS may hold decrypted bytes select cannot see
                    ready, _, _ = select.select([self.sock], [], [], READ_POLL_S)
                    if not ready:
                        continue
                data = self._recv()
                if not data:
                    break
                for frame in self.reader.feed(data):
                    self.inbox.put(("frame", frame))
        except protocol.ProtocolError as exc:
            reason = f"bad data from the engine: {exc}"
        except (OSError, ValueError) as exc:  # ValueError: select on a closed socket
            reason = f"connection lost: {exc}"
        finally:
            if not self._closed.is_set():
                self.inbox.put(("disconnected", reason))
            self.close()

    def _write_loop(self) -> None:
        while not self._closed.is_set():
            try:
                frame = self._out.get(timeout=READ_POLL_S)
            except queue.Empty:
                continue
            if frame is None:
                break
            try:
                head, body = protocol.encode_frame_parts(frame.header, frame.payload)
                self._sendall(head)
                if body:
                    self._sendall(body)
            except protocol.ProtocolError as exc:
                self.inbox.put(("send_failed", str(exc)))
            except OSError as exc:
                if not self._closed.is_set():
                    self.inbox.put(("disconnected", f"connection lost while sending: {exc}"))
                self.close()

    def _recv(self) -> bytes:
        if not self._tls:
            return self.sock.recv(1 << 20)
        with self._io_lock:
            return self.sock.recv(1 << 20)

    def _sendall(self, data) -> None:
        if not self._tls:
            self.sock.sendall(data)
            return
        view = memoryview(data)
        for start in range(0, len(view), TLS_SEND_CHUNK):
            with self._io_lock:
                self.sock.sendall(view[start:start + TLS_SEND_CHUNK])

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._out.put(None)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:
        return False


def open_channel(cfg: ConnectConfig, host: str, port: int, token: str):
    """(Channel, welcome): pinned TLS when a fingerprint is set, plain TCP only on loopback.

    A remote host with no fingerprint is refused before anything is sent: the token would
    otherwise cross the network in the clear."""
    fingerprint = cfg.fingerprint.strip() if cfg.mode == "REMOTE" else ""
    if fingerprint:
        try:
            tls_pin.normalize_fingerprint(fingerprint)
        except ValueError as exc:
            raise ConnectError(f"Remote engine fingerprint in the add-on preferences: {exc}") from None
        return tls_pin.connect_channel(host, port, token, fingerprint, timeout=10.0, client=cfg.client)
    if cfg.mode == "REMOTE" and not is_loopback(host):
        raise ConnectError(
            f"{host} is another machine: set 'Fingerprint' in the add-on preferences to the SHA-256 "
            "fingerprint the engine printed when it started with --allow-remote (its ready line and log), so "
            "the token and your data travel over TLS. Nothing was sent")
    return protocol.Channel.connect(host, port, token, timeout=10.0, client=cfg.client)


def _refused_message(cfg: ConnectConfig, exc: BaseException) -> str:
    where = f"{cfg.host}:{cfg.port}"
    if cfg.mode == "REMOTE":
        return (f"No engine reachable at {where} ({exc.__class__.__name__}: {exc}). Start it there with "
                "'vsdream serve --allow-remote --host 0.0.0.0 --port N' and the same token, or switch the "
                "add-on to 'Start locally'")
    return f"Could not connect to the engine at {where}: {exc}"


def connect(cfg: ConnectConfig, inbox: queue.Queue):
    """Start the engine when local, connect, say hello. Runs in a worker thread.

    Returns (Connection, EngineProcess-or-None); raises ConnectError with a user-facing message."""
    engine = None
    host, port, token = cfg.host, cfg.port, cfg.token
    if cfg.mode == "LOCAL":
        engine = engine_process.EngineProcess(
            cfg.engine_python, cfg.runs_dir, cfg.log_path, cfg.pid_path,
            backend_dir=cfg.backend_dir or None, device=cfg.device)
        try:
            engine.launch()
            hs = engine.wait_ready(cfg.handshake_timeout)
        except engine_process.EngineStartError as exc:
            engine.stop()  # no process started: the log on disk is an older engine's, do not point at it
            raise ConnectError(str(exc), engine.log_path if engine.proc is not None else "") from None
        except OSError as exc:
            engine.stop()
            raise ConnectError(f"could not start the engine with {cfg.engine_python!r}: {exc}",
                               engine.log_path) from None
        if hs.get("protocol") != protocol.PROTOCOL_VERSION:
            engine.stop()
            raise ConnectError(f"the engine speaks protocol {hs.get('protocol')}, this add-on "
                               f"{protocol.PROTOCOL_VERSION}: {protocol.ERROR_HINTS['protocol_mismatch']}",
                               engine.log_path)
        host, port, token = "127.0.0.1", int(hs["port"]), engine.token
    if not port:
        raise ConnectError("No engine port set: enter the remote engine's port in the add-on preferences")
    try:
        chan, welcome = open_channel(cfg, host, port, token)
    except protocol.ProtocolError as exc:
        if engine:
            engine.stop()
        tls_hint = (" If that engine was started with --allow-remote it speaks TLS only: set 'Fingerprint' in "
                    "the add-on preferences" if cfg.mode == "REMOTE" and not cfg.fingerprint.strip() else "")
        raise ConnectError(f"the engine refused the connection: {exc.message}. {exc.hint}{tls_hint}") from None
    except tls_pin.PinError as exc:  # before OSError: a refused certificate is not "unreachable"
        raise ConnectError(f"Refused the remote engine: {exc}") from None
    except OSError as exc:
        if engine:
            engine.stop()
        raise ConnectError(_refused_message(cfg, exc)) from None
    return Connection(chan, inbox, welcome), engine


class ConnectError(RuntimeError):
    def __init__(self, message: str, log_path=None):
        super().__init__(message)
        self.log_path = str(log_path or "")


@dataclass
class Session:
    """Module-level owner of the engine, the connection and the current job's view."""

    inbox: queue.Queue = field(default_factory=queue.Queue)
    conn: Connection | None = None
    engine: engine_process.EngineProcess | None = None
    job: JobView = field(default_factory=JobView)
    engine_view: EngineView = field(default_factory=EngineView)
    pending: list = field(default_factory=list)  # frames waiting for the connection
    connecting: bool = False
    remote: bool = False  # files the engine names live on another machine: download them
    _generation: int = 0
    _stoppers: list = field(default_factory=list)  # threads stopping engines in the background

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Blender is quitting or the add-on unregisters: stop everything and wait for it."""
        self.disconnect(stop_engine=True, wait=True)
        deadline = time.monotonic() + timeout_s
        for stopper in self._stoppers:
            stopper.join(max(0.0, deadline - time.monotonic()))
        self._stoppers.clear()

    @property
    def connected(self) -> bool:
        return self.conn is not None and self.conn.alive

    def ensure_connected(self, cfg: ConnectConfig) -> None:
        """Connect in the background unless connected or already connecting."""
        if self.connected or self.connecting:
            return
        self.connecting = True
        self.remote = cfg.mode == "REMOTE"
        self._generation += 1
        self.engine_view.state, self.engine_view.message = "STARTING", (
            "starting the engine…" if cfg.mode == "LOCAL" else f"connecting to {cfg.host}:{cfg.port}…")
        self.engine_view.log_path = ""  # set once this start has written a log (an older one misleads)
        gen = self._generation

        def work():
            try:
                conn, engine = connect(cfg, self.inbox)
                self.inbox.put(("connected", (gen, conn, engine)))
            except ConnectError as exc:
                self.inbox.put(("connect_failed", (gen, str(exc), exc.log_path)))
            except Exception as exc:  # noqa: BLE001 - never let a worker thread die silently
                self.inbox.put(("connect_failed", (gen, f"{type(exc).__name__}: {exc}", "")))
        threading.Thread(target=work, name="vsdream-connect", daemon=True).start()

    def send(self, frame, cfg: ConnectConfig | None = None) -> None:
        """Send now, or keep it for when the connection (started here if `cfg`) is up."""
        if self.connected:
            self.conn.send(frame)
            return
        self.pending.append(frame)
        if cfg is not None:
            self.ensure_connected(cfg)

    def on_connected(self, gen: int, conn: Connection, engine) -> bool:
        """Main thread: adopt a finished connection (False when it was superseded)."""
        self.connecting = False
        if gen != self._generation:
            conn.close()
            if engine:
                engine.stop()
            return False
        self.conn, self.engine = conn, engine
        self.engine_view.log_path = str(engine.log_path) if engine is not None else ""
        apply_frame(self.job, self.engine_view, conn.welcome)
        for frame in self.pending:
            conn.send(frame)
        self.pending.clear()
        return True

    def on_connect_failed(self, gen: int, message: str, log_path: str) -> bool:
        if gen != self._generation:
            return False
        self.connecting = False
        self.engine_view.state, self.engine_view.message = "ERROR", message
        self.engine_view.log_path = log_path
        if self.pending and self.job.state == "SUBMITTING":
            self.job.fail("engine_unavailable", message)
        self.pending.clear()
        return True

    def on_lost(self, reason: str) -> None:
        """The socket closed or the engine process exited."""
        if self.conn:
            self.conn.close()
        self.conn = None
        engine, self.engine = self.engine, None
        if engine is not None:
            code = engine.wait_exit(2.0)  # a dying engine closes its socket just before it exits
            if code is not None:
                reason = f"the engine stopped (exit status {code}); log: {engine.log_path}"
                engine.stop()
            else:  # alive but unreachable: of no use any more, stop it without blocking the UI
                stopper = threading.Thread(target=engine.stop, name="vsdream-stop", daemon=True)
                stopper.start()
                self._stoppers.append(stopper)
            self.engine_view.log_path = str(engine.log_path)
        self.engine_view.state, self.engine_view.message = "ERROR", reason
        if self.job.active:
            self.job.fail("engine_lost", f"{reason}. Press 'Start engine', then 'Resume' in the history")

    def check_engine_process(self) -> bool:
        """True when a local engine we started has exited behind our back."""
        if self.engine is not None and self.engine.exit_code() is not None:
            self.on_lost("the engine process exited")
            return True
        return False

    def check_stalled(self, stall_after: float) -> bool:
        ev = self.engine_view
        if self.connected and ev.state in ("READY", "BUSY") and ev.last_rx and \
                time.monotonic() - ev.last_rx > stall_after:
            ev.state = "STALLED"
            ev.message = f"no word from the engine for {stall_after:.0f} s"
            return True
        return False

    def disconnect(self, stop_engine: bool = True, wait: bool = True, grace_s: float = 10.0) -> None:
        """Close the connection and stop the local engine (frees GPU memory). The engine gets
        SIGTERM, so running jobs checkpoint, and a kill after `grace_s`; `wait=False` does that
        in a thread so the UI never blocks."""
        self._generation += 1
        self.connecting = False
        self.pending.clear()
        if self.conn:
            self.conn.close()
            self.conn = None
        self._drop_lost_connection_reports()
        engine, self.engine = (self.engine if stop_engine else None), (None if stop_engine else self.engine)
        if engine is not None:
            if wait:
                engine.stop(grace_s)
            else:
                stopper = threading.Thread(target=engine.stop, args=(grace_s,), name="vsdream-stop", daemon=True)
                stopper.start()
                self._stoppers.append(stopper)
        self.engine_view.state, self.engine_view.message = "OFFLINE", "engine stopped"
        self.engine_view.running, self.engine_view.queued = [], 0
        if self.job.active:  # the engine checkpoints its jobs on SIGTERM: the job is stopped, not failed
            self.job.end("CANCELLED")

    def _drop_lost_connection_reports(self) -> None:
        """A connection the user has just let go of is not also reported as lost (its reader may have
        queued that before the close); frames and other items stay, in order."""
        kept = []
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if item[0] != "disconnected":
                kept.append(item)
        for item in kept:
            self.inbox.put(item)

    def new_job(self, **fields) -> JobView:
        self.job = JobView(state="SUBMITTING", **fields)
        return self.job


SESSION = Session()


def client_name(blender_version: str, addon_version: str) -> str:
    return f"blender {blender_version}; vsdream-addon {addon_version}; pid {os.getpid()}"
