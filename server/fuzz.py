"""`vsdream bench fuzz [--frames N] [--seed S]`: throw seeded hostile traffic at a real server and count.

Each case is one connection: an optional good hello, the case's bytes, then a half-close. The
verdict per case (the rules the test suite asserts, see docs/protocol.md §2):

- crash: the server process exited, or a separate well-behaved connection stops getting pongs;
- hang: the server neither answered nor closed within the deadline after the half-close;
- silent drop: the connection closed with fewer replies than complete frames sent, or, after a
  framing error, without the fatal `bad_frame` error (before hello: without the fatal
  `unauthorized` / `protocol_mismatch` error). A frame that cannot be read is the only reason the
  protocol allows a close, and even then the error frame comes first;
- internal: any `error` with code `internal` (a server bug by definition);
- padded path accepted: a submit whose only fault is a path value padded with (Unicode) white space
  was `accepted` (a confinement bypass on this `--confine-paths` server);
- errors naming their field: `error` replies whose `problems` list the fields at fault.
"""
from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import protocol as P
from .fuzz_cases import Case, expect, make_case
from .launcher import ServerProcess

REPLIES = ("error", "pong", "jobs", "ack", "accepted", "attached", "detached", "artifact_data")
SERVER_ARGS = ("--device", "cpu", "--job-fn", "server.bench:preview_flood", "--confine-paths",
               "--hello-timeout", "3", "--frame-timeout", "5", "--max-queue", "4")


@dataclass
class Counts:
    cases: int = 0
    frames_sent: int = 0
    crashes: int = 0
    hangs: int = 0
    silent_drops: int = 0
    internal_errors: int = 0
    padded_paths_sent: int = 0
    padded_paths_accepted: int = 0
    errors: int = 0
    errors_naming_field: int = 0
    field_errors_without_field: int = 0  # invalid_message / unknown_type with an empty problems list
    invalid_server_frames: int = 0  # frames from the server that break the protocol's own schema
    extra_replies: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)  # the first few bad cases, for a reproducer

    def fail(self, what: str, case: Case, detail: str) -> None:
        if len(self.failures) < 10:
            self.failures.append(f"{what} [{case.kind}, authed={case.authed}] {detail}; "
                                 f"data={case.data[:160]!r}")


def _exchange(port: int, token: str, case: Case, timeout: float) -> tuple[list[P.Frame], bool, str]:
    """(frames the server sent, closed?, why the read ended)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            sock.sendall((P.hello(token).encode() if case.authed else b"") + case.data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early; what it said before closing is read below
        reader, frames = P.FrameReader(), []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return frames, False, "deadline"
            sock.settimeout(left)
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                return frames, False, "deadline"
            except ConnectionResetError:
                return frames, True, "reset"
            if not data:
                return frames, True, "eof"
            try:
                frames += reader.feed(data)
            except P.FrameError as exc:
                return frames, True, f"server sent bad framing: {exc.message}"
    finally:
        sock.close()


def judge(case: Case, frames: list[P.Frame], closed: bool, why: str, counts: Counts) -> None:
    complete, framing = expect(case)
    counts.frames_sent += complete + (1 if framing else 0)
    if not closed:
        counts.hangs += 1
        counts.fail("hang", case, f"still open after the deadline; got {[f.type for f in frames]}")
        return
    if why.startswith("server sent bad framing"):
        counts.invalid_server_frames += 1
        counts.fail("bad framing from server", case, why)
    for f in frames:
        if P.validate(f.header, "server"):
            counts.invalid_server_frames += 1
            counts.fail("invalid server frame", case, json.dumps(f.header, ensure_ascii=True)[:300])
        if f.type == "error":
            counts.errors += 1
            if f.get("code") == "internal":
                counts.internal_errors += 1
                counts.fail("internal", case, str(f.get("message")))
            problems = f.get("problems") or []
            if problems and all(isinstance(p, dict) and isinstance(p.get("field"), str) for p in problems):
                counts.errors_naming_field += 1
            elif f.get("code") in ("invalid_message", "unknown_type"):
                counts.field_errors_without_field += 1
    if not case.authed:
        first = frames[0] if frames else None
        if first is None or first.type != "error" or first.get("code") not in ("unauthorized", "protocol_mismatch") \
                or first.get("fatal") is not True:
            counts.silent_drops += 1
            counts.fail("silent drop", case, f"before hello: {[f.header for f in frames][:2]} ({why})")
        return
    if case.must_refuse:
        counts.padded_paths_sent += 1
        if any(f.type == "accepted" for f in frames):
            counts.padded_paths_accepted += 1
            counts.fail("padded path accepted", case, "a confined server accepted a padded path value")
    replies = [f for f in frames if f.type in REPLIES]
    need = complete + (1 if framing else 0)
    if not frames or frames[0].type != "welcome":
        counts.silent_drops += 1
        counts.fail("silent drop", case, f"no welcome ({why})")
    elif len(replies) < need or (framing and not (replies[-1].get("code") == "bad_frame" and replies[-1].get("fatal"))):
        counts.silent_drops += 1
        counts.fail("silent drop", case, f"{len(replies)} replies for {complete} frames"
                                         f"{' + a framing error' if framing else ''} ({why}): "
                                         f"{[(f.type, f.get('code')) for f in replies]}")
    elif len(replies) > need:
        counts.extra_replies += 1


def run_fuzz(srv: ServerProcess, frames: int, seed: int, max_seconds: float = 1e9,
             case_timeout: float = 10.0) -> Counts:
    """Send cases until `frames` fuzz frames went out (or max_seconds passed), then check liveness."""
    rng, counts, next_id = random.Random(seed), Counts(), 1
    control = srv.connect()
    t0 = time.monotonic()
    try:
        while counts.frames_sent < frames and time.monotonic() - t0 < max_seconds:
            case = make_case(rng, next_id)
            next_id += 10
            try:
                got, closed, why = _exchange(srv.port, srv.token, case, case_timeout)
            except OSError as exc:  # cannot even connect: the server is gone
                counts.crashes += 1
                counts.fail("crash", case, f"connect failed: {exc}")
                break
            counts.cases += 1
            judge(case, got, closed, why, counts)
            if counts.cases % 100 == 0 and not _alive(srv, control, counts, case):
                break
        else:
            _alive(srv, control, counts, None)
    finally:
        control.close()
        counts.seconds = time.monotonic() - t0
    return counts


def _alive(srv: ServerProcess, control: P.Channel, counts: Counts, case: Case | None) -> bool:
    try:
        pong = control.request(P.ping(nonce="alive"), timeout=10)
        ok = pong.type == "pong" and srv.proc.poll() is None
    except (OSError, P.ProtocolError):
        ok = False
    if not ok:
        counts.crashes += 1
        counts.fail("crash", case or Case("end", b"", True), "the control connection got no pong")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vsdream bench fuzz", description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000, help="fuzz frames to send")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vsdream-fuzz-") as tmp:
        with ServerProcess(Path(tmp) / "runs", *SERVER_ARGS) as srv:
            counts = run_fuzz(srv, args.frames, args.seed, args.max_seconds)
    out = asdict(counts)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"fuzz seed {args.seed}: {counts.frames_sent} frames in {counts.cases} connections, "
              f"{counts.seconds:.1f} s")
        print(f"crashes {counts.crashes}  hangs {counts.hangs}  silent drops {counts.silent_drops}  "
              f"internal errors {counts.internal_errors}  invalid server frames {counts.invalid_server_frames}")
        print(f"padded path values accepted {counts.padded_paths_accepted} of {counts.padded_paths_sent}")
        print(f"errors {counts.errors}: naming their field {counts.errors_naming_field}, "
              f"field errors without a field {counts.field_errors_without_field}; extra replies {counts.extra_replies}")
        for line in counts.failures:
            print("  " + line)
    bad = counts.crashes + counts.hangs + counts.silent_drops + counts.internal_errors + counts.invalid_server_frames \
        + counts.padded_paths_accepted
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
