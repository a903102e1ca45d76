"""A real server subprocess on loopback: handshake, token auth, and raw-socket fuzzing while a
well-behaved client keeps getting correct answers."""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gltf_writer import box_glb
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import engine
from server import protocol as P
from server.launcher import ServerProcess, job_ended, read_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("runs"), "--hello-timeout", "1", "--device", "cpu",
                       "--max-queue", "1", "--job-fn", "server.bench:preview_flood") as s:
        yield s


@pytest.fixture(scope="module")
def good(srv):
    chan = srv.connect()
    yield chan
    chan.close()


def _raw(srv) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    return sock


def _drain(sock: socket.socket, timeout: float = 10.0) -> tuple[list[P.Frame], bool]:
    """Everything the server sends until it closes: (frames, closed). Asserts it is valid framing."""
    sock.settimeout(timeout)
    reader, frames, closed = P.FrameReader(), [], False
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                closed = True
                break
            frames += reader.feed(data)
    except TimeoutError:
        pass
    except ConnectionResetError:
        closed = True
    reader.eof()
    return frames, closed


def _assert_alive(good: P.Channel, nonce) -> None:
    pong = good.request(P.ping(nonce=nonce), timeout=10)
    assert pong.type == "pong" and pong["nonce"] == nonce


def test_handshake_line_and_welcome(srv, good):
    r = srv.ready
    assert r["event"] == "ready" and r["protocol"] == P.PROTOCOL_VERSION and r["version"] == engine.__version__
    assert r["pid"] == srv.proc.pid and isinstance(r["port"], int) and r["port"] > 0 and r["host"] == "127.0.0.1"
    chan, welcome = P.Channel.connect("127.0.0.1", srv.port, srv.token)
    assert welcome.type == "welcome" and welcome["server_pid"] == srv.proc.pid and welcome["devices"] == ["cpu"]
    assert P.validate(welcome.header, "server") == []
    chan.close()
    _assert_alive(good, "after-welcome")


@pytest.mark.parametrize("first", [
    P.hello("wrong-token").encode(),
    P.encode_frame({"type": "hello", "protocol": P.PROTOCOL_VERSION}),
    P.encode_frame({"type": "hello", "token": 12345, "protocol": P.PROTOCOL_VERSION}),
    P.ping().encode(),
    P.list_jobs().encode(),
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    struct.pack(">I", 9) + b"not json!",
])
def test_anything_but_the_right_hello_is_unauthorized(srv, good, first):
    sock = _raw(srv)
    sock.sendall(first)
    frames, closed = _drain(sock)
    sock.close()
    assert closed and [f.type for f in frames] == ["error"]
    assert frames[0]["code"] == "unauthorized" and frames[0]["fatal"] is True and frames[0]["hint"]
    _assert_alive(good, repr(first[:10]))


def test_hello_with_a_payload_or_a_pipelined_request_before_auth(srv, good):
    sock = _raw(srv)
    sock.sendall(P.encode_frame({"type": "hello", "token": srv.token, "protocol": P.PROTOCOL_VERSION}, b"xx"))
    frames, closed = _drain(sock)
    assert closed and frames[0]["code"] == "unauthorized"
    # the right hello with requests pipelined behind it in one write: all answered in order
    sock = _raw(srv)
    sock.sendall(P.hello(srv.token).encode() + P.ping(nonce=1).encode() + P.ping(nonce=2).encode())
    sock.shutdown(socket.SHUT_WR)
    frames, closed = _drain(sock)
    assert [f.type for f in frames if f.type != "heartbeat"] == ["welcome", "pong", "pong"]
    assert [f.get("nonce") for f in frames if f.type == "pong"] == [1, 2]


def test_late_hello_is_refused(srv, good):
    sock = _raw(srv)
    time.sleep(1.5)  # the fixture's --hello-timeout is 1 s
    frames, closed = _drain(sock)
    assert closed and frames and frames[0]["code"] == "unauthorized" and "no hello" in frames[0]["message"]
    _assert_alive(good, "late")


def test_protocol_mismatch_is_refused_with_its_own_code(srv):
    sock = _raw(srv)
    sock.sendall(P.encode_frame({"type": "hello", "token": srv.token, "protocol": 999}))
    frames, closed = _drain(sock)
    assert closed and frames[0]["code"] == "protocol_mismatch"


def test_command_line_refuses_a_token_a_public_host_and_unknown_devices(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != P.TOKEN_ENV}
    out = subprocess.run([sys.executable, "-m", "server", "--token", "abc", "--runs-dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert out.returncode == 2 and "VSDREAM_TOKEN" in out.stderr and out.stdout == ""
    out = subprocess.run([sys.executable, "-m", "server", "--host", "0.0.0.0", "--runs-dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert out.returncode == 2 and "--allow-remote" in out.stderr
    out = subprocess.run([sys.executable, "-m", "server", "--device", "cpu,tpu", "--runs-dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert out.returncode == 2 and "'tpu'" in out.stderr


def test_bad_messages_after_auth_get_field_errors_and_the_connection_lives(srv):
    chan = srv.connect()
    r = chan.request(P.Frame({"type": "attach", "job_id": 7, "from_seq": -1, "bogus": 1}))
    assert r.type == "error" and r["code"] == "invalid_message" and r["fatal"] is False
    assert {p["field"] for p in r["problems"]} >= {"job_id", "bogus"}
    r = chan.request(P.Frame({"type": "teleport"}))
    assert r["code"] == "unknown_type" and "teleport" in json.dumps(r["problems"])
    r = chan.request(P.submit(preset="cpu-smoke", overrides={"nerf": {"steps": -5, "sampels_per_ray": 3},
                                                              "seed": "x"}))
    assert r["code"] == "invalid_spec"
    assert {"nerf.steps", "nerf.sampels_per_ray", "seed"} <= {p["field"] for p in r["problems"]}
    r = chan.request(P.submit(preset="nope"))
    assert r["code"] == "invalid_spec" and r["problems"][0]["field"] == "preset"
    r = chan.request(P.attach("no-such-job"))
    assert r["code"] == "unknown_job" and r["hint"]
    r = chan.request(P.ping(nonce="still here"))
    assert r.type == "pong" and r["nonce"] == "still here"
    chan.close()


def test_framing_errors_after_auth_close_only_that_connection(srv, good):
    for junk in (struct.pack(">I", P.MAX_HEADER_BYTES + 1), struct.pack(">I", 4) + b"[1]x",
                 P.encode_frame({"type": "ping"})[:-2]):
        sock = _raw(srv)
        sock.sendall(P.hello(srv.token).encode() + junk)
        sock.shutdown(socket.SHUT_WR)
        frames, closed = _drain(sock)
        assert closed and [f.type for f in frames if f.type != "heartbeat"] == ["welcome", "error"]
        assert frames[-1]["code"] == "bad_frame" and frames[-1]["fatal"] is True
    _assert_alive(good, "framing")


# --------------------------------------------------------------------- fuzzing
def _frame(header: object, payload: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack(">I", len(raw)) + raw + payload


json_values = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=12) | \
    st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
known_types = st.sampled_from(sorted(P.CLIENT_MESSAGES))
field_names = st.sampled_from(["job_id", "from_seq", "token", "spec", "preset", "overrides", "name", "offset",
                               "length", "nonce", "id", "protocol", "mesh_name", "attach", "previews", "zzz"])
typed_messages = st.builds(lambda t, fields: {"type": t, **fields}, known_types,
                           st.dictionaries(field_names, json_values, max_size=4))
streams = st.one_of(
    st.binary(max_size=80),                                                        # random bytes
    st.integers(P.MAX_HEADER_BYTES + 1, 2**32 - 1).map(lambda n: struct.pack(">I", n) + b"{}"),  # huge lengths
    st.binary(min_size=1, max_size=40).map(lambda b: struct.pack(">I", len(b)) + b),  # non-JSON headers
    st.tuples(typed_messages, st.integers(1, 60)).map(lambda t: _frame(t[0])[:-t[1]]),  # truncated frames
    st.integers(P.MAX_PAYLOAD_BYTES + 1, 2**62).map(lambda n: _frame({"type": "submit", "payload_bytes": n})),
    typed_messages.map(_frame),                                                    # wrong field types
    st.text(min_size=1, max_size=15).map(lambda t: _frame({"type": t})),           # unknown types
    st.lists(typed_messages, min_size=2, max_size=4).map(lambda ms: b"".join(map(_frame, ms))),
)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=streams, authed=st.booleans())
def test_fuzz_live_server(srv, good, data, authed):
    if authed:  # never let a fuzz case stop the server or start a job
        for header in _decodable(data):
            assume(not (header.get("type") in ("shutdown", "submit", "resume") and not P.validate(header, "client")))
    sock = _raw(srv)
    try:
        sock.sendall((P.hello(srv.token).encode() if authed else b"") + data)
        sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server already refused and closed: fine, _drain checks what it said
    frames, closed = _drain(sock)
    sock.close()
    assert closed, "the server must close a connection whose client half-closed"
    for f in frames:
        assert P.validate(f.header, "server") == [], f.header
        if f.type == "error":
            assert f["code"] in P.ERROR_HINTS
    if not authed:
        assert all(f.type == "error" and f["code"] == "unauthorized" for f in frames)
    _assert_alive(good, len(data))


def _decodable(data: bytes) -> list[dict]:
    reader, out = P.FrameReader(), []
    try:
        out = [f.header for f in reader.feed(data)]
    except P.FrameError:
        pass
    return out


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                kids.append(int(d.name))
    return kids


def test_zz_after_fuzzing_server_and_worker_are_unchanged(srv, good):
    workers = good.request(P.list_jobs())["workers"]
    assert len(workers) == 1 and workers[0]["pid"] and srv.proc.poll() is None
    if sys.platform.startswith("linux"):
        kids = _children(srv.proc.pid)
        assert workers[0]["pid"] in kids and len(kids) <= 2  # the worker (+ multiprocessing's resource tracker)
    jobs = good.request(P.list_jobs())["jobs"]
    assert jobs == [], "no fuzz case may have started a job"


def test_a_full_queue_answers_busy_and_cancel_empties_it(srv, good):
    endless = {"nerf": {"steps": 10**6, "resolution_schedule": [[0, 16]]}}
    running = P.raise_for_error(good.request(P.submit(preset="cpu-smoke", overrides=endless, previews=False)))
    read_until(good, lambda f: f.type == "started" and f["job_id"] == running["job_id"], timeout=60)
    queued = P.raise_for_error(good.request(P.submit(preset="cpu-smoke", overrides=endless, attach=False)))
    busy = good.request(P.submit(preset="cpu-smoke", overrides=endless, attach=False))
    assert busy.type == "error" and busy["code"] == "busy" and "limit 1" in busy["message"] and busy["hint"]
    ack = P.raise_for_error(good.request(P.cancel(queued["job_id"])))
    assert ack["state"] == "cancelled", "a queued job is dropped at once"
    P.raise_for_error(good.request(P.cancel(running["job_id"])))
    end = read_until(good, job_ended(running["job_id"]), timeout=60)[-1]
    assert end.type == "cancelled" and end["reason"] == "user"


def test_a_mesh_upload_becomes_the_retexture_input(srv, good):
    mesh = box_glb()  # a real mesh: the server checks an upload before it makes a run folder
    reply = P.raise_for_error(good.request(P.submit(
        preset="cpu-smoke", overrides={"nerf": {"steps": 1, "resolution_schedule": [[0, 16]]}},
        mesh=mesh, mesh_name="../../my chair.glb")))
    end = read_until(good, job_ended(reply["job_id"]), timeout=60)[-1]
    assert end.type == "done"
    saved = Path(reply["run_dir"]) / "input" / "my_chair.glb"
    assert saved.read_bytes() == mesh, "the name is reduced to a safe file name inside the run folder"
    spec = json.loads((Path(reply["run_dir"]) / "spec.json").read_text())
    assert spec["mode"] == "retexture" and Path(spec["input_mesh"]) == saved
