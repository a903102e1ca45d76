"""The add-on's remote session through real bpy: TLS pinned to the engine's fingerprint.

A real server on 127.0.0.1 started with --allow-remote stands in for the engine on another
machine; the add-on connects the way the preferences tell it to, and downloads a result over TLS.
"""
from __future__ import annotations

import ssl

import pytest

bpy = pytest.importorskip("bpy")

from addon_helpers import ADDON, ROOT, pump_until, remote_server, write_finished_run  # noqa: E402,F401

TOKEN = "remote-tls-secret"


def _rt():
    return bpy.context.window_manager.vsdream


def _prefs():
    return bpy.context.preferences.addons[ADDON].preferences


def _finished_run(runs, job_id: str):
    """A finished job's folder whose result GLB spans many TLS records (a sphere, ~100 kB)."""
    import trimesh
    run = runs / job_id
    (run / "result").mkdir(parents=True)
    glb = run / "result" / "mesh.glb"
    glb.write_bytes(trimesh.creation.icosphere(subdivisions=4).export(file_type="glb"))
    write_finished_run(run, {"prompt": "a ball", "mode": "text", "seed": 5}, [glb])
    return glb


@pytest.fixture
def remote_engine(tmp_path):
    """(ready line, server runs folder) of a real --allow-remote server with one finished job.

    Request it before `addon`, so the add-on disconnects before the server goes away."""
    runs = tmp_path / "server_runs"
    _finished_run(runs, "tls-job")
    with remote_server(runs, TOKEN, tmp_path / "server.log", "--job-fn", "server.bench:preview_flood") as ready:
        yield ready, runs


def _use_remote(port: int, fingerprint: str, host: str = "127.0.0.1") -> None:
    prefs = _prefs()
    prefs.connection_mode, prefs.remote_host, prefs.remote_port = "REMOTE", host, port
    prefs.remote_token, prefs.remote_fingerprint = TOKEN, fingerprint


def test_remote_session_over_pinned_tls_downloads_a_result(remote_engine, addon, tmp_path):
    from blender_addon import preferences, pump
    from blender_addon._protocol_import import protocol
    from blender_addon.job_state import JobView
    ready, runs = remote_engine
    assert ready["tls"] is True
    # pasted without colons and in lower case: still the same fingerprint
    _use_remote(ready["port"], ready["fingerprint"].replace(":", "").lower())
    session = pump.SESSION
    session.job = JobView(job_id="tls-job", prompt="a ball", seed=5, state="QUEUED")
    session.send(protocol.attach("tls-job"), cfg=preferences.connect_config())
    assert pump_until(lambda: _rt().imported != "", 30), (_rt().engine_message, _rt().job_state, _rt().error_message)
    assert isinstance(session.conn.sock, ssl.SSLSocket), "a remote session must run over TLS"
    local = tmp_path / "user" / "runs" / "downloads" / "tls-job" / "mesh.glb"
    assert local.read_bytes() == (runs / "tls-job" / "result" / "mesh.glb").read_bytes()
    assert bpy.data.objects[_rt().imported]["vsdream_job_id"] == "tls-job"
    # the reader keeps up over TLS: heartbeats bring a stalled view back
    assert session.check_stalled(0.0)
    pump.refresh()
    assert _rt().engine_state == "STALLED"
    assert pump_until(lambda: _rt().engine_state == "READY", 10), _rt().engine_message


def test_wrong_fingerprint_is_refused_with_a_clear_message(remote_engine, addon):
    ready, _ = remote_engine
    wrong = "AB:" * 31 + "CD"
    _use_remote(ready["port"], wrong)
    bpy.ops.vsdream.start_engine()
    assert pump_until(lambda: _rt().engine_state == "ERROR", 20), _rt().engine_message
    msg = _rt().engine_message
    assert msg.startswith("Refused the remote engine"), msg
    assert wrong in msg and ready["fingerprint"] in msg and "preferences" in msg


def test_remote_host_without_fingerprint_is_refused_before_sending_anything(addon):
    _use_remote(9, "", host="192.0.2.10")  # TEST-NET-1: never reached, nothing is sent
    bpy.ops.vsdream.start_engine()
    assert pump_until(lambda: _rt().engine_state == "ERROR", 10), _rt().engine_message
    msg = _rt().engine_message
    assert "192.0.2.10 is another machine" in msg and "Fingerprint" in msg and "Nothing was sent" in msg


def test_malformed_fingerprint_names_the_setting(addon):
    _use_remote(9, "12:34")
    bpy.ops.vsdream.start_engine()
    assert pump_until(lambda: _rt().engine_state == "ERROR", 10), _rt().engine_message
    assert "Remote engine fingerprint in the add-on preferences" in _rt().engine_message
    assert "found 4 hex digits" in _rt().engine_message
