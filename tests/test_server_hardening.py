"""Issue 14 against a real server subprocess on loopback: text that is not valid Unicode, a poisoned
or corrupt run folder, the per-frame deadline, get_artifact offsets, and bounded upload memory."""
from __future__ import annotations

import json
import select
import socket
import struct
import time
from pathlib import Path

import pytest

from server import protocol as P
from server.launcher import ServerProcess, job_ended, read_until

FLOOD = ("--device", "cpu", "--job-fn", "server.bench:preview_flood")
ONE_STEP = {"nerf": {"steps": 1, "resolution_schedule": [[0, 16]]}}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("runs"), *FLOOD, "--frame-timeout", "1.5") as s:
        yield s


def raw_frame(header: dict, payload: bytes = b"") -> bytes:
    """A frame as a careless client writes it: json.dumps escapes lone surrogates as \\udXXX."""
    if payload:
        header = {**header, "payload_bytes": len(payload)}
    raw = json.dumps(header).encode("ascii")
    return struct.pack(">I", len(raw)) + raw + payload


def authed_socket(srv) -> tuple[socket.socket, P.FrameReader]:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(P.hello(srv.token).encode())
    reader = P.FrameReader()
    assert next_frame(sock, reader).type == "welcome"
    return sock, reader


def next_frame(sock: socket.socket, reader: P.FrameReader, timeout: float = 10.0) -> P.Frame | None:
    """The next non-heartbeat frame; None when the server closed the connection; TimeoutError after
    `timeout` seconds in all (heartbeats keep arriving, so a per-recv timeout would never fire)."""
    deadline = time.monotonic() + timeout
    pending: list[P.Frame] = getattr(reader, "_pending", [])
    reader._pending = pending  # type: ignore[attr-defined]
    while True:
        while pending:
            f = pending.pop(0)
            if f.type != "heartbeat":
                return f
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no reply within {timeout} s")
        sock.settimeout(left)
        try:
            data = sock.recv(1 << 16)
        except ConnectionResetError:
            data = b""
        if not data:
            return None
        pending += reader.feed(data)


# ------------------------------------------------------------------ 1. text
@pytest.mark.parametrize("header,field", [
    ({"type": "submit", "preset": "cpu-smoke", "overrides": {"prompt": "owl \ud83d"}}, "overrides.prompt"),
    ({"type": "ping", "nonce": "owl \ud83d"}, "nonce"),
    ({"type": "ping", "nonce": {"a": [1, {"b": "x\udc00y"}]}}, "nonce.a[1].b"),
    ({"type": "ping", "nonce": {"k\ud800": 1}}, "nonce.k\\ud800"),
    ({"type": "list_jobs", "id": "r\udfff"}, "id"),
    ({"type": "attach", "job_id": "\ud83d"}, "job_id"),
])
def test_lone_surrogates_are_refused_naming_the_field(srv, header, field):
    sock, reader = authed_socket(srv)
    sock.sendall(raw_frame({**header, **({} if "id" in header else {"id": 7})}))
    got = next_frame(sock, reader)
    assert got is not None, "the connection was closed without a reply"
    assert got.type == "error" and got["code"] == "invalid_message" and got["fatal"] is False, got.header
    assert [p["field"] for p in got["problems"]] == [field], got["problems"]
    assert "UTF-8" in got["problems"][0]["allowed"] and "surrogate" in got["problems"][0]["allowed"]
    if field != "id":
        assert got.get("re") == 7
    sock.sendall(P.ping(nonce="after").encode())
    pong = next_frame(sock, reader)
    assert pong is not None and pong.type == "pong" and pong["nonce"] == "after"
    sock.close()


def test_a_hello_with_a_lone_surrogate_token_is_refused_not_dropped(srv):
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(raw_frame({"type": "hello", "token": "t\ud83d", "protocol": P.PROTOCOL_VERSION}))
    got = next_frame(sock, P.FrameReader())
    assert got is not None and got["code"] == "unauthorized" and "token" in got["message"], got
    sock.close()


def _write_run(runs: Path, name: str, spec: bytes) -> None:
    (runs / name).mkdir(parents=True)
    (runs / name / "spec.json").write_bytes(spec)


def test_poisoned_and_corrupt_run_folders_never_break_list_jobs(tmp_path):
    runs = tmp_path / "runs"
    good = {"prompt": "a chair", "preset": "cpu-smoke", "prior": "analytic:marker", "mode": "text"}
    _write_run(runs, "20240101-000000-aaaaaa", json.dumps({**good, "prompt": "owl \ud83d"}).encode())  # older version
    _write_run(runs, "20240101-000001-bbbbbb", b'{"prompt": "half')
    _write_run(runs, "20240101-000002-cccccc", b'{"prompt": "\xff\xfe not utf-8"}')
    _write_run(runs, "20240101-000003-dddddd", json.dumps(good).encode())
    (runs / "20240101-000003-dddddd" / "events.jsonl").write_text('{"seq": "x", "type": "queued"}\n[1]\n')
    _write_run(runs, "20240101-000004-eeeeee", b"[1, 2]")
    with ServerProcess(runs, *FLOOD) as s:
        chan = s.connect()
        for _ in range(2):  # also the second time: nothing is poisoned for later clients
            got = chan.request(P.list_jobs(), timeout=10)
            assert got.type == "jobs", got.header
            listed = {j["job_id"]: j for j in got["jobs"]}
            assert listed["20240101-000000-aaaaaa"]["prompt"] == "owl \ufffd"
            assert listed["20240101-000003-dddddd"]["prompt"] == "a chair"
            bad = {u["job_id"]: u for u in got["unreadable"]}
            assert set(bad) == {"20240101-000001-bbbbbb", "20240101-000002-cccccc", "20240101-000004-eeeeee"}
            assert "spec.json" in bad["20240101-000001-bbbbbb"]["error"]
            assert "UTF-8" in bad["20240101-000002-cccccc"]["error"]
            assert bad["20240101-000002-cccccc"]["run_dir"].endswith("20240101-000002-cccccc")
            assert "JSON list" in bad["20240101-000004-eeeeee"]["error"]
        assert "owl" in s.log_tail() and "not valid Unicode" in s.log_tail(), "the server logs the poisoned text"
        chan.close()


def test_a_submit_with_a_lone_surrogate_leaves_nothing_on_disk(srv):
    before = {p.name for p in srv.runs_dir.iterdir()}
    sock, reader = authed_socket(srv)
    sock.sendall(raw_frame({"type": "submit", "preset": "cpu-smoke", "overrides": {"prompt": "owl \ud83d"}}))
    assert next_frame(sock, reader)["code"] == "invalid_message"
    sock.close()
    assert {p.name for p in srv.runs_dir.iterdir()} == before


# --------------------------------------------------------- 2. frame deadline
def test_a_trickled_frame_is_cut_at_the_frame_timeout(srv):
    sock, reader = authed_socket(srv)
    data = P.ping(nonce="x" * 40).encode()
    t0 = time.monotonic()
    cut = None
    for b in data:  # one byte every 0.25 s: never idle for long, but the frame takes 15 s
        try:
            sock.sendall(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            break
        # stop as soon as the server has answered: after its error it lingers ~2 s reading what the
        # client still sends (server/connection.py), so failing sends would time the linger too
        if select.select([sock], [], [], 0.25)[0] or time.monotonic() - t0 > 5:
            break
    got = next_frame(sock, reader, timeout=5)
    cut = time.monotonic() - t0
    assert got is not None and got.type == "error" and got["code"] == "bad_frame" and got["fatal"] is True
    assert "1.5 s" in got["message"], got["message"]
    assert cut < 4.0, f"the frame was cut after {cut:.1f} s (limit 1.5 s)"
    assert next_frame(sock, reader, timeout=5) is None
    sock.close()


def test_idle_time_between_frames_is_not_a_frame_timeout(srv):
    sock, reader = authed_socket(srv)
    time.sleep(2.5)  # longer than --frame-timeout, between frames
    sock.sendall(P.ping(nonce="idle").encode())
    got = next_frame(sock, reader)
    assert got is not None and got.type == "pong" and got["nonce"] == "idle"
    sock.close()


# ----------------------------------------------------- 5. get_artifact offset
@pytest.fixture(scope="module")
def finished_job(srv):
    chan = srv.connect()
    reply = P.raise_for_error(chan.request(P.submit(preset="cpu-smoke", overrides=ONE_STEP)))
    read_until(chan, job_ended(reply["job_id"]), timeout=120)
    yield chan, reply["job_id"]
    chan.close()


@pytest.mark.parametrize("offset", [2**31, 2**32 + 5, 2**63, 2**64, 10**30, -1, -2**63, "12", 1.5, None, True])
def test_get_artifact_with_a_bad_offset_names_offset(finished_job, offset):
    chan, job_id = finished_job
    got = chan.request(P.Frame({"type": "get_artifact", "job_id": job_id, "name": "spec.json", "offset": offset}),
                       timeout=10)
    assert got.type == "error" and got["code"] == "invalid_message", got.header
    assert [p["field"] for p in got["problems"]] == ["offset"], got["problems"]


def test_get_artifact_offsets_inside_the_file_still_work(finished_job):
    chan, job_id = finished_job
    whole = P.raise_for_error(chan.request(P.get_artifact(job_id, "spec.json"), timeout=10))
    size = whole["size"]
    tail = P.raise_for_error(chan.request(P.get_artifact(job_id, "spec.json", offset=size - 3), timeout=10))
    assert tail.payload == whole.payload[-3:]
    end = P.raise_for_error(chan.request(P.get_artifact(job_id, "spec.json", offset=size), timeout=10))
    assert end.payload == b"" and end["offset"] == size
    past = chan.request(P.get_artifact(job_id, "spec.json", offset=size + 1), timeout=10)
    assert past["code"] == "invalid_message" and past["problems"][0]["field"] == "offset"
    assert f"0..{size}" in past["problems"][0]["allowed"]


# ------------------------------------------------------- 8. upload memory
def test_a_large_upload_streams_to_disk_with_bounded_memory(srv):
    from server.bench_upload import rss_bytes, upload
    if rss_bytes(srv.proc.pid) is None:
        pytest.skip("no way to read a process's memory here (no /proc, no psutil)")
    got = upload(srv, 64, settle_s=0.5)
    assert got["saved_bytes"] == 64 << 20, "the whole payload lands in the run folder"
    assert got["peak_delta_mib"] < 24, f"server RSS rose by {got['peak_delta_mib']:.0f} MiB for a 64 MiB upload"
    assert got["after_delta_mib"] < 16, f"server RSS stayed {got['after_delta_mib']:.0f} MiB higher afterwards"
    assert not any((srv.runs_dir / ".uploads").glob("*")), "no spool file is left behind"


def test_an_upload_cut_off_midway_leaves_no_spool_file(srv):
    sock, reader = authed_socket(srv)
    raw = json.dumps({"type": "submit", "preset": "cpu-smoke", "mesh_name": "m.glb", "payload_bytes": 8 << 20})
    sock.sendall(struct.pack(">I", len(raw)) + raw.encode() + bytes(3 << 20))
    time.sleep(0.5)
    assert len(list((srv.runs_dir / ".uploads").glob("*.part"))) == 1, "a large payload is spooled as it arrives"
    sock.shutdown(socket.SHUT_WR)
    got = next_frame(sock, reader)
    assert got is not None and got["code"] == "bad_frame" and "payload" in got["message"], got
    sock.close()
    time.sleep(0.2)
    assert not any((srv.runs_dir / ".uploads").glob("*"))


def test_replies_with_unencodable_text_are_repaired_or_replaced_never_lost(caplog):
    from server.reply_encode import encode_reply
    head, _ = encode_reply(P.reply("pong", None, nonce={"k\ud800": "owl \ud83d"}, time=1.0))
    (frame,) = P.decode_frames(head)
    assert frame.type == "pong" and frame["nonce"] == {"k\ufffd": "owl \ufffd"}
    assert "nonce" in caplog.text and "not valid Unicode" in caplog.text
    bad = P.Frame({"type": "jobs", "re": 3, "jobs": [float("nan")], "workers": []})
    (frame,) = P.decode_frames(encode_reply(bad)[0])
    assert frame.type == "error" and frame["re"] == 3 and "jobs" in frame["message"], frame.header


@pytest.mark.parametrize("depth", [65, 900])
def test_values_nested_too_deep_are_refused_naming_the_field(srv, depth):
    sock, reader = authed_socket(srv)
    raw = f'{{"type":"ping","id":5,"nonce":{"[" * depth}{"]" * depth}}}'.encode()
    sock.sendall(struct.pack(">I", len(raw)) + raw)
    got = next_frame(sock, reader)
    assert got is not None and got["code"] == "invalid_message" and got.get("re") == 5, got and got.header
    assert got["problems"][0]["field"] == "nonce" and "64 levels" in got["problems"][0]["allowed"]
    sock.close()
