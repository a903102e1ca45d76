"""Input validation at the server's door (issue 25, findings 1, 9, 10, 12): real server subprocesses on
loopback, real sockets (pinned TLS for the remote one), real files.

- padded / Unicode-space path values: refused at submit over TLS, no run folder, no existence oracle;
- bad re-texture meshes, missing devices, zero-step stages: one early refusal, before any run folder,
  no traceback; queued jobs hear about a shutdown;
- requests that answered `internal`: over-long names and paths, numbers that overflow to infinity;
- uploads bounded in count and bytes; the frame deadline quotes the frame's own budget.
"""
from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from gltf_writer import Gltf, box, box_glb

from engine.devices import probe_devices
from server import protocol as P
from server.launcher import ServerProcess

FLOOD = ("--device", "cpu", "--job-fn", "server.bench:preview_flood")
ONE_STEP = {"nerf": {"steps": 1, "resolution_schedule": [[0, 16]]}}


def run_folders(srv: ServerProcess) -> set[str]:
    return {p.name for p in srv.runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}


def submit(srv: ServerProcess, overrides: dict, timeout: float = 60, **kw) -> P.Frame:
    preset = "fast" if str(overrides.get("prior", "")).strip().startswith("sd") else "cpu-smoke"  # cpu-smoke: analytic
    return srv.chan.request(P.submit(preset=preset, overrides={**ONE_STEP, **overrides}, attach=False, **kw),
                            timeout=timeout)


def refused_early(srv: ServerProcess, overrides: dict, code: str, **kw) -> P.Frame:
    """Submit; the reply is `code`, no run folder appeared, no spooled upload is left, no traceback."""
    before = run_folders(srv)
    got = submit(srv, overrides, **kw)
    assert got.type == "error" and got["code"] == code, got.header
    assert run_folders(srv) == before, "a refused submit must leave no run folder"
    uploads = srv.runs_dir / ".uploads"  # the connection drops a refused spool file right after replying
    deadline = time.monotonic() + 5
    while uploads.exists() and any(uploads.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not uploads.exists() or not any(uploads.iterdir()), "no spooled or checked upload is left"
    text = json.dumps(got.header)
    assert "Traceback" not in text and 'File "' not in text, text
    return got


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("outside")
    (d / "secret.glb").write_bytes(box_glb())
    return d


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """--allow-remote: TLS with a pinned certificate, paths confined to the run folder and trusted folders."""
    trusted = tmp_path_factory.mktemp("trusted")
    (trusted / "ref.glb").write_bytes(box_glb())
    env = {"HF_HUB_CACHE": str(tmp_path_factory.mktemp("hf"))}
    with ServerProcess(tmp_path_factory.mktemp("runs"), "--allow-remote", *FLOOD, "--trust-models", str(trusted),
                       env=env) as s:
        s.trusted = trusted
        s.chan = s.connect()
        yield s
        s.chan.close()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("runs"), *FLOOD) as s:
        s.chan = s.connect()
        yield s
        s.chan.close()


# ------------------------------------------------------------ finding 1: padded path values
PADDED = [
    ("prior", " analytic:mesh={secret}"),
    ("prior", "\u00a0analytic:marker,mesh={secret}"),
    ("prior", "analytic:marker, mesh={secret}"),
    ("prior", "analytic:mesh= {secret}"),
    ("prior", "analytic:mesh={secret}\u2003"),
    ("prior", "\u3000sd:{folder}"),
    ("prior", "sd: {folder}"),
    ("model", " {folder}"),
    ("phi_model", "{folder}\u00a0"),
    ("input_mesh", " {secret}"),
    ("model", "\u200b{folder}"),  # zero width space: not white space to str.strip(), still padding
    ("prior", "analytic:mesh=\ufeff{secret}"),
]


@pytest.mark.parametrize("field,template", PADDED, ids=[f"{f}:{t!r}" for f, t in PADDED])
def test_padded_paths_are_refused_over_tls_without_an_existence_oracle(remote, outside, field, template):
    """Was: the padded prior was accepted and the worker opened the outside file; a padded missing path
    answered "does not exist". Now: refused at submit, and an existing and a missing target get the same
    answer word for word (only the value differs)."""
    answers = []
    for name in ("secret.glb", "missing.glb"):
        value = template.format(secret=outside / name, folder=outside / name.replace(".glb", ""))
        overrides = {field: value, **({"mode": "retexture"} if field == "input_mesh" else {}),
                     **({"prompt": "a chair"} if value.strip().startswith("sd") else {})}
        got = refused_early(remote, overrides, "invalid_spec")
        assert [p["field"] for p in got["problems"]] == [field], got["problems"]
        assert "white space" in got["problems"][0]["allowed"], got["problems"]
        answers.append(json.dumps({**got.header, "re": None}, ensure_ascii=False).replace("secret", "X")
                       .replace("missing", "X"))
    assert answers[0] == answers[1], "the reply must not depend on whether the path exists"
    assert "exist" not in answers[1]


def test_the_one_spelling_is_checked_stored_and_loaded(remote):
    """The canonical value passes the policy and is stored exactly as checked (resolved in place)."""
    ok = P.raise_for_error(submit(remote, {"prior": f"analytic:mesh={remote.trusted / 'ref.glb'}"}))
    spec = json.loads((Path(ok["run_dir"]) / "spec.json").read_text(encoding="utf-8"))
    assert spec["prior"] == f"analytic:mesh={(remote.trusted / 'ref.glb').resolve()}"


# ------------------------------------------------------------ finding 10: no `internal`
def test_overlong_paths_on_a_confined_server_are_named_not_internal(remote):
    long_path = "/" + "a" * 4999
    for field, value in (("model", long_path), ("phi_model", long_path), ("prior", "sd:" + long_path),
                         ("input_mesh", long_path)):
        got = refused_early(remote, {field: value, "prompt": "a chair",
                                     **({"mode": "retexture"} if field == "input_mesh" else {})}, "invalid_spec")
        assert got["problems"][0]["field"] == field, got["problems"]
    # within the length bound, a 300-byte component (ENAMETOOLONG for the OS) is no server error either
    got = submit(remote, {"model": "org/" + "b" * 300})
    assert got.get("code") != "internal", got.header


@pytest.fixture(scope="module")
def finished(local):
    ok = P.raise_for_error(submit(local, {}))
    from server.launcher import job_ended, read_until
    chan = local.connect()
    chan.request(P.attach(ok["job_id"]), timeout=30)
    read_until(chan, job_ended(ok["job_id"]), timeout=120)
    chan.close()
    return ok["job_id"]


def test_an_overlong_artifact_name_is_a_named_problem_not_internal(local, finished):
    # P.get_artifact would refuse it on the client already: the raw request, as another client could send it
    got = local.chan.request(P.Frame({"type": "get_artifact", "job_id": finished, "name": "x" * 5000}), timeout=30)
    assert got["code"] == "invalid_message" and got["problems"][0]["field"] == "name", got.header
    got = local.chan.request(P.get_artifact(finished, "x" * 300), timeout=30)  # ENAMETOOLONG from the OS
    assert got["code"] == "not_found", got.header
    assert P.raise_for_error(local.chan.request(P.get_artifact(finished, "spec.json"), timeout=30))["size"] > 0


def _raw(chan: P.Channel, text: str) -> P.Frame:
    """Send a header written by hand (json.dumps cannot write 1e309) and return the reply to id "raw"."""
    raw = text.encode()
    chan.sock.sendall(struct.pack(">I", len(raw)) + raw)
    while True:
        got = chan.recv(timeout=30)
        assert got is not None, "the server closed the connection"
        if got.type == "error" or got.get("re") == "raw":
            return got


@pytest.mark.parametrize("text,field", [
    ('{"type":"ping","id":"raw","nonce":1e309}', "nonce"),
    ('{"type":"ping","id":"raw","nonce":{"deep":[1,-1e400]}}', "nonce.deep[1]"),
    ('{"type":"ping","id":1e309}', "id"),
    ('{"type":"submit","id":"raw","preset":"cpu-smoke","overrides":{"seed":1e309},"attach":false}', "overrides.seed"),
])
def test_a_number_that_overflows_to_infinity_is_named_and_the_link_lives(local, text, field):
    """Was: `internal` (the reply echoing inf could not be encoded)."""
    before = run_folders(local)
    got = _raw(local.chan, text)
    assert got["code"] == "invalid_message", got.header
    assert [p["field"] for p in got["problems"]] == [field] and "finite" in got["problems"][0]["allowed"]
    assert run_folders(local) == before
    assert local.chan.request(P.ping(nonce=7), timeout=30)["nonce"] == 7


# ------------------------------------------------------------ finding 9: early refusals
def _glb_points() -> bytes:
    g = Gltf()
    g.node(mesh=g.mesh({"attributes": {"POSITION": g.accessor(box()[0])}, "mode": 0}))
    return g.glb()


V, F = box()
BAD_MESHES = {
    "points.glb": (_glb_points(), "points or lines only"),
    "cloud.obj": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces|no triangle mesh"),
    "nan.glb": (box_glb(np.where(np.arange(8)[:, None] == 3, np.nan, V)), "NaN"),
    "oob.glb": (box_glb(faces=np.where(F == 7, 70, F)), "past its 8 vertices"),
    "noise.glb": (np.random.default_rng(0).bytes(4096), "could not be read"),
    "flat.glb": (box_glb(V * [1, 0, 0]), "no triangle with an area"),  # every face collapsed onto a line
}


@pytest.mark.parametrize("name", list(BAD_MESHES))
def test_bad_meshes_are_refused_at_submit_before_any_run_folder(local, name):
    data, says = BAD_MESHES[name]
    got = refused_early(local, {}, "invalid_mesh", mesh=data, mesh_name=name)
    assert re.search(says, got["message"]), got["message"]
    assert name in got["message"] and str(local.runs_dir) not in got["message"], got["message"]
    assert got["problems"][0]["field"] == "input_mesh" and got["hint"]


def test_a_mesh_name_of_just_a_suffix_is_refused(local):
    """Was: accepted, a run folder made, then invalid_mesh from the worker ('.glb' has no suffix to a loader).
    P.submit refuses it on the client already; this is the raw request another client could send."""
    before = run_folders(local)
    frame = P.Frame({"type": "submit", "preset": "cpu-smoke", "overrides": ONE_STEP, "attach": False,
                     "mesh_name": ".glb"}, box_glb())
    got = local.chan.request(frame, timeout=30)
    assert got["code"] == "invalid_message" and run_folders(local) == before, got.header
    assert got["problems"][0]["field"] == "mesh_name" and "name before the suffix" in got["problems"][0]["allowed"]


def test_a_good_mesh_is_still_accepted(local):
    ok = P.raise_for_error(submit(local, {}, mesh=box_glb(), mesh_name="box.glb"))
    assert (Path(ok["run_dir"]) / "input" / "box.glb").read_bytes() == box_glb()


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
def test_a_device_this_machine_lacks_is_refused_at_submit(local, device):
    count, mps = probe_devices() or (0, False)
    has = {"cuda": count > 0, "cuda:7": count > 7, "mps": mps}[device]
    if has:
        assert P.raise_for_error(submit(local, {"device": device}))
        return
    got = refused_early(local, {"device": device}, "invalid_spec")
    assert got["problems"][0]["field"] == "device" and "auto" in got["message"], got.header


def test_zero_steps_for_an_enabled_stage_names_enabled(local):
    got = refused_early(local, {"nerf": {"steps": 0, "resolution_schedule": [[0, 16]]}}, "invalid_spec")
    problem = got["problems"][0]
    assert problem["field"] == "nerf.steps" and "nerf.enabled = false" in problem["allowed"]


def test_make_spec_refuses_output_dir_and_unreal_devices():
    from engine.presets import make_spec
    from engine.spec import SpecError
    for overrides, field in (({"output_dir": "/etc"}, "output_dir"), ({"device": "cpu:999"}, "device")):
        with pytest.raises(SpecError) as info:
            make_spec("cpu-smoke", overrides)
        assert [p.field for p in info.value.problems] == [field]


def test_queued_jobs_hear_of_a_shutdown(tmp_path):
    """Was: a queued job's client saw only the connection close; now its job is cancelled (reason
    shutdown, so the next start resumes it) and the event arrives before the close."""
    with ServerProcess(tmp_path / "runs", *FLOOD) as srv:
        chan = srv.connect()
        long = {"nerf": {"steps": 1_000_000, "resolution_schedule": [[0, 16]]}}
        P.raise_for_error(chan.request(P.submit(preset="cpu-smoke", overrides=long, attach=False), timeout=60))
        queued = P.raise_for_error(chan.request(P.submit(preset="cpu-smoke", overrides=long), timeout=60))
        chan.request(P.shutdown(), timeout=30)
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                got = chan.recv(timeout=5)
            except (TimeoutError, ConnectionError, P.ProtocolError):
                break
            if got is None:
                break
            if got.get("job_id") == queued["job_id"]:
                seen.append(got)
        chan.close()
        assert [(f.type, f.get("reason")) for f in seen][-1:] == [("cancelled", "shutdown")], \
            [f.header for f in seen]


# ------------------------------------------------------------ finding 12: bounds and messages
def test_uploads_are_bounded_in_count_and_bytes(tmp_path):
    """Was: 200 × 1 MiB accepted in 1.6 s. With VSDREAM_UPLOAD_LIMIT=3,1 (3 uploads, 1 MiB) the fourth
    upload, and one that would pass 1 MiB, answer `busy` naming the bound, before any run folder."""
    big = Gltf()  # a valid GLB of 1.1 MiB: a box plus unused vertices
    pos = np.concatenate([V, np.zeros((100_000, 3), np.float32)])
    big.node(mesh=big.mesh({"attributes": {"POSITION": big.accessor(pos)},
                            "indices": big.accessor(F.reshape(-1).astype(np.uint32), np.uint32)}))
    with ServerProcess(tmp_path / "runs", *FLOOD, env={"VSDREAM_UPLOAD_LIMIT": "3,1"}) as srv:
        srv.chan = srv.connect()
        got = refused_early(srv, {}, "busy", mesh=big.glb(), mesh_name="big.glb")
        assert "limit 1 MiB" in got["message"], got["message"]
        for i in range(3):
            P.raise_for_error(submit(srv, {}, mesh=box_glb(), mesh_name=f"b{i}.glb"))
        got = refused_early(srv, {}, "busy", mesh=box_glb(), mesh_name="b3.glb")
        assert "3 uploaded meshes (limit 3)" in got["message"], got["message"]
        P.raise_for_error(submit(srv, {}))  # a job without an upload is not bounded by it
        srv.chan.close()


def test_the_frame_deadline_quotes_the_frames_own_budget(tmp_path):
    """--frame-timeout 1 plus 1 s per MiB: a 2 MiB payload has 3 s. Was: the message said 1 s."""
    with ServerProcess(tmp_path / "runs", *FLOOD, "--frame-timeout", "1") as srv:
        chan = srv.connect()
        raw = json.dumps({"type": "submit", "preset": "cpu-smoke", "mesh_name": "m.glb",
                          "payload_bytes": 2 << 20}).encode()
        t0 = time.monotonic()
        chan.sock.sendall(struct.pack(">I", len(raw)) + raw + b"x" * 10)
        got = chan.recv(timeout=30)
        while got is not None and got.type == "heartbeat":
            got = chan.recv(timeout=30)
        waited = time.monotonic() - t0
        chan.close()
    assert got is not None and got["code"] == "bad_frame", got
    assert "within 3 s" in got["message"] and 2.5 < waited < 10, (got["message"], waited)


def test_the_path_policy_itself_never_strips(tmp_path):
    """Second line behind the spec: a spec built without validation and a padded prior or path is refused
    by the policy as written (it used to strip, check the stripped value and store the padded one)."""
    from engine.spec import JobSpec
    from server.path_policy import PathPolicy
    policy = PathPolicy(confined=True, trusted=(tmp_path.resolve(),))
    inside = tmp_path / "ref.glb"
    for spec in (JobSpec(prior=f" analytic:mesh={inside}"), JobSpec(prior=f"analytic:marker, mesh={inside}"),
                 JobSpec(mode="retexture", input_mesh=f" {inside}"), JobSpec(model=f"{tmp_path}\u00a0")):
        problems = policy.check(spec, tmp_path / "run")
        assert len(problems) == 1, (spec, problems)
    ok = JobSpec(prior=f"analytic:mesh={inside}")
    assert policy.check(ok, tmp_path / "run") == [] and ok.prior == f"analytic:mesh={inside.resolve()}"
