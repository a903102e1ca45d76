"""Seeded fuzz cases for the engine protocol: byte streams a hostile or broken client might send.

Each case is what one connection sends (after an optional good hello). The generator covers every
client message type with wrong types in every field, unknown fields and types, surrogates, path
traversal in every path-like spec field (also padded with white space, Unicode's included, which
a confined server must refuse: `must_refuse`), numbers that overflow to infinity, deep nesting,
huge, zero and truncated lengths, bad payload sizes, headers that are not JSON objects, and random
bytes. `expect()` decodes the same
bytes with the protocol's own reader, so the verdict needs no second notion of what is valid.
"""
from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass
from typing import Any

from . import protocol as P

TRAVERSAL = ["../../../../etc/passwd", "/etc/passwd", "~/.ssh/id_rsa", "C:\\Windows\\win.ini", "..",
             "input/../../../x.glb", "/proc/self/environ", "\x00", "a" * 300, "/" + "a" * 5000,
             " /etc/passwd", "\u00a0/etc/passwd", "/etc/passwd\u2003"]
# white space Python strips (and U+200B, which it does not): around a value, its parts or a mesh path
PADDING = [" ", "\t", "\u00a0", "\u2003", "\u3000", "\u2028", "\u200b"]
# a padded spelling of a path outside every root; the same value unpadded is refused by a confined server
PADDED_PATHS = [("prior", "{p}analytic:mesh={t}"), ("prior", "analytic:mesh={p}{t}"), ("prior", "analytic:mesh={t}{p}"),
                ("prior", "analytic:marker,{p}mesh={t}"), ("prior", "{p}sd:{d}"), ("prior", "sd:{p}{d}"),
                ("input_mesh", "{p}{t}"), ("input_mesh", "{t}{p}"), ("model", "{p}{d}"), ("phi_model", "{d}{p}")]
PADDED_TARGETS = [("/etc/hostname", "/etc"), ("/etc/does-not-exist.glb", "/nonexistent/model"),
                  ("../../../outside.glb", "../../.."), ("~/.ssh/id_rsa", "~")]
SURROGATES = ["owl \ud83d", "\udc00", "x\udfffy", "\ud800\ud800"]
INTS = [0, 1, -1, 2**31, 2**31 - 1, 2**32, 2**53, 2**63, 2**64, -2**63, 10**30]
SPEC_FIELDS = ["prompt", "negative_prompt", "seed", "particles", "prior", "mode", "device", "preset",
               "input_mesh", "output_dir", "model", "phi_model", "nerf", "geometry", "texture", "camera",
               "export", "field", "input_mesh_decimate"]
PATH_FIELDS = {"input_mesh": "{}", "output_dir": "{}", "model": "{}", "phi_model": "{}",
               "prior": "analytic:mesh={}"}
PRESETS = ["cpu-smoke", "preview", "fast", "paper", "nope", ""]


@dataclass
class Case:
    kind: str
    data: bytes
    authed: bool
    must_refuse: bool = False  # a submit valid in every way but a padded path: `accepted` is a confinement bypass


def _str(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.25:
        return rng.choice(SURROGATES)
    if pick < 0.45:
        return rng.choice(TRAVERSAL)
    if pick < 0.5:
        return "é" * rng.randint(0, 50) + "\u2603"
    return "".join(chr(rng.randint(32, 0x2FF)) for _ in range(rng.randint(0, 12)))


def value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, skewed towards the ones that break servers."""
    pick = rng.random()
    if depth > 3 or pick < 0.15:
        return rng.choice([None, True, False])
    if pick < 0.35:
        return rng.choice(INTS) if rng.random() < 0.6 else rng.randint(-10**6, 10**6)
    if pick < 0.45:
        return rng.choice([0.5, -1e308, 1e-300, 3.0])
    if pick < 0.75:
        return _str(rng)
    if pick < 0.87:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {(_str(rng) if rng.random() < 0.3 else rng.choice(SPEC_FIELDS)): value(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}


def spec_like(rng: random.Random) -> dict[str, Any]:
    """A spec or overrides object: real field names, some path-like fields aimed outside."""
    out: dict[str, Any] = {}
    for _ in range(rng.randint(0, 4)):
        name = rng.choice(SPEC_FIELDS)
        if name in PATH_FIELDS and rng.random() < 0.7:
            out[name] = PATH_FIELDS[name].format(rng.choice(TRAVERSAL))
        elif name in ("nerf", "geometry", "texture") and rng.random() < 0.5:
            out[name] = {"steps": rng.choice([1, -5, "x", 2**63]), "enabled": value(rng, 2)}
        else:
            out[name] = value(rng, 1)
    if rng.random() < 0.5:  # keep most jobs tiny if they are valid after all
        out.setdefault("nerf", {"steps": 1, "resolution_schedule": [[0, 16]]})
    return out


def message(rng: random.Random, mtype: str, id_: int) -> dict[str, Any]:
    """A header of type `mtype`: each schema field right, wrong or missing; sometimes extra fields."""
    schema = P.CLIENT_MESSAGES.get(mtype, {})
    h: dict[str, Any] = {"type": mtype, "id": id_}
    for name in schema:
        r = rng.random()
        if r < 0.3:
            continue
        if name in ("spec", "overrides") and r < 0.8:
            h[name] = spec_like(rng)
        elif name == "preset" and r < 0.8:
            h[name] = rng.choice(PRESETS)
        elif name == "job_id" and r < 0.6:
            h[name] = rng.choice(["20240101-000000-abcdef", "../x", "a" * 81, "ok.id"])
        elif name == "name" and r < 0.6:
            h[name] = rng.choice(["spec.json", "../../etc/passwd", "/etc/passwd", "events.jsonl"])
        elif name in ("offset", "length", "from_seq") and r < 0.7:
            h[name] = rng.choice(INTS)
        elif name == "protocol" and r < 0.6:
            h[name] = P.PROTOCOL_VERSION
        else:
            h[name] = value(rng)
    if rng.random() < 0.15:
        h[_str(rng)] = value(rng)
    if rng.random() < 0.08:
        h["id"] = value(rng)
    if mtype in ("shutdown", "estimate") or (mtype in ("submit", "resume") and rng.random() < 0.5):
        h["zz_not_a_field"] = 1  # never stop the server or start an estimate's engine child; most submits no job
    return h


def encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """As a careless client writes it (json.dumps escapes lone surrogates instead of failing)."""
    if payload:
        header = {**header, "payload_bytes": len(payload)}
    raw = json.dumps(header).encode("ascii")
    return struct.pack(">I", len(raw)) + raw + payload


def _deep(rng: random.Random, id_: int) -> bytes:
    d = rng.choice([50, 65, 200, 600, 5000])  # 600 parses everywhere; 5000 nowhere
    raw = f'{{"type":"ping","id":{id_},"nonce":{"[" * d}{"]" * d}}}'.encode()
    return struct.pack(">I", len(raw)) + raw


def _framing(rng: random.Random) -> tuple[str, bytes]:
    k = rng.randrange(9)
    if k == 0:
        return "random-bytes", rng.randbytes(rng.randint(1, 80))
    if k == 1:
        return "huge-length", struct.pack(">I", rng.choice([P.MAX_HEADER_BYTES + 1, 2**32 - 1, 2**31])) + b"{}"
    if k == 2:
        return "zero-length", struct.pack(">I", 0)
    if k == 3:
        body = rng.choice([b"not json", b"[1,2]", b'"s"', b"{}", b'{"type": 5}', b'{"type": ""}', b"\xff\xfe{}",
                           b'{"type":"ping","x":NaN}', b'{"type":"ping"'])
        return "bad-header", struct.pack(">I", len(body)) + body
    if k == 4:
        size = rng.choice([-1, "12", 1.5, P.MAX_PAYLOAD_BYTES + 1, 2**63])
        return "bad-payload-size", encode({"type": "ping", "id": 1, "payload_bytes": size})
    if k == 5:
        full = encode(message(rng, rng.choice(sorted(P.CLIENT_MESSAGES)), 1))
        return "truncated", full[:rng.randint(1, len(full) - 1)]
    if k == 6:
        return "short-payload", encode({"type": "submit", "preset": "cpu-smoke", "mesh_name": "m.glb",
                                        "payload_bytes": rng.choice([10, 5 << 20])}) + b"abc"
    if k == 7:
        return "deep-nesting-unparsable", struct.pack(">I", 20002) + b"[" * 10001 + b"]" * 10001
    return "length-only", struct.pack(">I", rng.randint(1, 1000))


def padded_path_case(rng: random.Random, id_: int) -> Case:
    """A tiny, otherwise valid job whose one path-like value is padded with (Unicode) white space."""
    field, template = rng.choice(PADDED_PATHS)
    target, folder = rng.choice(PADDED_TARGETS)
    value_ = template.format(p=rng.choice(PADDING), t=target, d=folder)
    overrides: dict[str, Any] = {"nerf": {"steps": 1, "resolution_schedule": [[0, 16]]}, field: value_}
    if field == "input_mesh":
        overrides["mode"] = "retexture"
    sd = value_.strip().startswith("sd") or field in ("model", "phi_model")
    if sd:
        overrides["prompt"] = "a chair"
    h = {"type": "submit", "id": id_, "preset": "fast" if sd else "cpu-smoke", "overrides": overrides,
         "attach": False}
    return Case("padded-path", encode(h), authed=True, must_refuse=True)


def overflow_case(rng: random.Random, id_: int) -> Case:
    """A number literal that parses to ±inf (1e309) somewhere in a header: json.dumps cannot write one."""
    lit = rng.choice(["1e309", "-1e309", "1e400", "123456789e999"])
    body = rng.choice([f'{{"type":"ping","id":{id_},"nonce":{lit}}}', f'{{"type":"ping","id":{lit}}}',
                       f'{{"type":"ping","id":{id_},"nonce":{{"a":[0,{lit}]}}}}',
                       f'{{"type":"get_artifact","id":{id_},"job_id":"x","name":"n","offset":{lit}}}',
                       f'{{"type":"submit","id":{id_},"preset":"cpu-smoke","overrides":{{"seed":{lit}}},'
                       f'"zz_not_a_field":1}}'])
    return Case("overflow-number", struct.pack(">I", len(body)) + body.encode(), authed=True)


def make_case(rng: random.Random, next_id: int) -> Case:
    """One connection's worth of bytes; ids start at next_id."""
    r = rng.random()
    if r < 0.08:  # before authentication
        kind, data = _framing(rng) if rng.random() < 0.5 else ("pre-auth-message", encode(message(
            rng, rng.choice(sorted(P.CLIENT_MESSAGES) + ["hello"] * 4), next_id)))
        return Case(kind, data, authed=False)
    if r < 0.2:
        kind, data = _framing(rng)
        prefix = encode(message(rng, "ping", next_id)) if rng.random() < 0.5 else b""
        return Case(kind, prefix + data, authed=True)
    if r < 0.25:
        return Case("deep-nesting", _deep(rng, next_id), authed=True)
    if r < 0.3:
        mesh = rng.randbytes(rng.randint(1, 4096))
        h = message(rng, "submit", next_id)
        h.setdefault("mesh_name", rng.choice(["m.glb", "../../x.obj", "a.txt", "\ud83d.ply"]))
        return Case("submit-with-payload", encode(h, mesh), authed=True)
    if r < 0.34:
        return padded_path_case(rng, next_id)
    if r < 0.36:
        return overflow_case(rng, next_id)
    types = sorted(P.CLIENT_MESSAGES) + ["teleport", "", "\ud83d"]
    frames = [encode(message(rng, rng.choice(types), next_id + i)) for i in range(rng.randint(1, 4))]
    return Case("messages", b"".join(frames), authed=True)


def expect(case: Case) -> tuple[int, bool]:
    """(complete frames the server must answer, whether a framing error follows them)."""
    reader = P.FrameReader(max_header=64 << 10 if not case.authed else P.MAX_HEADER_BYTES,
                           max_payload=0 if not case.authed else P.MAX_PAYLOAD_BYTES)
    frames: list[P.Frame] = []
    try:
        frames = reader.feed(case.data)
        reader.eof()
    except P.FrameError:
        return len(frames), True
    return len(frames), False
