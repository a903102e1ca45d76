"""One client connection: authenticate, read frames, dispatch requests, write through an outbox.

The reader loop and the writer task are separate, so a client that stops reading only fills its
own outbox (where progress and previews coalesce) and never slows the engine or other clients.
What one connection holds for its client is bounded: the outbox by items and bytes
(outbox.MAX_QUEUED_BYTES), the socket buffer by WRITE_BUFFER_HIGH, and an artifact is never read
whole: it is queued as a reference and streamed from its file in ARTIFACT_PIECE pieces. A replay
from disk goes in chunks of REPLAY_CHUNK events, with the replies and heartbeats that arrived
meanwhile written between chunks.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from . import protocol as P
from . import request_check
from .auth import token_matches
from .config import Config
from .connection_api import JobsApi, ServerLink
from .frame_stream import FrameStream, SpooledFrame
from .job import Job
from .outbox import Outbox, coalesce_key
from .reply_encode import encode_reply
from .storage_errors import storage_error
from .wire_text import shown

log = logging.getLogger("vsdream.server")
PRE_AUTH_MAX_HEADER = 64 << 10
WRITE_BUFFER_HIGH = 1 << 20  # bytes queued in the transport before the writer waits (about one 512² frame)
FINAL_FLUSH_S = 30.0  # time a closing connection gets to take its last frames
LINGER_S, LINGER_BYTES = 2.0, 16 << 20  # after a fatal error: how long / how much unread input to discard
ARTIFACT_PIECE = 1 << 20  # an artifact goes from its file to the socket this much at a time
REPLAY_CHUNK = 64  # events read from disk and written per replay step; urgent frames go between steps
_CLOSE = object()


class Replay:
    def __init__(self, job: Job, after_seq: int, upto_seq: int, previews: bool):
        self.job, self.after_seq, self.upto_seq, self.previews = job, after_seq, upto_seq, previews


class ArtifactSend:
    """An artifact_data reply still to be read from its file (sha256 and bytes at sending time)."""

    def __init__(self, header: dict[str, Any], path: Path, offset: int, length: int):
        self.header, self.path, self.offset, self.length = header, path, offset, length


class Connection:
    """One client; it reaches the rest of the server only through `link`, `jobs` and `config`."""

    def __init__(self, link: ServerLink, jobs: JobsApi, config: Config, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self.link, self.jobs, self.config, self.reader, self.writer = link, jobs, config, reader, writer
        self.outbox = Outbox(config.max_outbox)
        self.frames = FrameStream(reader, config.frame_timeout_s, jobs.spool_dir,
                                  max_header=PRE_AUTH_MAX_HEADER, max_payload=0)
        self.authed = False
        self.closing = False
        self.linger = False  # set on a fatal error: discard unread input before closing (see _linger)
        self._estimates: set[asyncio.Task[None]] = set()  # running estimate replies (held: tasks are weak)
        self.peer = writer.get_extra_info("peername")
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)

    # -------------------------------------------------------------- outbox
    def deliver(self, frame: P.Frame) -> None:
        """Queue a frame, encoded now (so its exact size counts against the byte bound); replies and
        heartbeats in the urgent lane, job events in order in the other."""
        if self.closing:
            return
        parts = encode_reply(frame)
        urgent = frame.type not in P.JOB_EVENTS
        if not self.outbox.put(parts, coalesce_key(frame.header), urgent=urgent, nbytes=len(parts[0]) + len(parts[1])):
            self._too_far_behind()

    def _too_far_behind(self) -> None:
        log.warning("client %s is not reading (%d messages, %d bytes waiting); disconnecting it", self.peer,
                    len(self.outbox), self.outbox.bytes)
        self.abort()

    def queue_replay(self, job: Job, after_seq: int, upto_seq: int, previews: bool) -> None:
        if not self.closing and not self.outbox.put(Replay(job, after_seq, upto_seq, previews)):
            self._too_far_behind()

    def close_after_flush(self) -> None:
        self.closing = True
        self.outbox.put(_CLOSE, ("close",), force=True)  # never refused, even by a full outbox

    def abort(self) -> None:
        self.closing = True
        self.jobs.unsubscribe(self)
        self.outbox.clear()  # nothing queued for a dropped client stays in memory
        self.outbox.put(_CLOSE, ("close",), force=True)  # wakes a writer waiting for work
        self.writer.transport.abort()

    async def _write(self, frame: P.Frame) -> None:
        await self._write_parts(encode_reply(frame))

    async def _write_parts(self, parts: tuple[bytes, bytes]) -> None:
        head, body = parts
        self.writer.write(head)
        if body:
            self.writer.write(body)
        await self.writer.drain()

    async def _write_item(self, item: Any) -> None:
        if isinstance(item, Replay):
            await self._replay(item)
        elif isinstance(item, ArtifactSend):
            await self._send_artifact(item)
        else:
            await self._write_parts(item)

    async def writer_loop(self) -> None:
        try:
            while True:
                item = await self.outbox.get()
                if item is _CLOSE:
                    break
                await self._write_item(item)
                item = None  # noqa: F841 - a finished frame must not stay referenced while the writer waits
        except (ConnectionError, OSError):
            pass
        finally:
            self.closing = True
            self.jobs.unsubscribe(self)
            self.outbox.clear()
            if self.linger:
                await self._linger()
            self.writer.close()

    async def _write_urgent(self) -> None:
        """Replies and heartbeats that arrived while a replay runs go out before its next chunk."""
        while (item := self.outbox.pop_urgent()) is not None:
            if item is not _CLOSE:
                await self._write_item(item)

    async def _send_artifact(self, a: ArtifactSend) -> None:
        """Hash the range, then stream it from the file; memory stays at one piece per connection."""
        digest = await asyncio.to_thread(_sha256_range, a.path, a.offset, a.length)
        header = {**a.header, "sha256": digest, "payload_bytes": a.length}
        if not a.length:
            del header["payload_bytes"]
        raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        self.writer.write(P.PREFIX.pack(len(raw)) + raw)
        left, pos = a.length, a.offset
        while left:
            piece = await asyncio.to_thread(_read_piece, a.path, pos, min(ARTIFACT_PIECE, left))
            if not piece:  # the file shrank after the request: the frame cannot be completed
                log.error("artifact %s shrank while being sent to %s; closing the connection", a.path, self.peer)
                self.abort()
                return
            self.writer.write(piece)
            left, pos = left - len(piece), pos + len(piece)
            await self.writer.drain()
        await self.writer.drain()

    async def _linger(self) -> None:
        """Half-close, then read and drop what the client still sends, for a moment.

        Closing a socket with unread input makes the kernel send a reset, which can destroy the
        error frame just written before the client reads it: the client would see a silent drop."""
        loop = asyncio.get_running_loop()
        deadline, got = loop.time() + LINGER_S, 0
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
            while got < LINGER_BYTES:
                data = await asyncio.wait_for(self.reader.read(1 << 16), max(deadline - loop.time(), 0))
                if not data:
                    break
                got += len(data)
        except (TimeoutError, ConnectionError, OSError, RuntimeError):
            pass

    async def _replay(self, r: Replay) -> None:
        pos, finished = 0, False
        while not finished and not self.closing:
            events, pos, finished = await asyncio.to_thread(r.job.log.read_chunk, pos, r.after_seq, r.upto_seq,
                                                            REPLAY_CHUNK)
            for ev in events:
                payload = b""
                if ev.get("type") == "preview":
                    if not r.previews:
                        continue
                    payload = await self.jobs.preview_payload(r.job, ev)
                    if payload is None:  # files deleted by hand: say so instead of sending a broken frame
                        ev = {"type": "log", "job_id": ev["job_id"], "seq": ev["seq"], "time": ev["time"],
                              "level": "warning",
                              "message": f"preview {ev.get('file')} is missing from the run folder"}
                        payload = b""
                await self._write(P.Frame(ev, payload))
            await self._write_urgent()

    # --------------------------------------------------------------- reading
    async def serve(self) -> None:
        writer_task = None
        try:
            hello = await self._authenticate()
            if hello is None:
                return
            writer_task = asyncio.create_task(self.writer_loop())
            self.frames.max_header, self.frames.max_payload = P.MAX_HEADER_BYTES, P.MAX_PAYLOAD_BYTES
            self.deliver(P.reply("welcome", hello, protocol=P.PROTOCOL_VERSION,
                                 version=self.link.version, server_pid=self.link.pid,
                                 devices=self.jobs.devices, runs_dir=str(self.config.runs_dir)))
            while not self.closing:
                frame = await self.frames.next()
                if self.outbox.bytes > self.outbox.max_bytes // 2:
                    await self._read_pause()
                try:
                    await self._dispatch(frame)
                finally:
                    if isinstance(frame, SpooledFrame):
                        await asyncio.to_thread(frame.discard)  # unless a submit moved it into a run folder
        except P.FrameError as exc:
            log.info("client %s: %s", self.peer, exc.message)
            if self.authed:
                self.deliver(exc.to_frame())
                self.linger = True
                self.close_after_flush()
            else:
                await self._refuse(exc.message)
        except EOFError:
            self.close_after_flush()
        except (ConnectionError, OSError):
            self.abort()
        finally:
            if writer_task is None:
                self.writer.close()
            else:
                if not self.closing:
                    self.close_after_flush()
                try:  # a peer that half-closed and never reads must not pin this task forever
                    await asyncio.wait_for(asyncio.gather(writer_task, return_exceptions=True), FINAL_FLUSH_S)
                except TimeoutError:
                    self.abort()
            self.link.connection_closed(self)

    async def _read_pause(self) -> None:
        """A client that pipelines requests without reading the replies waits here (its replies
        keep their byte bound) instead of growing its outbox until it is disconnected."""
        while self.outbox.bytes > self.outbox.max_bytes // 2 and not self.closing:
            await asyncio.sleep(0.01)

    async def _authenticate(self) -> P.Frame | None:
        """The hello once its token matches (frames behind it stay buffered); None after a refusal."""
        limit = self.config.hello_timeout_s
        try:
            hello = await asyncio.wait_for(self.frames.next(), limit)
        except TimeoutError:
            await self._refuse(f"no hello within {limit:g} s")
            return None
        except EOFError:
            return None
        bad = request_check.problems(hello.header)
        if bad:
            await self._refuse(f"the hello's {bad[0]['field']} is not usable: {bad[0]['allowed']}")
            return None
        if hello.type != "hello":
            await self._refuse(f"the first message must be hello, not {hello.type!r}")
            return None
        if not token_matches(self.config.token, hello.get("token")):
            await self._refuse("wrong or missing token")
            return None
        if hello.get("protocol") != P.PROTOCOL_VERSION:
            await self._refuse(f"client speaks protocol {hello.get('protocol')!r}, server {P.PROTOCOL_VERSION}",
                               code="protocol_mismatch")
            return None
        self.authed = True
        self.link.connection_authenticated(self)
        return hello

    async def _refuse(self, why: str, code: str = "unauthorized") -> None:
        log.info("refused %s: %s", self.peer, why)
        self.closing = True
        try:
            await asyncio.wait_for(self._write(P.error(code, why, fatal=True)), 2.0)
            await self._linger()
        except (TimeoutError, ConnectionError, OSError):
            pass
        self.writer.close()

    # -------------------------------------------------------------- dispatch
    async def _dispatch(self, frame: P.Frame) -> None:
        try:
            problems = request_check.problems(frame.header)
            if problems:
                if any(p["field"] == "id" for p in problems):
                    frame.header.pop("id", None)  # an id that cannot be echoed is not echoed
                raise P.ProtocolError("invalid_message", f"bad {shown(frame.type)!r} message", problems=problems)
            problems = P.validate(frame.header, "client")
            if problems:
                code = "unknown_type" if problems[0]["field"] == "type" else "invalid_message"
                raise P.ProtocolError(code, f"bad {frame.type!r} message", problems=problems)
            handler = getattr(self, "_on_" + frame.type)
            await handler(frame)
        except P.ProtocolError as exc:
            self.deliver(exc.to_frame(frame.get("id")))
        except Exception as exc:  # a server bug answers this request only
            log.exception("handling %s failed", frame.type)
            self.deliver(P.error("internal", f"{type(exc).__name__}: {exc}"[:500], re_id=frame.get("id")))

    async def _on_hello(self, frame: P.Frame) -> None:
        raise P.ProtocolError("invalid_message", "already authenticated; hello is only the first message",
                              problems=[P.problem("type", "hello", "any message but hello once authenticated")])

    async def _on_ping(self, frame: P.Frame) -> None:
        self.deliver(P.reply("pong", frame, nonce=frame.get("nonce"), time=time.time()))

    async def _on_estimate(self, frame: P.Frame) -> None:
        """The fit check runs in a child for up to minutes: answered from its own task, so this
        connection's other requests go on meanwhile."""
        from .estimate import run_estimate
        if self._estimates:  # one at a time per connection: each is a child process with the engine in it
            raise P.ProtocolError("busy", "an estimate is already running on this connection; wait for its reply")
        spec = self.jobs.spec_for(frame.header)

        async def answer() -> None:
            try:
                result = await run_estimate(spec, frame.get("free_gb"))
                self.deliver(P.reply("estimate", frame, **result))
            except P.ProtocolError as exc:
                self.deliver(exc.to_frame(frame.get("id")))
            except Exception as exc:  # noqa: BLE001 - a server bug answers this request only
                log.exception("estimate failed")
                self.deliver(P.error("internal", f"{type(exc).__name__}: {exc}"[:500], re_id=frame.get("id")))

        task = asyncio.get_running_loop().create_task(answer())
        self._estimates.add(task)
        task.add_done_callback(self._estimates.discard)

    async def _on_list_jobs(self, frame: P.Frame) -> None:
        page = self.jobs.job_page(frame.get("offset", 0), frame.get("limit"))
        encoded = page.pop("jobs")  # each summary's JSON, cached: spliced in, not encoded again
        reply = P.reply("jobs", frame, jobs=[], **page, workers=self.jobs.workers(),
                        unreadable=self.jobs.unreadable_runs(), unreadable_total=self.jobs.unreadable_count())
        head, _ = encode_reply(reply)
        if reply.type == "jobs" and head[P.PREFIX.size:].startswith(b'{"type":"jobs","jobs":[]'):
            raw = b'{"type":"jobs","jobs":[' + b",".join(encoded) + b"]" + head[P.PREFIX.size + 24:]
            head = P.PREFIX.pack(len(raw)) + raw
        if not self.outbox.put((head, b""), urgent=True, nbytes=len(head)):
            self._too_far_behind()

    async def _on_submit(self, frame: P.Frame) -> None:
        if isinstance(frame, SpooledFrame) and frame.write_error is not None:  # the upload did not fit
            raise storage_error(frame.write_error, f"the uploaded mesh ({frame.get('payload_bytes')} bytes)",
                                self.config.runs_dir)
        spool = frame.spool if isinstance(frame, SpooledFrame) else None
        job = await self.jobs.submit(frame.header, frame.payload, mesh_file=spool)
        self._accepted(frame, job, resumed=False)

    async def _on_resume(self, frame: P.Frame) -> None:
        job = await self.jobs.resume(self.jobs.get(frame["job_id"]))
        self._accepted(frame, job, resumed=True)

    def _accepted(self, frame: P.Frame, job: Job, resumed: bool) -> None:
        self.deliver(P.reply("accepted", frame, job_id=job.id, position=self.jobs.queue_position(job),
                             run_dir=str(job.run.root),
                             resumed=resumed))
        if frame.get("attach", True):  # from this run's "queued" event on (already attached: it came live)
            after = job.last_seq if self in job.subscribers else job.queued_seq - 1
            self.jobs.subscribe(self, job, after, frame.get("previews", True))

    async def _on_attach(self, frame: P.Frame) -> None:
        job = self.jobs.get(frame["job_id"])
        self.deliver(P.reply("attached", frame, job_id=job.id, state=job.state, last_seq=job.last_seq))
        self.jobs.subscribe(self, job, frame.get("from_seq", 0), frame.get("previews", True))

    async def _on_detach(self, frame: P.Frame) -> None:
        job = self.jobs.get(frame["job_id"])
        self.jobs.unsubscribe(self, job)
        self.deliver(P.reply("detached", frame, job_id=job.id))

    async def _on_cancel(self, frame: P.Frame) -> None:
        job = self.jobs.get(frame["job_id"])
        state = await self.jobs.cancel(job)
        self.deliver(P.reply("ack", frame, what="cancel", job_id=job.id, state=state))

    async def _on_get_artifact(self, frame: P.Frame) -> None:
        job = self.jobs.get(frame["job_id"])
        path = self.jobs.artifact_path(job, frame["name"])
        offset = frame.get("offset", 0)
        length, size = await asyncio.to_thread(_check_range, path, offset, frame.get("length"))
        header = P.reply("artifact_data", frame, job_id=job.id, name=frame["name"], size=size, offset=offset,
                         sha256="").header
        if not self.outbox.put(ArtifactSend(header, path, offset, length), urgent=True, nbytes=0):
            self._too_far_behind()

    async def _on_shutdown(self, frame: P.Frame) -> None:
        self.deliver(P.reply("ack", frame, what="shutdown"))
        self.link.request_stop("shutdown message")


def _check_range(path: Path, offset: int, length: int | None) -> tuple[int, int]:
    """(bytes to send, file size) for a get_artifact request; ProtocolError when it cannot be served."""
    size = path.stat().st_size
    if offset > size:
        raise P.ProtocolError("invalid_message", f"offset {offset} is past the end of {path.name} ({size} bytes)",
                              problems=[P.problem("offset", offset, f"an integer in 0..{size} (the file's size)")])
    length = size - offset if length is None else min(length, size - offset)
    if length > P.MAX_PAYLOAD_BYTES:
        raise P.ProtocolError("too_large", f"{path.name} has {size} bytes; ask for at most "
                                           f"{P.MAX_PAYLOAD_BYTES} at a time with offset and length")
    return length, size


def _read_piece(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


def _sha256_range(path: Path, offset: int, length: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(offset)
        while length > 0:
            piece = fh.read(min(ARTIFACT_PIECE, length))
            if not piece:
                break
            digest.update(piece)
            length -= len(piece)
    return digest.hexdigest()
