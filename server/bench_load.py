"""`vsdream bench server --load`: the server under a studio's load, as figures (issue 25).

Each case starts its own server on loopback, is bounded in connections and seconds, and reports
what a regression would move: the server's RSS (before / peak / after), reply latencies while the
load runs, and whether the load was refused or bounded as docs/protocol.md says.

- downloads: clients that ask for a large artifact and do not read (24 × 64 MiB);
- flood: a job emitting previews as fast as it can, 50 attached clients, then cancel latency;
- history: thousands of run folders with long prompts, paged by 10 clients while another pings,
  before and after a restart;
- preauth: a flood of silent TLS connections that never authenticate;
- replay: clients attaching from seq 0 to a job with thousands of events, then asking for replies.
"""
from __future__ import annotations

import json
import os
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import protocol as P
from .launcher import ServerProcess, read_until

FLOOD_ARGS = ("--device", "cpu", "--job-fn", "server.bench:preview_flood")
SMOKE_OFF = {"geometry": {"enabled": False}, "texture": {"enabled": False}, "export": {"enabled": False}}


# ------------------------------------------------------------------ measuring
def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MiB (Linux /proc; None elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class RssSampler:
    """Samples a process's RSS every `every_s` in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int, every_s: float = 0.05):
        self.pid, self.every_s, self.peak = pid, every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid) or 0.0)
            time.sleep(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


class Pinger:
    """Pings on its own connection until stopped; `worst_ms` is the slowest round trip."""

    def __init__(self, srv: ServerProcess):
        self.chan = srv.connect()
        self.times: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                self.chan.request(P.ping(nonce=1), timeout=30)
            except (OSError, P.ProtocolError):
                self.errors += 1
                return
            self.times.append((time.perf_counter() - t0) * 1e3)
            time.sleep(0.005)

    @property
    def worst_ms(self) -> float:
        return max(self.times) if self.times else float("nan")

    def __enter__(self) -> Pinger:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.chan.close()


def raw_client(srv: ServerProcess, rcvbuf: int | None = None) -> socket.socket:
    """An authenticated plain socket whose reading the caller controls (hello sent, welcome unread)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", srv.port))
    sock.sendall(P.hello(srv.token).encode())
    return sock


# ------------------------------------------------------------------ run folders written directly
def write_run(runs: Path, job_id: str, prompt: str = "a chair", events: int = 3,
              files: dict[str, bytes] | None = None, created: float | None = None) -> Path:
    """A finished run folder as a server leaves it: spec.json, events.jsonl (queued, started,
    `events - 3` progress events, done) and `files` (relative path -> bytes)."""
    root = runs / job_id
    (root / "ckpt").mkdir(parents=True, exist_ok=True)
    (root / "spec.json").write_text(json.dumps({"prompt": prompt, "preset": "cpu-smoke", "mode": "text"}))
    t = created or time.time()
    lines = [{"type": "queued", "position": 0, "resumed": False}, {"type": "started", "device": "cpu"}]
    lines += [{"type": "progress", "stage": "nerf", "step": i + 1, "total": events, "losses": {"vsd": 0.5}}
              for i in range(max(events - 3, 0))]
    lines.append({"type": "done", "result": {}})
    with open(root / "events.jsonl", "w") as fh:
        for seq, ev in enumerate(lines, 1):
            fh.write(json.dumps({**ev, "job_id": job_id, "seq": seq, "time": t}) + "\n")
    for rel, data in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    if created is not None:
        os.utime(root / "spec.json", (created, created))
    return root


# ------------------------------------------------------------------ cases
def bench_downloads(tmp: Path, clients: int = 24, mib: int = 64, requests: int = 1, hold_s: float = 2.0,
                    settle_s: float = 3.0) -> dict[str, Any]:
    """`clients` connections each pipeline `requests` get_artifact of a `mib` MiB file and read nothing
    for `hold_s`; then each reads its replies whole (checked) and closes. Server RSS in MiB."""
    runs = tmp / "downloads"
    data = os.urandom(1 << 20) * mib
    write_run(runs, "big", files={"result/big.bin": data})
    out: dict[str, Any] = {"clients": clients, "mib": mib, "requests_each": requests}
    with ServerProcess(runs, *FLOOD_ARGS) as srv:
        srv.wait_workers_ready(chan := srv.connect())
        time.sleep(0.5)
        out["rss_before"] = rss_mb(srv.proc.pid)
        socks = []
        with RssSampler(srv.proc.pid) as sampler:
            for _ in range(clients):
                s = raw_client(srv, rcvbuf=1 << 16)
                s.sendall(b"".join(P.get_artifact("big", "result/big.bin", id=i).encode() for i in range(requests)))
                socks.append(s)
            time.sleep(hold_s)
            out["rss_held"] = rss_mb(srv.proc.pid)
            ok = 0
            for s in socks:
                c = P.Channel(s)
                s.settimeout(60)
                for _ in range(requests):
                    frame = read_until(c, lambda f: f.type in ("artifact_data", "error"), timeout=60)[-1]
                    ok += frame.type == "artifact_data" and frame.payload == data
                c.close()
            out["rss_peak"] = sampler.peak
        del data
        time.sleep(settle_s)
        out["rss_after"] = rss_mb(srv.proc.pid)
        out["complete"] = ok == clients * requests
        out["ping_after_ms"] = _ping_ms(chan)
        chan.close()
    return out


def bench_flood(tmp: Path, clients: int = 50, size: int = 256, seconds: float = 8.0) -> dict[str, Any]:
    """A preview_flood job (server-encoded PNGs) with `clients` attached readers: server RSS, then
    how long a cancel takes to come back as a recorded `cancelled` event."""
    runs = tmp / "flood"
    out: dict[str, Any] = {"clients": clients, "size": size, "seconds": seconds}
    with ServerProcess(runs, *FLOOD_ARGS) as srv:
        ctl = srv.connect()
        srv.wait_workers_ready(ctl)
        out["rss_before"] = rss_mb(srv.proc.pid)
        overrides = {"nerf": {"steps": 1_000_000, "resolution_schedule": [[0, size]]}, **SMOKE_OFF}
        job_id = P.raise_for_error(ctl.request(P.submit(preset="cpu-smoke", overrides=overrides, previews=False)))[
            "job_id"]
        readers = _Drain([raw_client(srv) for _ in range(clients)],
                         [P.attach(job_id, id="a").encode() for _ in range(clients)])
        with readers, RssSampler(srv.proc.pid) as sampler:
            time.sleep(seconds)
            out["rss_peak"] = sampler.peak
            out["mib_to_clients"] = readers.bytes / 2**20
            t0 = time.perf_counter()
            ctl.send(P.cancel(job_id, id="c"))
            try:
                end = read_until(ctl, lambda f: f.type in P.TERMINAL_EVENTS and f.get("job_id") == job_id,
                                 timeout=60)[-1]
                out["cancel_s"], out["ended"] = time.perf_counter() - t0, end.type
            except TimeoutError:
                out["cancel_s"], out["ended"] = None, "no terminal event within 60 s"
        time.sleep(1.0)
        out["rss_after"] = rss_mb(srv.proc.pid)
        listed = P.raise_for_error(ctl.request(P.list_jobs(), timeout=30))["jobs"]
        out["state_listed"] = next((j["state"] for j in listed if j["job_id"] == job_id), None)
        ctl.close()
    return out


def bench_history(tmp: Path, jobs: int = 2000, prompt_chars: int = 3500, listers: int = 10,
                  seconds: float = 5.0) -> dict[str, Any]:
    """`jobs` run folders with long prompts: every page read by `listers` clients in a loop while
    another client pings (worst round trip), before and after a server restart."""
    runs = tmp / "history"
    t = time.time() - jobs
    for i in range(jobs):
        write_run(runs, f"job-{i:05d}", prompt=(f"{i} " + "a very detailed ornate chair " * 200)[:prompt_chars],
                  created=t + i)
    out: dict[str, Any] = {"jobs": jobs, "prompt_chars": prompt_chars, "listers": listers}
    for phase in ("first_start", "after_restart"):
        t0 = time.perf_counter()
        with ServerProcess(runs, *FLOOD_ARGS) as srv:
            chan = srv.connect()
            out[f"{phase}_start_s"] = time.perf_counter() - t0
            try:
                srv.wait_workers_ready(chan)
            except Exception as exc:  # noqa: BLE001 - the figure is what an older server did here
                out[f"{phase}_wait_workers_ready"] = f"{type(exc).__name__}: {str(exc)[:100]}"
            listed = page_all(chan)
            out[f"{phase}_listed"] = listed["seen"] if listed["error"] is None else listed["error"]
            out[f"{phase}_newest_first"] = listed["newest_first"]
            stop, page_ms = threading.Event(), []
            threads = [threading.Thread(target=_list_loop, args=(srv, stop, page_ms), daemon=True)
                       for _ in range(listers)]
            with Pinger(srv) as pinger:
                for th in threads:
                    th.start()
                time.sleep(seconds)
                stop.set()
                for th in threads:
                    th.join()
            out[f"{phase}_ping_worst_ms"] = pinger.worst_ms
            out[f"{phase}_pings"] = len(pinger.times)
            out[f"{phase}_pages_read"] = len(page_ms)
            out[f"{phase}_page_p50_ms"] = sorted(page_ms)[len(page_ms) // 2] if page_ms else None
            chan.close()
    return out


def page_all(chan: P.Channel, limit: int | None = None) -> dict[str, Any]:
    """Read every page of list_jobs: {seen, total, error, newest_first}."""
    offset, seen, created, total = 0, 0, [], None
    while offset is not None:
        reply = chan.request(P.list_jobs(offset=offset, limit=limit) if offset or limit else P.list_jobs(), timeout=60)
        if reply.type == "error":
            return {"seen": seen, "total": total, "error": f"{reply['code']}: {reply['message'][:120]}",
                    "newest_first": None}
        seen += len(reply["jobs"])
        created += [j["created"] for j in reply["jobs"]]
        total, offset = reply.get("total"), reply.get("next_offset")
    return {"seen": seen, "total": total, "error": None, "newest_first": created == sorted(created, reverse=True)}


def _list_loop(srv: ServerProcess, stop: threading.Event, page_ms: list[float]) -> None:
    chan = srv.connect()
    offset: int | None = 0
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            reply = chan.request(P.list_jobs(offset=offset) if offset else P.list_jobs(), timeout=60)
            page_ms.append((time.perf_counter() - t0) * 1e3)
            offset = reply.get("next_offset")
    except (OSError, P.ProtocolError):
        pass
    finally:
        chan.close()


def bench_preauth(tmp: Path, conns: int = 1000, hold_s: float = 1.5, cap: int | None = None) -> dict[str, Any]:
    """`conns` silent connections to a TLS (--allow-remote) server: its RSS and fds while they are
    open, how many it closed within `hold_s`, and a real client's hello round trip once they are gone."""
    args = ["--allow-remote", "--device", "cpu", "--job-fn", "server.bench:preview_flood"]
    if cap is not None:
        args += ["--max-unauthenticated", str(cap)]
    out: dict[str, Any] = {"connections": conns}
    with ServerProcess(tmp / "preauth", *args) as srv:
        srv.wait_workers_ready(chan := srv.connect())
        chan.close()
        time.sleep(0.3)
        out["rss_before"], out["fds_before"] = rss_mb(srv.proc.pid), open_fds(srv.proc.pid)
        socks = []
        with RssSampler(srv.proc.pid) as sampler:
            for _ in range(conns):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", srv.port))
                socks.append(s)
            time.sleep(hold_s)
            out["fds_during"] = open_fds(srv.proc.pid)
            # connections still in the listen backlog have not reached the server yet: give a busy
            # machine up to 2.5 s more to accept (and refuse) them, well inside the 5 s handshake
            # timeout, so only the cap's refusals are counted
            closed, deadline = set(), time.monotonic() + 2.5
            while True:
                closed |= {i for i, s in enumerate(socks) if i not in closed and _closed(s)}
                if cap is None or len(closed) >= conns - cap or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            out["closed_by_server"] = len(closed)
            out["fds_settled"] = open_fds(srv.proc.pid)  # the server's own count once the refusals are done
            out["closed_within_s"] = round(time.monotonic() - deadline + 2.5 + hold_s, 2)
            out["rss_peak"] = sampler.peak
        for s in socks:
            s.close()
        time.sleep(0.5)
        t0 = time.perf_counter()
        chan = srv.connect(timeout=30)
        out["hello_after_ms"] = (time.perf_counter() - t0) * 1e3
        chan.close()
        out["rss_after"] = rss_mb(srv.proc.pid)
    return out


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def bench_replay(tmp: Path, clients: int = 50, events: int = 3000) -> dict[str, Any]:
    """`clients` attach from seq 0 to a job with `events` events and, once its replay has begun, ask
    list_jobs: how long each waits for that reply, and how many replayed events came before it."""
    runs = tmp / "replay"
    write_run(runs, "long", events=events)
    out: dict[str, Any] = {"clients": clients, "events": events}
    with ServerProcess(runs, *FLOOD_ARGS) as srv:
        srv.wait_workers_ready(chan := srv.connect())
        chan.close()
        waits: list[float] = []
        before: list[int] = []
        threads = [threading.Thread(target=_replay_client, args=(srv, waits, before), daemon=True)
                   for _ in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        out["replies"] = len(waits)
        out["reply_wait_ms_max"] = max(waits) * 1e3 if waits else None
        out["reply_wait_ms_p50"] = sorted(waits)[len(waits) // 2] * 1e3 if waits else None
        out["events_before_reply_max"] = max(before) if before else None
    return out


def _replay_client(srv: ServerProcess, waits: list[float], before: list[int]) -> None:
    """Attach from 0 with a small receive buffer (a replay that cannot finish at once), and once the
    first replayed event is in, ask list_jobs: count the events that still came before its reply."""
    chan = P.Channel(raw_client(srv, rcvbuf=8192))
    try:
        read_until(chan, lambda f: f.type == "welcome", timeout=60)
        chan.send(P.attach("long", from_seq=0, id="a"))
        read_until(chan, lambda f: "seq" in f, timeout=60)
        t0 = time.perf_counter()
        chan.send(P.make("list_jobs", id="l"))
        got = read_until(chan, lambda f: f.get("re") == "l", timeout=120)
        waits.append(time.perf_counter() - t0)
        before.append(sum(1 for f in got if "seq" in f))
        read_until(chan, lambda f: f.type == "done", timeout=120)
    except (OSError, TimeoutError, P.ProtocolError):
        pass
    finally:
        chan.close()


class _Drain:
    """Sockets read and discarded by one thread (many attached clients without a thread each)."""

    def __init__(self, socks: list[socket.socket], first: list[bytes]):
        self.socks, self.bytes = socks, 0
        for s, data in zip(socks, first, strict=True):
            s.sendall(data)
            s.setblocking(False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self.socks:
            sel.register(s, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in sel.select(0.1):
                try:
                    data = key.fileobj.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fileobj)
                self.bytes += len(data)
        sel.close()

    def __enter__(self) -> _Drain:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        for s in self.socks:
            s.close()


def _ping_ms(chan: P.Channel) -> float:
    t0 = time.perf_counter()
    chan.request(P.ping(), timeout=30)
    return (time.perf_counter() - t0) * 1e3


CASES: dict[str, Callable[..., dict[str, Any]]] = {
    "downloads": bench_downloads, "flood": bench_flood, "history": bench_history, "preauth": bench_preauth,
    "replay": bench_replay}


def run(cases: list[str], tmp: Path) -> dict[str, Any]:
    out = {}
    for name in cases:
        try:
            out[name] = CASES[name](tmp)
        except Exception as exc:  # noqa: BLE001 - one broken case (an old server) must not hide the others
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(f"{name}: {json.dumps(out[name])}", file=sys.stderr, flush=True)
    return out
