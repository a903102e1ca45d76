"""Real engine jobs (analytic prior, cpu-smoke shrunk to a few 16² steps) through a real server subprocess:
streaming, artifacts, two clients, re-attach replay, cancel with checkpoint, a SIGKILLed worker, resume."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from server import protocol as P
from server.bench import tiny_job
from server.launcher import ServerProcess, job_ended, read_until


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("runs"), "--device", "cpu", "--cancel-grace", "60") as s:
        yield s


def submit(chan: P.Channel, overrides: dict, **kw) -> str:
    preset = "fast" if str(overrides.get("prior", "")).startswith("sd") else "cpu-smoke"  # cpu-smoke: analytic only
    reply = P.raise_for_error(chan.request(P.submit(preset=preset, overrides=overrides, **kw)))
    assert reply.type == "accepted" and reply["run_dir"].endswith(reply["job_id"])
    return reply["job_id"]


def jsonl(srv, job_id: str) -> list[dict]:
    lines = (srv.runs_dir / job_id / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def strip(header: dict) -> dict:
    return {k: v for k, v in header.items() if k not in ("payload_bytes",)}


def test_job_streams_to_done_and_artifacts_download_byte_identical(srv):
    chan = srv.connect()
    job_id = submit(chan, tiny_job(4))
    frames = read_until(chan, job_ended(job_id), timeout=300)
    types = [f.type for f in frames]
    assert types[:2] == ["queued", "started"] and types[-1] == "done", types
    assert {"stage", "progress", "preview", "artifact"} <= set(types)
    for f in frames:
        assert P.validate(f.header, "server") == [], f.header
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(1, len(frames) + 1)), "a reading client gets every event, in order"
    assert [strip(f.header) for f in frames] == jsonl(srv, job_id), "events.jsonl is what clients saw"
    progress = [f for f in frames if f.type == "progress"]
    assert progress[-1]["step"] == progress[-1]["total"] == 4 and "it_per_s" in progress[-1]
    for f in (f for f in frames if f.type == "preview"):
        w, h, rgb, normal = P.preview_images(f)
        assert len(rgb) == w * h * 3 == f["rgb_bytes"] and w == h == 16
    artifacts = [f for f in frames if f.type == "artifact"]
    for art in artifacts:
        got = P.raise_for_error(chan.request(P.get_artifact(job_id, art["name"])))
        on_disk = Path(art["path"]).read_bytes()
        assert got.payload == on_disk and got["size"] == len(on_disk) == art["size"]
        assert got["sha256"] == hashlib.sha256(on_disk).hexdigest()
    part = P.raise_for_error(chan.request(P.get_artifact(job_id, "spec.json", offset=3, length=10)))
    assert part.payload == (srv.runs_dir / job_id / "spec.json").read_bytes()[3:13]
    for bad in ("../../etc/passwd", "/etc/passwd", "ckpt", "result/nope.glb"):
        err = chan.request(P.get_artifact(job_id, bad))
        assert err.type == "error" and err["code"] == "not_found", bad
    listed = {j["job_id"]: j for j in chan.request(P.list_jobs())["jobs"]}
    assert listed[job_id]["state"] == "done" and listed[job_id]["step"] == 4
    chan.close()


def test_two_clients_and_reattach_replays_exactly_what_was_missed(srv):
    a, b = srv.connect(), srv.connect()
    job_id = submit(a, tiny_job(4, preview_every=1))
    assert P.raise_for_error(b.request(P.attach(job_id))).type == "attached"
    got_b = read_until(b, lambda f: f.type == "preview" and f.get("job_id") == job_id, timeout=300)
    b.close()  # disconnect mid-job: the job must carry on
    last_b = got_b[-1]["seq"]
    c = srv.connect()
    att = P.raise_for_error(c.request(P.attach(job_id, from_seq=last_b)))
    assert att["last_seq"] >= last_b
    got_c = read_until(c, job_ended(job_id), timeout=300)
    got_a = read_until(a, job_ended(job_id), timeout=300)
    assert got_a[-1].type == "done" and got_c[-1].type == "done"
    log = jsonl(srv, job_id)
    assert [f["seq"] for f in got_c] == [e["seq"] for e in log if e["seq"] > last_b], "exactly the missed events"
    assert [strip(f.header) for f in got_c] == log[last_b:]
    by_seq = {f["seq"]: f.payload for f in got_a}
    replayed = [f for f in got_c if f.type == "preview"]
    assert replayed and all(f.payload == by_seq[f["seq"]] for f in replayed), "replayed previews are byte-identical"
    # the first client saw the whole job too, and both saw the same events up to the disconnect
    assert [f["seq"] for f in got_b if f.get("job_id") == job_id] == list(range(1, last_b + 1))
    for client in (a, c):
        client.close()


def _wait_for_checkpoint(srv, job_id: str, chan: P.Channel, min_files: int = 1) -> list[P.Frame]:
    ckpt = srv.runs_dir / job_id / "ckpt"
    frames = []
    while len(list(ckpt.glob("*.pt"))) < min_files:
        frames += read_until(chan, lambda f: f.get("job_id") == job_id and f.type in ("progress", "preview",
                                                                                      *P.TERMINAL_EVENTS),
                             timeout=300)
        assert frames[-1].type not in P.TERMINAL_EVENTS, "the job ended before it could be interrupted"
    return frames


def test_cancel_mid_job_keeps_the_checkpoint(srv):
    chan = srv.connect()
    job_id = submit(chan, tiny_job(400, checkpoint_every=1))
    _wait_for_checkpoint(srv, job_id, chan)
    ack = P.raise_for_error(chan.request(P.cancel(job_id)))
    assert ack.type == "ack" and ack["what"] == "cancel" and ack["job_id"] == job_id
    end = read_until(chan, job_ended(job_id), timeout=120)[-1]
    assert end.type == "cancelled" and end["reason"] == "user" and end["checkpoint"]
    assert Path(end["checkpoint"]).is_file() and Path(end["checkpoint"]).parent == srv.runs_dir / job_id / "ckpt"
    assert 0 < end["step"] < 400 and end["stage"] == "nerf"
    again = chan.request(P.cancel(job_id))
    assert again["state"] == "cancelled", "cancelling twice is harmless"
    chan.close()


def test_killed_worker_fails_the_job_server_lives_and_the_resumed_job_finishes(srv):
    chan = srv.connect()
    job_id = submit(chan, tiny_job(6, checkpoint_every=2))
    frames = read_until(chan, lambda f: f.type == "started" and f["job_id"] == job_id)
    worker_pid = frames[-1]["worker_pid"]
    frames += _wait_for_checkpoint(srv, job_id, chan)
    os.kill(worker_pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
    end = read_until(chan, job_ended(job_id), timeout=60)[-1]
    assert end.type == "failed" and end["code"] == "worker_crashed" and end["hint"]
    assert str(worker_pid) in end["message"] and isinstance(end["log_tail"], str) and end["checkpoint"]
    if sys.platform != "win32":
        assert end["exit_status"] == -signal.SIGKILL and "SIGKILL" in end["message"]
    assert chan.request(P.ping(nonce=1))["nonce"] == 1, "the server survives its worker"
    listed = {j["job_id"]: j for j in chan.request(P.list_jobs())["jobs"]}
    assert listed[job_id]["state"] == "failed" and listed[job_id]["resumable"]

    reply = P.raise_for_error(chan.request(P.resume(job_id)))
    assert reply.type == "accepted" and reply["resumed"] is True
    got = read_until(chan, job_ended(job_id), timeout=300)
    assert all(f["job_id"] == job_id for f in got) and got[0].type == "queued"
    assert got[1].type == "started" and got[1]["worker_pid"] != worker_pid, "a fresh worker runs the next job"
    stage = next(f for f in got if f.type == "stage")
    assert stage["resumed_from"] >= 2 and got[-1].type == "done"
    assert got[0]["seq"] > end["seq"], "a resumed job continues its event sequence"
    err = chan.request(P.resume(job_id))
    assert err["code"] == "not_resumable"
    chan.close()


def test_missing_weights_fail_with_the_fetch_hint(srv, tmp_path):
    chan = srv.connect()
    job_id = submit(chan, {**tiny_job(2), "prior": "sd", "prompt": "a chair", "model": str(tmp_path / "no-model")})
    end = read_until(chan, job_ended(job_id), timeout=300)[-1]
    assert end.type == "failed" and end["code"] == "weights_missing" and end["hint"]
    assert "no-model" in end["message"] and end["traceback"]
    assert chan.request(P.ping(nonce=2))["nonce"] == 2
    chan.close()
