"""The server under a studio's load (issue 25, findings 2-8), with real server processes, sockets and files.

Each test runs a small version of a `vsdream bench server --load` case (server/bench_load.py)
and asserts the bound docs/protocol.md states; the benchmark runs the full sizes."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from server import protocol as P
from server.bench import SMOKE_OVERRIDES
from server.bench_load import FLOOD_ARGS, bench_downloads, bench_flood, bench_history, bench_preauth, bench_replay
from server.launcher import ServerProcess, job_ended, read_until


# ----------------------------------------------------------------------------- finding 3
def test_non_reading_downloaders_stay_bounded_and_are_freed_on_close(tmp_path):
    """4 clients pipeline 2 × 16 MiB get_artifact and read nothing: the server used to hold every
    reply whole (+128 MiB, kept after close); streamed from the file it holds a few MiB."""
    got = bench_downloads(tmp_path, clients=4, mib=16, requests=2, hold_s=1.0, settle_s=1.5)
    assert got["complete"], got
    assert got["rss_held"] - got["rss_before"] < 40, got
    assert got["rss_after"] - got["rss_before"] < 30, got


# ----------------------------------------------------------------------------- finding 4
def test_a_flooding_job_is_held_back_by_the_server_and_cancels_at_once(tmp_path):
    """preview_flood (server-encoded PNGs) with attached readers: memory stays flat (the worker waits
    for credits) and a cancel comes back as a recorded `cancelled` within seconds."""
    got = bench_flood(tmp_path, clients=5, size=256, seconds=4.0)
    assert got["rss_peak"] - got["rss_before"] < 80, got
    assert got["ended"] == "cancelled" and got["cancel_s"] < 5.0, got
    assert got["state_listed"] == "cancelled", got


# ----------------------------------------------------------------------------- finding 5
def test_a_long_history_pages_newest_first_before_and_after_restart_without_blocking_pings(tmp_path):
    got = bench_history(tmp_path, jobs=2000, prompt_chars=3500, listers=3, seconds=2.0)
    for phase in ("first_start", "after_restart"):
        assert got[f"{phase}_listed"] == 2000, got
        assert got[f"{phase}_newest_first"] is True, got
        assert f"{phase}_wait_workers_ready" not in got, got
        assert got[f"{phase}_pages_read"] > 0 and got[f"{phase}_pings"] > 0, got
        assert got[f"{phase}_ping_worst_ms"] < 50, got


def test_list_jobs_pages_are_bounded_and_limit_is_checked(tmp_path):
    from server.bench_load import write_run
    runs = tmp_path / "runs"
    t = time.time() - 100
    for i in range(30):
        write_run(runs, f"job-{i:03d}", prompt=f"{i} " + "x" * 60000, created=t + i)  # ~60 KB each
    with ServerProcess(runs, *FLOOD_ARGS) as srv:
        chan = srv.connect()
        page = P.raise_for_error(chan.request(P.list_jobs(limit=500)))
        assert page["total"] == 30 and 0 < len(page["jobs"]) < 30, "a page stops at its byte budget"
        assert page["jobs"][0]["job_id"] == "job-029" and page["next_offset"] == len(page["jobs"])
        rest = P.raise_for_error(chan.request(P.list_jobs(offset=page["next_offset"], limit=500)))
        assert rest["jobs"][0]["job_id"] == f"job-{29 - page['next_offset']:03d}"
        bad = chan.request(P.Frame({"type": "list_jobs", "limit": 0}))
        assert bad.type == "error" and bad["problems"][0]["field"] == "limit", bad.header


# ----------------------------------------------------------------------------- finding 6
def test_silent_connections_before_hello_are_capped(tmp_path):
    got = bench_preauth(tmp_path, conns=200, hold_s=1.0, cap=16)
    assert got["closed_by_server"] >= 200 - 16 - 4, got
    # fds_during may catch refusals in flight on a busy machine; once they are done, the cap holds
    assert got["fds_settled"] - got["fds_before"] <= 16 + 4, got
    assert got["hello_after_ms"] < 3000, got


# ----------------------------------------------------------------------------- finding 8
def test_a_reply_overtakes_a_long_replay(tmp_path):
    got = bench_replay(tmp_path, clients=3, events=3000)
    assert got["replies"] == 3, got
    # what the socket already holds (≤ 1 MiB of transport buffer) comes first, not the rest of the replay
    assert got["events_before_reply_max"] < got["events"] // 3, got


# ----------------------------------------------------------------------------- finding 7
def _slow_cancel_job(chan: P.Channel, step_s: float, save_s: float) -> str:
    overrides = {"prompt": f"step_s={step_s} save_s={save_s}", "nerf": {"steps": 1000}, **SMOKE_OVERRIDES}
    job_id = P.raise_for_error(chan.request(P.submit(preset="cpu-smoke", overrides=overrides)))["job_id"]
    read_until(chan, lambda f: f.type == "progress" and f.get("job_id") == job_id, timeout=60)
    return job_id


def test_cancel_grace_starts_when_the_checkpoint_write_starts_and_orphans_are_removed(tmp_path):
    runs = tmp_path / "runs"
    with ServerProcess(runs, "--device", "cpu", "--job-fn", "server.bench:slow_cancel", "--cancel-grace", "1.0") as srv:
        chan = srv.connect()
        # the rest of the step (≤ 0.7 s) and the write (0.6 s) together outlast the 1 s grace; the write
        # alone does not (a step longer than the grace would be killed before the job can see its stop)
        job_id = _slow_cancel_job(chan, step_s=0.7, save_s=0.6)
        ckpt = runs / job_id / "ckpt"
        orphan = ckpt / "nerf-00000000.pt.k1ll3d.tmp"  # left by an earlier worker killed mid-write
        orphan.write_bytes(b"\0" * 4096)
        chan.send(P.cancel(job_id))
        end = read_until(chan, job_ended(job_id), timeout=30)[-1]
        assert end.type == "cancelled" and end["checkpoint"], end.header
        assert Path(end["checkpoint"]).is_file()
        assert not list(ckpt.glob("*.tmp")), "the save removed the orphaned temp file"

        # a write that outlasts the grace is killed: its temp file is removed when the run is over
        job_id = _slow_cancel_job(chan, step_s=0.1, save_s=30)
        chan.send(P.cancel(job_id))
        end = read_until(chan, job_ended(job_id), timeout=30)[-1]
        assert end.type == "cancelled", end.header
        ckpt = runs / job_id / "ckpt"
        deadline = time.monotonic() + 10
        while list(ckpt.glob("*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not list(ckpt.glob("*.tmp")), "the killed write's temp file was removed"


def test_checkpoint_store_clears_orphans_on_save_and_resume(tmp_path):
    import torch

    from engine.checkpoint import CheckpointStore
    store = CheckpointStore(tmp_path)
    for name in ("nerf-00000004.pt.a1b2.tmp", "texture-00000010.pt.zz.tmp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt.q.tmp").write_bytes(b"keep")  # not a checkpoint's
    assert store.latest("nerf") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt.q.tmp"]
    (tmp_path / "nerf-00000005.pt.c3.tmp").write_bytes(b"x")
    store.save("nerf", 6, {"w": torch.zeros(1)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nerf-00000006.pt", "notes.txt.q.tmp"]


# ----------------------------------------------------------------------------- finding 2
@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: a real file system that fills up (needs mount rights: root or CAP_SYS_ADMIN)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the disk-full path is not exercised")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_a_full_disk_fails_the_job_clearly_and_resume_works_once_there_is_room(tmp_path, small_disk):
    runs = small_disk / "runs"
    srv = ServerProcess(runs, *FLOOD_ARGS, log_path=tmp_path / "server.log").start()
    try:
        chan = srv.connect()
        overrides = {"prompt": "engine-png", "nerf": {"steps": 1_000_000, "resolution_schedule": [[0, 16]]},
                     **SMOKE_OVERRIDES}
        job_id = P.raise_for_error(chan.request(P.submit(preset="cpu-smoke", overrides=overrides)))["job_id"]
        read_until(chan, lambda f: f.type == "progress", timeout=60)
        filler = _fill(small_disk)
        end = read_until(chan, job_ended(job_id), timeout=30)[-1]
        assert end.type == "failed" and end["code"] == "disk_full", end.header
        assert "full" in end["message"] and "Traceback" not in end["message"]
        listed = P.raise_for_error(chan.request(P.list_jobs()))["jobs"]
        assert listed[0]["job_id"] == job_id and listed[0]["state"] == "failed"
        assert P.raise_for_error(chan.request(P.cancel(job_id)))["state"] == "failed"

        before = sorted(p.name for p in runs.iterdir())
        refused = chan.request(P.submit(preset="cpu-smoke", overrides=overrides))
        assert refused.type == "error" and refused["code"] == "disk_full", refused.header
        assert sorted(p.name for p in runs.iterdir()) == before, "no half run folder is left"
        upload = chan.request(P.submit(preset="cpu-smoke", overrides=overrides, mesh=os.urandom(3 << 20),
                                       mesh_name="chair.glb"), timeout=30)
        assert upload.type == "error" and upload["code"] == "disk_full", upload.header
        assert chan.request(P.ping(nonce=7), timeout=10)["nonce"] == 7, "the connection survives"

        filler.unlink()
        P.raise_for_error(chan.request(P.resume(job_id)))
        read_until(chan, lambda f: f.type == "progress" and f.get("job_id") == job_id, timeout=60)
        chan.send(P.cancel(job_id))
        end = read_until(chan, job_ended(job_id), timeout=30)[-1]
        assert end.type == "cancelled" and end["reason"] == "user", end.header
        t0 = time.monotonic()
        assert srv.stop() == 0 and time.monotonic() - t0 < 20, "shutdown waits for no zombie"
    finally:
        srv.stop()
