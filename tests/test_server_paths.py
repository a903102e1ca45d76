"""Path confinement (issue 14, defect 4) through a real server subprocess: a confined server reads job
inputs only from the job's run folder and the folders it trusts; output_dir is always the server's."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from gltf_writer import box_glb

from server import protocol as P
from server.launcher import ServerProcess
from server.path_policy import PathPolicy, hub_cache_dir

FLOOD = ("--device", "cpu", "--job-fn", "server.bench:preview_flood")
ONE_STEP = {"nerf": {"steps": 1, "resolution_schedule": [[0, 16]]}}


@pytest.fixture(scope="module")
def trusted(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    (d / "my-sd").mkdir()
    (d / "ref.glb").write_bytes(b"glTF")
    outside = tmp_path_factory.mktemp("elsewhere")
    (outside / "secret.glb").write_bytes(b"secret")
    (d / "link.glb").symlink_to(outside / "secret.glb") if hasattr(os, "symlink") else None
    return d


@pytest.fixture(scope="module")
def confined(tmp_path_factory, trusted):
    env = {"HF_HUB_CACHE": str(tmp_path_factory.mktemp("hf"))}
    with ServerProcess(tmp_path_factory.mktemp("runs"), *FLOOD, "--confine-paths", "--trust-models", str(trusted),
                       env=env) as s:
        s.hf_cache = Path(env["HF_HUB_CACHE"])
        chan = s.connect()
        s.chan = chan
        yield s
        chan.close()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("runs"), *FLOOD) as s:
        chan = s.connect()
        s.chan = chan
        yield s
        chan.close()


def submit(srv, overrides: dict, **kw) -> P.Frame:
    # a Stable Diffusion prior takes a text preset (cpu-smoke is refused with it)
    preset = "fast" if str(overrides.get("prior", "")).startswith("sd") else "cpu-smoke"
    return srv.chan.request(P.submit(preset=preset, overrides={**ONE_STEP, **overrides}, attach=False, **kw),
                            timeout=30)


@pytest.mark.parametrize("overrides,field", [
    ({"mode": "retexture", "input_mesh": "/etc/passwd"}, "input_mesh"),
    ({"mode": "retexture", "input_mesh": "../../../etc/passwd"}, "input_mesh"),
    ({"mode": "retexture", "input_mesh": "~/.ssh/id_rsa"}, "input_mesh"),
    ({"prior": "analytic:mesh=/etc/passwd"}, "prior"),
    ({"prior": "analytic:marker,mesh=/etc/passwd"}, "prior"),
    ({"prior": "sd:/etc", "prompt": "a chair"}, "prior"),
    ({"model": "/etc"}, "model"),
    ({"model": "../.."}, "model"),
    ({"phi_model": "/usr/lib"}, "phi_model"),
    ({"output_dir": "/tmp/anywhere"}, "output_dir"),
])
def test_confined_server_refuses_paths_outside_its_roots(confined, trusted, overrides, field):
    got = submit(confined, overrides)
    assert got.type == "error" and got["code"] == "invalid_spec", got.header
    assert [p["field"] for p in got["problems"]] == [field], got["problems"]
    allowed = got["problems"][0]["allowed"]
    if field == "output_dir":
        assert "run folder" in allowed
    else:
        assert "run folder" in allowed and str(trusted.resolve()) in allowed, allowed


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_a_symlink_inside_a_trusted_folder_pointing_out_is_refused(confined, trusted):
    got = submit(confined, {"mode": "retexture", "input_mesh": str(trusted / "link.glb")})
    assert got["code"] == "invalid_spec" and got["problems"][0]["field"] == "input_mesh"


def _spec_of(srv, reply: P.Frame) -> dict:
    return json.loads((Path(reply["run_dir"]) / "spec.json").read_text(encoding="utf-8"))


def test_confined_server_accepts_trusted_folders_hub_ids_and_uploads(confined, trusted):
    ok = P.raise_for_error(submit(confined, {"model": str(trusted / "my-sd"), "phi_model": "shared",
                                             "prior": f"analytic:mesh={trusted / 'ref.glb'}"}))
    spec = _spec_of(confined, ok)
    assert spec["model"] == str((trusted / "my-sd").resolve()) and spec["phi_model"] == "shared"
    assert spec["prior"] == f"analytic:mesh={(trusted / 'ref.glb').resolve()}"
    hub = P.raise_for_error(submit(confined, {"model": "stabilityai/stable-diffusion-2-1-base",
                                              "prior": f"sd:{confined.hf_cache / 'snap'}", "prompt": "a chair"}))
    assert _spec_of(confined, hub)["model"] == "stabilityai/stable-diffusion-2-1-base"
    mesh = box_glb()  # a real mesh: the server checks an upload before it makes a run folder
    up = P.raise_for_error(submit(confined, {"prior": "analytic:mesh=input/ref.glb"}, mesh=mesh,
                                  mesh_name="ref.glb"))
    spec = _spec_of(confined, up)
    run = Path(up["run_dir"]).resolve()
    assert spec["input_mesh"] == str(run / "input" / "ref.glb") and spec["mode"] == "retexture"
    assert spec["prior"] == f"analytic:mesh={run / 'input' / 'ref.glb'}", "relative = inside the run folder"
    assert (run / "input" / "ref.glb").read_bytes() == mesh


def test_local_engine_keeps_taking_the_users_absolute_paths(local, tmp_path):
    ref = tmp_path / "ref.glb"
    ref.write_bytes(b"glTF")
    ok = P.raise_for_error(submit(local, {"prior": f"analytic:mesh={ref}", "model": str(tmp_path)}))
    spec = _spec_of(local, ok)
    assert spec["prior"] == f"analytic:mesh={ref}" and spec["model"] == str(tmp_path)
    got = submit(local, {"output_dir": str(tmp_path)})
    assert got["code"] == "invalid_spec" and got["problems"][0]["field"] == "output_dir"


def test_allow_remote_always_confines_and_trusts_the_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    remote = PathPolicy.for_server(allow_remote=True, confine=False, trust=[tmp_path / "m"])
    assert remote.confined and remote.trusted == ((tmp_path / "m").resolve(), (tmp_path / "hub").resolve())
    assert not PathPolicy.for_server(allow_remote=False, confine=False).confined
    assert PathPolicy.for_server(allow_remote=False, confine=True).confined


@pytest.mark.parametrize("env", [{}, {"HF_HOME": "/x/hf"}, {"HF_HUB_CACHE": "/y/c", "HF_HOME": "/x"},
                                 {"XDG_CACHE_HOME": "/z"}])
def test_hub_cache_matches_the_engines(monkeypatch, env):
    from engine.priors.weights import hub_cache_dir as engine_hub_cache_dir  # imports torch: once per suite
    for k in ("HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert hub_cache_dir() == engine_hub_cache_dir()
