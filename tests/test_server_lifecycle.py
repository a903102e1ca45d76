"""Server lifecycle with real processes: --parent-pid exit checkpoints the running job, a restarted
server lists it and resumes it to the end; a client that stops reading never stalls a job."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from server import protocol as P
from server.bench import SMOKE_OVERRIDES, tiny_job
from server.launcher import ServerProcess, job_ended, read_until


def test_parent_exit_checkpoints_and_restart_resumes_to_done(tmp_path):
    runs = tmp_path / "runs"
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    srv = ServerProcess(runs, "--parent-pid", str(parent.pid), "--device", "cpu").start()
    try:
        chan = srv.connect()
        overrides = tiny_job(8, checkpoint_every=1000)  # only the shutdown itself writes a checkpoint
        job_id = P.raise_for_error(chan.request(P.submit(preset="cpu-smoke", overrides=overrides)))["job_id"]
        read_until(chan, lambda f: f.type == "progress", timeout=300)
        parent.kill()
        parent.wait()
        assert srv.proc.wait(timeout=120) == 0, srv.log_tail()
        end = read_until(chan, job_ended(job_id), timeout=10)[-1]
        assert end.type == "cancelled" and end["reason"] == "shutdown" and end["checkpoint"]
        assert Path(end["checkpoint"]).is_file() and 1 <= end["step"] < 8
    finally:
        parent.kill()
        srv.stop()
    last_line = json.loads((runs / job_id / "events.jsonl").read_text().splitlines()[-1])
    assert last_line["type"] == "cancelled" and last_line["seq"] == end["seq"]

    with ServerProcess(runs, "--resume-unfinished", "--device", "cpu") as srv2:
        chan = srv2.connect()
        listed = {j["job_id"]: j for j in chan.request(P.list_jobs())["jobs"]}
        assert job_id in listed and listed[job_id]["state"] in ("queued", "running", "done")
        P.raise_for_error(chan.request(P.attach(job_id, from_seq=end["seq"])))
        got = read_until(chan, job_ended(job_id), timeout=300)
        assert got[0]["seq"] == end["seq"] + 1 and got[0].type == "queued" and got[0]["resumed"] is True
        stage = next(f for f in got if f.type == "stage")
        assert stage["resumed_from"] >= 1 and got[-1].type == "done"
        chan.close()


def test_a_client_that_stops_reading_does_not_stall_the_job(tmp_path):
    frames_total, size = 150, 256
    with ServerProcess(tmp_path / "runs", "--job-fn", "server.bench:preview_flood", "--device", "cpu") as srv:
        stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", srv.port))
        overrides = {"nerf": {"steps": frames_total, "resolution_schedule": [[0, size]]}, **SMOKE_OVERRIDES}
        stalled.sendall(P.hello(srv.token).encode() + P.submit(preset="cpu-smoke", overrides=overrides).encode())
        # the stalled client never reads from here on; a second client watches the same job
        reader = srv.connect()
        jobs = []
        while not jobs:
            jobs = reader.request(P.list_jobs())["jobs"]
        job_id = jobs[0]["job_id"]
        P.raise_for_error(reader.request(P.attach(job_id)))
        t0 = time.monotonic()
        got = read_until(reader, job_ended(job_id), timeout=120)
        assert got[-1].type == "done" and time.monotonic() - t0 < 60
        assert reader.request(P.ping(nonce="alive"))["nonce"] == "alive"

        chan = P.Channel(stalled)  # now read what the stalled client was left with
        late = read_until(chan, job_ended(job_id), timeout=30)
        kinds = [f.type for f in late]
        assert kinds[0] == "welcome" and "accepted" in kinds and kinds[-1] == "done"
        assert {"queued", "started", "stage"} <= set(kinds), "events that matter are never dropped"
        previews = [f for f in late if f.type == "preview"]
        assert 0 < len(previews) < frames_total, "previews were coalesced (latest wins) for the slow client"
        assert previews[-1]["step"] == frames_total, "the newest preview is the one it ends up with"
        chan.close()
        reader.close()
