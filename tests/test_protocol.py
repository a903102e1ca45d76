"""The wire protocol in-process: framing round trips, a decoder that only ever raises FrameError,
caps, field-level validation, and the blocking Channel client the Blender add-on uses."""
from __future__ import annotations

import ast
import itertools
import json
import socket
import struct
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import protocol as P

json_scalars = st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.text(max_size=20) | \
    st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=6)
headers = st.dictionaries(st.text(max_size=10).filter(lambda k: k not in ("type", "payload_bytes")),
                          json_values, max_size=4).flatmap(
    lambda d: st.text(min_size=1, max_size=12).map(lambda t: {**d, "type": t}))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@FAST
@given(frames=st.lists(st.tuples(headers, st.binary(max_size=300)), min_size=1, max_size=5),
       cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_frames_round_trip_through_any_chunking(frames, cuts):
    stream = b"".join(P.encode_frame(h, p) for h, p in frames)
    reader, got = P.FrameReader(), []
    for chunk in _chunks(stream, cuts):
        got += reader.feed(chunk)
    reader.eof()
    assert [(f.header["type"], f.payload) for f in got] == [(h["type"], p) for h, p in frames]
    for f, (h, _) in zip(got, frames, strict=True):
        assert {k: v for k, v in f.header.items() if k != "payload_bytes"} == json.loads(json.dumps(h))


@settings(max_examples=2000, deadline=None)
@given(data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 400), max_size=4))
def test_random_bytes_only_ever_raise_frame_error(data, cuts):
    reader = P.FrameReader(max_payload=1000)
    try:
        for chunk in _chunks(data, cuts):
            reader.feed(chunk)
        reader.eof()
    except P.FrameError as exc:
        assert exc.fatal and exc.code == "bad_frame"


@settings(max_examples=1200, deadline=None)
@given(header=headers, payload=st.binary(max_size=64), pos=st.integers(0, 10_000), byte=st.integers(0, 255),
       cut=st.integers(0, 10_000))
def test_corrupted_or_truncated_frames_only_raise_frame_error(header, payload, pos, byte, cut):
    data = bytearray(P.encode_frame(header, payload))
    data[pos % len(data)] = byte
    data = bytes(data[:cut % (len(data) + 1)])
    reader = P.FrameReader(max_payload=1 << 16)
    try:
        reader.feed(data)
        reader.eof()
    except P.FrameError:
        pass


def test_truncated_frame_is_reported_at_eof():
    data = P.encode_frame({"type": "ping"}, b"abc")
    reader = P.FrameReader()
    assert reader.feed(data[:-1]) == []
    with pytest.raises(P.FrameError, match="inside a frame"):
        reader.eof()


@pytest.mark.parametrize("raw, why", [
    (struct.pack(">I", 0), "outside"),
    (struct.pack(">I", P.MAX_HEADER_BYTES + 1), "outside"),
    (struct.pack(">I", 5) + b"hello", "not UTF-8 JSON"),
    (struct.pack(">I", 2) + b"[]", "not an object"),
    (struct.pack(">I", 2) + b"{}", 'no string "type"'),
    (struct.pack(">I", 13) + b'{"type":"x","', "not UTF-8 JSON"),
    (struct.pack(">I", 25) + b'{"type":"x","a":NaN     }', "not UTF-8 JSON"),
    (struct.pack(">I", 3) + b"\xff\xfe\x00", "not UTF-8 JSON"),
])
def test_bad_headers_name_the_problem(raw, why):
    with pytest.raises(P.FrameError, match=why):
        P.FrameReader().feed(raw)


def test_huge_declared_payload_is_refused_before_buffering():
    raw = json.dumps({"type": "submit", "payload_bytes": P.MAX_PAYLOAD_BYTES + 1}).encode()
    head = struct.pack(">I", len(raw)) + raw
    with pytest.raises(P.FrameError, match="exceeds"):
        P.FrameReader().feed(head)
    # a reader with the pre-auth cap refuses any payload at all
    with pytest.raises(P.FrameError, match="exceeds 0"):
        P.FrameReader(max_payload=0).feed(P.encode_frame({"type": "hello"}, b"x"))
    raw = b'{"type":"x","payload_bytes":-1}'
    with pytest.raises(P.FrameError, match="non-negative"):
        P.FrameReader().feed(struct.pack(">I", len(raw)) + raw)


def test_every_client_constructor_builds_a_valid_message():
    frames = [P.hello("tok", "test"), P.submit(preset="cpu-smoke", overrides={"seed": 1}),
              P.submit(spec={"prompt": "a chair"}), P.submit(preset="cpu-smoke", mesh=b"glTF", mesh_name="chair.glb"),
              P.cancel("j1"), P.resume("j1"), P.list_jobs(id=3), P.attach("j1", from_seq=7), P.detach("j1"),
              P.get_artifact("j1", "result/mesh.glb", offset=10, length=5), P.ping(nonce=[1, 2]), P.shutdown()]
    for f in frames:
        assert P.validate(f.header, "client") == [], f.header
        back = P.decode_frames(f.encode())[0]
        assert back.type == f.type and back.payload == f.payload


@pytest.mark.parametrize("header, field", [
    ({"type": "attach", "job_id": 5}, "job_id"),
    ({"type": "attach"}, "job_id"),
    ({"type": "attach", "job_id": "../etc"}, "job_id"),
    ({"type": "attach", "job_id": "j", "from_seq": -1}, "from_seq"),
    ({"type": "attach", "job_id": "j", "from_seq": True}, "from_seq"),
    ({"type": "ping", "extra": 1}, "extra"),
    ({"type": "ping", "id": {"a": 1}}, "id"),
    ({"type": "frobnicate"}, "type"),
    ({"type": "hello", "token": "t"}, "protocol"),
    ({"type": "submit"}, "spec"),
    ({"type": "submit", "spec": {}, "preset": "fast"}, "spec"),
    ({"type": "submit", "spec": {}, "overrides": {}}, "overrides"),
    ({"type": "submit", "preset": "fast", "payload_bytes": 4}, "mesh_name"),
    ({"type": "submit", "preset": "fast", "payload_bytes": 4, "mesh_name": "x.exe"}, "mesh_name"),
    ({"type": "cancel", "job_id": "j", "payload_bytes": 4}, "payload_bytes"),
])
def test_validation_names_the_bad_field(header, field):
    problems = P.validate(header, "client")
    assert field in [p["field"] for p in problems], problems
    for p in problems:
        assert set(p) == {"field", "value", "allowed"} and p["allowed"]


@settings(max_examples=400, deadline=None)
@given(header=headers, client_type=st.sampled_from(sorted(P.CLIENT_MESSAGES)), use_known=st.booleans())
def test_validation_of_arbitrary_headers_never_raises_and_errors_encode(header, client_type, use_known):
    if use_known:
        header = {**header, "type": client_type}
    problems = P.validate(header, "client")
    frame = P.error("invalid_message", "bad", problems=problems)
    assert P.decode_frames(frame.encode())[0].type == "error"
    assert P.validate(frame.header, "server") == []


def test_make_raises_with_every_problem():
    with pytest.raises(P.ProtocolError) as info:
        P.make("get_artifact", job_id=3, offset="x")
    fields = {p["field"] for p in info.value.problems}
    assert {"job_id", "name", "offset"} <= fields


def test_problem_values_are_shortened_for_the_wire():
    p = P.problem("prompt", "x" * 5000, "short")
    assert len(p["value"]) < 100
    assert P.problem("f", [1, 2], "ok")["value"] == [1, 2]


def test_ready_line_parsing():
    line = json.dumps({"event": "ready", "port": 5, "pid": 1, "protocol": P.PROTOCOL_VERSION, "version": "x"})
    assert P.parse_ready_line(line.encode())["port"] == 5
    with pytest.raises(P.ProtocolError, match="not JSON"):
        P.parse_ready_line("Traceback (most recent call last):")
    with pytest.raises(P.ProtocolError) as info:
        P.parse_ready_line(line.replace(f'"protocol": {P.PROTOCOL_VERSION}', '"protocol": 999'))
    assert info.value.code == "protocol_mismatch"


def test_preview_images_split_rgb_and_normal():
    f = P.Frame({"type": "preview", "width": 2, "height": 1, "rgb_bytes": 6, "normal_bytes": 6}, bytes(range(12)))
    assert P.preview_images(f) == (2, 1, bytes(range(6)), bytes(range(6, 12)))


def test_channel_request_keeps_unrelated_frames_in_order():
    a, b = socket.socketpair()
    chan = P.Channel(a)

    def server_side():
        reader = P.FrameReader()
        frames = []
        while not frames:
            frames = reader.feed(b.recv(65536))
        rid = frames[0]["id"]
        b.sendall(P.encode_frame({"type": "progress", "n": 1}) + P.encode_frame({"type": "progress", "n": 2}, b"zz")
                  + P.encode_frame({"type": "pong", "re": rid, "time": 0}) + P.encode_frame({"type": "log", "n": 3}))
        b.close()

    t = threading.Thread(target=server_side)
    t.start()
    pong = chan.request(P.ping(), timeout=5)
    t.join()
    assert pong.type == "pong"
    rest = list(chan.frames(timeout=5))
    assert [f.get("n") for f in rest] == [1, 2, 3] and rest[1].payload == b"zz"
    chan.close()


def test_remote_error_becomes_protocol_error():
    with pytest.raises(P.ProtocolError) as info:
        P.raise_for_error(P.error("busy", "queue full"))
    assert info.value.code == "busy" and info.value.hint


def test_protocol_package_is_pure_stdlib():
    """The Blender add-on bundles the server/protocol/ package as-is: nothing but the standard library,
    and relative imports only of its own modules (so it imports as server.protocol and <addon>.protocol)."""
    package = Path(P.__file__).parent
    own = {f.stem for f in package.glob("*.py")}
    assert {"__init__", "framing", "validation", "messages", "channel"} <= own
    names = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level:
                where = f"{source.name}: from {'.' * node.level}{node.module or ''} import ..."
                assert node.level == 1 and node.module in own, where
            elif isinstance(node, ast.ImportFrom):
                names.add(node.module.split(".")[0])
    assert names and names <= set(sys.stdlib_module_names) | {"__future__"}, names


def test_good_frames_before_a_bad_one_are_delivered_first():
    reader = P.FrameReader()
    data = P.ping(nonce=1).encode() + P.ping(nonce=2).encode() + struct.pack(">I", 3) + b"{x}"
    assert [f["nonce"] for f in reader.feed(data)] == [1, 2]
    with pytest.raises(P.FrameError):
        reader.feed(b"")
    with pytest.raises(P.FrameError):
        reader.eof()


def test_limit_lets_the_caller_change_caps_between_frames():
    hello = P.hello("t").encode()
    big = P.submit(preset="cpu-smoke", mesh=b"m" * 100, mesh_name="a.glb").encode()
    reader = P.FrameReader(max_payload=0)
    assert [f.type for f in reader.feed(hello + big, limit=1)] == ["hello"]
    reader.max_payload = P.MAX_PAYLOAD_BYTES
    (frame,) = reader.feed()
    assert frame.type == "submit" and frame.payload == b"m" * 100 and reader.buffered == 0


def test_error_frames_carry_the_default_hint_the_request_id_and_the_job():
    frame = P.error("busy", "queue full", re_id=7, job_id="j1")
    assert list(frame.header) == ["type", "code", "message", "hint", "problems", "fatal", "re", "job_id"]
    assert frame.header["hint"] == P.ERROR_HINTS["busy"] and frame["re"] == 7 and frame["job_id"] == "j1"
    bad = P.problem("offset", -1, "an integer in [0, 2^53 - 1]")
    fatal = P.FrameError("cut off").to_frame("r1")
    assert fatal.header == {"type": "error", "code": "bad_frame", "message": "cut off",
                            "hint": P.ERROR_HINTS["bad_frame"], "problems": [], "fatal": True, "re": "r1"}
    assert "re" not in P.ProtocolError("invalid_message", "m", problems=[bad]).to_frame().header
    assert P.validate(P.error("internal", "x", hint="", problems=[bad]).header, "server") == []
