"""The add-on driving the real engine server subprocess (cpu-smoke preset, analytic prior).

Each test pumps the session the way Blender's timer would (timers do not fire under the bpy
module) and looks only at what a user sees: panel state, the preview image, imported objects.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

bpy = pytest.importorskip("bpy")

from addon_helpers import ADDON, local_engine, pump_until  # noqa: E402,F401

# small but real: SDS at 48² learns the reference scene's colours (marker included) in 40 steps
TINY = {"nerf": {"steps": 40, "method": "sds", "resolution_schedule": [[0, 48]], "samples_per_ray": 32,
                 "preview_every": 10, "checkpoint_every": 20},
        "geometry": {"steps": 5, "grid_resolution": 32, "preview_every": 5, "checkpoint_every": 5},
        "texture": {"steps": 15, "method": "sds", "resolution_schedule": [[0, 48]], "preview_every": 5,
                    "checkpoint_every": 15},
        "export": {"texture_size": 256, "face_target": 2000}, "camera": {"eval_views": 4}}
# a job that runs until stopped, with cheap steps (32² renders, 16 samples per ray)
LONG = {"nerf": {"steps": 100000, "preview_every": 5, "checkpoint_every": 10, "resolution_schedule": [[0, 32]],
                 "samples_per_ray": 16}}


def _rt():
    return bpy.context.window_manager.vsdream


def _session():
    from blender_addon.session import SESSION
    return SESSION


def _reference_scene_settings(prompt: str = "") -> None:
    """What a user sets for the analytic reference scene: its preset (which brings the camera
    distance and field of view it was tuned for) and prior."""
    s = bpy.context.scene.vsdream
    s.prompt, s.preset, s.prior, s.texture_size = prompt, "cpu-smoke", "analytic:marker", "256"
    assert (s.distance_min, s.distance_max) == pytest.approx((2.2, 2.6))


def _terminal() -> bool:
    return _rt().job_state in ("DONE", "FAILED", "CANCELLED")


def _marker_centre(obj, share: float = 0.02):
    """Where the most magenta texels of the baked texture sit on the mesh: the world-space centre
    of the top `share` of faces by blue-minus-green (the body is orange, b < g; the marker disc is
    magenta, b >> g), and their mean score. A mirrored or rotated import moves this centre."""
    bpy.context.view_layer.update()  # matrix_world follows the location set at import
    mat = obj.active_material
    img = next(n.image for n in mat.node_tree.nodes if n.type == "TEX_IMAGE" and n.image)
    w, h = img.size
    px = [0.0] * (w * h * 4)
    img.pixels.foreach_get(px)
    mesh, uv = obj.data, obj.data.uv_layers.active.data
    scored = []
    for poly in mesh.polygons:
        u = sum(uv[i].uv[0] for i in poly.loop_indices) / poly.loop_total
        v = sum(uv[i].uv[1] for i in poly.loop_indices) / poly.loop_total
        x, y = min(w - 1, max(0, int(u * w))), min(h - 1, max(0, int(v * h)))
        r, g, b = px[4 * (y * w + x):4 * (y * w + x) + 3]
        if r > 0.4:  # not the dark base, eyes or the cyan arm
            scored.append((b - g, obj.matrix_world @ poly.center))
    scored.sort(key=lambda t: t[0], reverse=True)
    top = scored[:max(5, int(share * len(mesh.polygons)))]
    centre = sum((c for _, c in top), type(top[0][1])()) / len(top)
    return centre, sum(m for m, _ in top) / len(top)


def test_generate_end_to_end(addon):
    local_engine()
    _reference_scene_settings()
    bpy.context.scene.cursor.location = (3.0, 0.0, 0.0)
    assert bpy.ops.vsdream.generate(overrides=json.dumps(TINY)) == {"FINISHED"}
    assert _rt().engine_state == "STARTING" and _rt().job_state == "SUBMITTING"  # returned at once
    assert pump_until(_terminal, 240), (_rt().job_state, _rt().stage, _rt().step)
    rt = _rt()
    assert rt.job_state == "DONE", f"{rt.error_code}: {rt.error_message}"
    assert rt.preview_frames >= 2
    img = bpy.data.images["VSDream Preview"]
    px = [0.0] * (img.size[0] * img.size[1] * 4)
    img.pixels.foreach_get(px)
    assert max(px[0::4]) - min(px[0::4]) > 0.1  # a real render, not a blank image
    coll = bpy.data.collections["VSDream"]
    objs = [o for o in coll.objects if o.get("vsdream_job_id") == rt.job_id]
    assert len(objs) == 1 and rt.imported == objs[0].name
    obj = objs[0]
    assert obj.name.startswith("VSDream reference scene")
    assert obj["vsdream_run_dir"] == _session().job.run_dir and obj["vsdream_seed"] == 0
    assert tuple(obj.location) == pytest.approx((3.0, 0.0, 0.0), abs=1e-4)
    assert obj.type == "MESH" and obj.active_material is not None
    assert any(n.type == "TEX_IMAGE" and n.image for n in obj.active_material.node_tree.nodes)
    centre, score = _marker_centre(obj)
    rel = centre - obj.location
    assert score > 0.05, f"no magenta on the texture (best blue-minus-green {score:.2f})"
    assert rel.y < -0.1 and abs(rel.x) < 0.2, (tuple(rel), score)  # the front marker faces −Y
    # the history lists the finished job
    assert any(i.job_id == rt.job_id and i.status == "done" for i in rt.history)


def test_cancel_mid_job(addon):
    local_engine()
    _reference_scene_settings()
    bpy.ops.vsdream.generate(overrides=json.dumps(LONG))
    assert pump_until(lambda: _rt().step >= 1, 120), (_rt().job_state, _rt().error_message)
    assert bpy.ops.vsdream.cancel.poll() and not bpy.ops.vsdream.generate.poll()
    assert bpy.ops.vsdream.cancel() == {"FINISHED"}
    assert pump_until(_terminal, 60)
    assert _rt().job_state == "CANCELLED" and _rt().engine_state in ("READY", "BUSY")
    assert bpy.ops.vsdream.generate.poll()  # a new job can start


def test_engine_killed_mid_job_then_start_engine_recovers(addon):
    local_engine()
    _reference_scene_settings()
    bpy.ops.vsdream.generate(overrides=json.dumps(LONG))
    assert pump_until(lambda: _rt().step >= 1, 120), (_rt().job_state, _rt().error_message)
    _session().engine.proc.kill()  # the engine dies (crash, OOM killer, user kill)
    assert pump_until(lambda: _rt().engine_state == "ERROR", 30)
    rt = _rt()
    assert rt.job_state == "FAILED" and "Start engine" in rt.error_message
    assert "engine stopped" in rt.engine_message and rt.log_path.endswith("engine.log")
    assert bpy.ops.vsdream.start_engine.poll()
    bpy.ops.vsdream.start_engine()
    assert pump_until(lambda: _rt().engine_state == "READY", 60), _rt().engine_message
    assert bpy.ops.vsdream.generate.poll()
    # the interrupted job is in the history and resumes on the new engine
    job_id = rt.job_id
    bpy.ops.vsdream.refresh_history()
    rt.history_index = [i.job_id for i in rt.history].index(job_id)
    assert rt.history[rt.history_index].status == "unfinished"
    assert bpy.ops.vsdream.resume_job() == {"FINISHED"}
    assert pump_until(lambda: _rt().job_state in ("QUEUED", "RUNNING"), 30), (_rt().job_state, _rt().error_message)
    assert _rt().job_id == job_id
    bpy.ops.vsdream.cancel()
    assert pump_until(_terminal, 60) and _rt().job_state == "CANCELLED"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_engine_reachable_gives_a_clear_message(addon, capfd):
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.connection_mode, prefs.remote_port, prefs.remote_token = "REMOTE", _free_port(), "x"
    _reference_scene_settings()
    bpy.ops.vsdream.generate()
    assert pump_until(lambda: _rt().engine_state == "ERROR", 20)
    rt = _rt()
    assert rt.engine_message.startswith(f"No engine reachable at 127.0.0.1:{prefs.remote_port}")
    assert rt.job_state == "FAILED" and rt.error_code == "engine_unavailable"
    # local mode with a wrong interpreter path says what to fix
    prefs.connection_mode, prefs.engine_python = "LOCAL", "/no/such/python"
    bpy.ops.vsdream.start_engine()
    assert pump_until(lambda: _rt().engine_state == "ERROR", 20)
    assert "engine Python not found" in _rt().engine_message and "preferences" in _rt().engine_message
    assert "Traceback" not in capfd.readouterr().err


def test_retexture_selected_cube(addon):
    local_engine()
    _reference_scene_settings()
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 0.0, 0.0))
    cube = bpy.context.active_object
    old = bpy.data.materials.new("Original")
    cube.data.materials.append(old)
    n_verts, mesh = len(cube.data.vertices), cube.data
    assert bpy.ops.vsdream.retexture.poll()
    assert bpy.ops.vsdream.retexture(overrides=json.dumps(TINY)) == {"FINISHED"}
    assert pump_until(_terminal, 240), (_rt().job_state, _rt().stage, _rt().step)
    assert _rt().job_state == "DONE", f"{_rt().error_code}: {_rt().error_message}"
    assert bpy.data.objects.get(cube.name) is cube and cube.data is mesh
    assert len(cube.data.vertices) == n_verts
    # the texture was baked into the cube's own UVs (the swapped material reads them)
    assert _session().job.result["export"]["particles"][0]["uv_method"] == "input"
    mat = cube.active_material
    assert mat is not None and mat != old and mat.name.startswith("VSDream")
    assert any(n.type == "TEX_IMAGE" and n.image for n in mat.node_tree.nodes)
    assert old.use_fake_user and bpy.data.materials.get("Original") is old  # kept in the file


def _finished_run(runs, job_id: str) -> None:
    """A run folder as a finished job leaves it: spec, events (artifact + done), a result GLB."""
    run = runs / job_id
    (run / "result").mkdir(parents=True)
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    mat = bpy.data.materials.new("baked")
    if mat.node_tree is None:  # Blender < 5 makes node-less materials
        mat.use_nodes = True
    tex = mat.node_tree.nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.new("baked", 8, 8)
    tex.image.pixels.foreach_set([0.5] * 8 * 8 * 4)
    tex.image.pack()
    mat.node_tree.links.new(tex.outputs["Color"], mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
    cube.data.materials.append(mat)
    glb = run / "result" / "mesh.glb"
    bpy.ops.export_scene.gltf(filepath=str(glb), export_format="GLB", use_selection=True)
    bpy.data.objects.remove(cube)
    (run / "spec.json").write_text(json.dumps({"prompt": "a box", "mode": "text", "seed": 3}))
    events = [{"type": "queued", "seq": 1}, {"type": "started", "seq": 2},
              {"type": "artifact", "seq": 3, "name": "mesh.glb", "path": str(glb), "size": glb.stat().st_size},
              {"type": "done", "seq": 4, "result": {}}]
    (run / "events.jsonl").write_text("".join(json.dumps({**e, "job_id": job_id, "time": 1.0}) + "\n"
                                              for e in events))


def test_remote_engine_results_are_downloaded(addon, tmp_path):
    """A remote engine's files live on another machine: the add-on fetches them over the socket."""
    from blender_addon import preferences, pump
    from blender_addon._protocol_import import protocol
    from blender_addon.job_state import JobView
    runs = tmp_path / "server_runs"
    _finished_run(runs, "remote-job")
    env = {**os.environ, "VSDREAM_TOKEN": "remote-secret"}
    server = subprocess.Popen([sys.executable, "-m", "server", "--port", "0", "--runs-dir", str(runs)],
                              stdout=subprocess.PIPE, env=env)
    try:
        ready = protocol.parse_ready_line(server.stdout.readline())
        prefs = bpy.context.preferences.addons[ADDON].preferences
        prefs.connection_mode, prefs.remote_port, prefs.remote_token = "REMOTE", ready["port"], "remote-secret"
        session = _session()
        session.job = JobView(job_id="remote-job", prompt="a box", seed=3, state="QUEUED")
        session.send(protocol.attach("remote-job"), cfg=preferences.connect_config())
        assert pump_until(lambda: _rt().imported != "", 30), (_rt().job_state, _rt().error_message)
        obj = bpy.data.objects[_rt().imported]
        local = tmp_path / "user" / "runs" / "downloads" / "remote-job" / "mesh.glb"
        assert local.read_bytes() == (runs / "remote-job" / "result" / "mesh.glb").read_bytes()
        assert obj["vsdream_job_id"] == "remote-job" and obj["vsdream_prompt"] == "a box"
        assert _rt().engine_state in ("READY", "BUSY") and pump.SESSION.remote
        # silence beyond the stall limit marks the engine stalled; the next heartbeat revives it
        assert session.check_stalled(0.0)
        pump.refresh()
        assert _rt().engine_state == "STALLED" and "no word from the engine" in _rt().engine_message
        assert pump_until(lambda: _rt().engine_state == "READY", 10)
    finally:
        server.terminate()
        server.wait(timeout=30)
