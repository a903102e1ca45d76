"""Seeded fuzz against a real server subprocess on loopback (issue 14): thousands of hostile frames,
and no crash, no hang, no silent drop, no `internal` error. Rules: server/fuzz.py's docstring."""
from __future__ import annotations

import json
import random

import pytest

from server import protocol as P
from server.fuzz import SERVER_ARGS, run_fuzz
from server.fuzz_cases import expect, make_case
from server.launcher import ServerProcess


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("runs"), *SERVER_ARGS) as s:
        yield s


def test_the_cases_cover_every_message_type_and_every_kind_of_damage():
    rng, kinds, types, text = random.Random(14), set(), set(), ""
    for i in range(3000):
        case = make_case(rng, i * 10)
        kinds.add(case.kind)
        reader = P.FrameReader()
        try:
            frames = reader.feed(case.data)
        except P.FrameError:
            frames = []
        types |= {f.type for f in frames}
        text += json.dumps([f.header for f in frames], ensure_ascii=True)
    assert set(P.CLIENT_MESSAGES) <= types, set(P.CLIENT_MESSAGES) - types
    assert {"random-bytes", "huge-length", "zero-length", "bad-header", "bad-payload-size", "truncated",
            "short-payload", "deep-nesting", "deep-nesting-unparsable", "submit-with-payload", "messages",
            "pre-auth-message", "padded-path", "overflow-number"} <= kinds
    for needle in ("\\ud83d", "../../../../etc/passwd", "analytic:mesh=/etc/passwd", "\\u0000",
                   '"offset": 9223372036854775808', '"input_mesh"', '"output_dir"', '"phi_model"'):
        assert needle in text, needle


def test_expect_counts_frames_and_framing_errors():
    good = P.ping(nonce=1).encode()
    from server.fuzz_cases import Case
    assert expect(Case("x", good + good, True)) == (2, False)
    assert expect(Case("x", good + good[:-1], True)) == (1, True)
    assert expect(Case("x", b"\x00\x00\x00\x00", True)) == (0, True)


def test_fuzz_live_server_no_crash_hang_silent_drop_or_internal(srv):
    counts = run_fuzz(srv, frames=3000, seed=14, max_seconds=25)
    report = "\n".join(counts.failures)
    assert counts.frames_sent >= 500, f"only {counts.frames_sent} frames in {counts.seconds:.0f} s"
    assert counts.crashes == 0, report
    assert counts.hangs == 0, report
    assert counts.silent_drops == 0, report
    assert counts.internal_errors == 0, report
    assert counts.invalid_server_frames == 0, report
    assert counts.field_errors_without_field == 0, report
    assert counts.padded_paths_sent >= 20 and counts.padded_paths_accepted == 0, report
    assert counts.errors_naming_field > counts.cases // 3
    assert srv.proc.poll() is None
