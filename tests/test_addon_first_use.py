"""First use of the add-on (issue 13): previews by time, job states, errors in full, re-texture refusals."""
from __future__ import annotations

import pytest

bpy = pytest.importorskip("bpy")

from addon_helpers import ADDON  # noqa: E402,F401


def test_preview_preference_is_seconds_and_the_engine_takes_it(addon):
    from blender_addon import job_spec
    from engine.presets import make_spec
    prefs = bpy.context.preferences.addons[ADDON].preferences
    s = bpy.context.scene.vsdream
    s.preset, s.prior = "cpu-smoke", "analytic:marker"
    prefs.preview_interval = 5.0
    req = job_spec.build_request(s, prefs)
    assert all(req["overrides"][n]["preview_interval_s"] == 5.0 for n in job_spec.STAGE_NAMES)
    spec = make_spec(req["preset"], req["overrides"])
    assert spec.nerf.preview_interval_s == 5.0 and spec.texture.preview_interval_s == 5.0


def _frame(kind: str, **header):
    from blender_addon._protocol_import import protocol
    return protocol.Frame({"type": kind, "time": 0.0, **header}, b"")


def test_one_state_vocabulary_and_a_stopped_job_can_resume(addon, tmp_path):
    """Panel and History say the same word; an interrupted job says Stopped and offers Resume;
    a job that ended shows no ETA or rate."""
    from blender_addon import pump
    from blender_addon.job_state import state_label
    from blender_addon.session import SESSION
    run = tmp_path / "user" / "runs" / "j1"
    run.mkdir(parents=True)
    (run / "spec.json").write_text('{"prompt": "a vase", "mode": "text"}')
    (run / "events.jsonl").write_text('{"type": "queued", "seq": 1}\n{"type": "started", "seq": 2}\n')
    SESSION.new_job(mode="text", prompt="a vase")
    for frame in (_frame("accepted", job_id="j1", run_dir=str(run), position=0),
                  _frame("stage", job_id="j1", seq=3, stage="nerf", total=400),
                  _frame("progress", job_id="j1", seq=4, stage="nerf", step=37, total=400, eta_s=4440.0,
                         it_per_s=0.1)):
        SESSION.inbox.put(("frame", frame))
    pump.drain()
    rt = bpy.context.window_manager.vsdream
    item = next(i for i in rt.history if i.job_id == "j1")
    assert rt.job_state == item.state == "RUNNING"  # the live job: History follows the panel
    assert 4430.0 < rt.eta_s <= 4440.0 and not bpy.ops.vsdream.resume_current.poll()
    SESSION.disconnect(stop_engine=True, wait=True)  # 'Stop engine' mid-job
    pump.drain()
    item = next(i for i in rt.history if i.job_id == "j1")
    assert rt.job_state == item.state == "CANCELLED" and state_label(item.state) == "Stopped"
    assert (rt.eta_s, rt.it_per_s) == (0.0, 0.0) and rt.error_message == ""  # no stale ETA, not a failure
    assert (rt.step, rt.total) == (37, 400)  # where it stopped stays readable
    assert bpy.ops.vsdream.resume_current.poll()
    # a folder left without a terminal event reads "Stopped" too once no one follows it
    from blender_addon.job_state import JobView
    SESSION.job = JobView()
    pump.refresh_history()
    assert next(i for i in rt.history if i.job_id == "j1").state == "CANCELLED"


def test_failed_job_clears_its_eta_and_keeps_the_whole_message(addon):
    from blender_addon import pump
    from blender_addon.session import SESSION
    SESSION.new_job(mode="retexture")
    SESSION.inbox.put(("frame", _frame("accepted", job_id="j2", run_dir="", position=0)))
    SESSION.inbox.put(("frame", _frame("progress", job_id="j2", seq=1, stage="texture", step=3, total=150,
                                       eta_s=90.0, it_per_s=1.5)))
    reason = "MeshInputError: input_mesh '/very/long/" + "x" * 150 + "/input.glb' has no faces: it is a point cloud"
    SESSION.inbox.put(("frame", _frame("failed", job_id="j2", seq=2, code="bad_input", message=reason,
                                       hint="select a mesh object with faces")))
    pump.drain()
    rt = bpy.context.window_manager.vsdream
    assert rt.job_state == "FAILED" and (rt.eta_s, rt.it_per_s) == (0.0, 0.0)
    assert rt.error_message.endswith("it is a point cloud") and rt.error_hint.startswith("select")
    from blender_addon import ui_text
    lines = ui_text.wrap(rt.error_message, 40)
    assert all(len(line) <= 40 for line in lines) and "".join(lines).replace(" ", "") == reason.replace(" ", "")


def test_ui_text_wraps_and_shortens():
    from blender_addon import ui_text
    assert ui_text.eta(0) == "" and ui_text.eta(245) == "ETA 4m05s" and ui_text.eta(4440) == "ETA 1h14m"
    assert ui_text.eta(364 * 3600 + 33 * 60) == "ETA 15d4h"
    assert ui_text.short_job_id("20261123-231501-a1b2c3") == "…a1b2c3"
    assert ui_text.chars_per_line(300, 1.0) < ui_text.chars_per_line(600, 1.0)
    assert ui_text.chars_per_line(300, 2.0) < ui_text.chars_per_line(300, 1.0)
    assert ui_text.wrap("a\n\nb", 20) == ["a", "", "b"]


def test_generate_refuses_without_an_engine_python(addon, tmp_path):
    """Nothing is 'submitted' and no job starts when the local engine cannot start at all."""
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.connection_mode, prefs.engine_python = "LOCAL", str(tmp_path / "no" / "python")
    s = bpy.context.scene.vsdream
    s.preset, s.prior = "cpu-smoke", "analytic:marker"
    with pytest.raises(RuntimeError, match="Engine Python not found"):
        bpy.ops.vsdream.generate()
    rt = bpy.context.window_manager.vsdream
    assert rt.job_state == "NONE" and rt.engine_state == "OFFLINE"


def _select(obj) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj


def test_retexture_refuses_a_mesh_without_faces_before_changing_it(addon):
    mesh = bpy.data.meshes.new("wire")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (1, 1, 0)], [(0, 1), (1, 2)], [])
    obj = bpy.data.objects.new("wire", mesh)
    bpy.context.scene.collection.objects.link(obj)
    _select(obj)
    s = bpy.context.scene.vsdream
    s.preset, s.prior = "cpu-smoke", "analytic:marker"
    with pytest.raises(RuntimeError, match="wire has no faces \\(3 vertices, 2 edges\\)"):
        bpy.ops.vsdream.retexture()
    assert len(mesh.uv_layers) == 0 and bpy.context.window_manager.vsdream.job_state == "NONE"


def test_retexture_of_a_mesh_without_uvs_sends_the_evaluated_mesh(addon, tmp_path):
    """The UV map is computed off the main thread and written back; the GLB that is sent has the
    modifiers applied and those UVs; 'Sending' until the engine answers."""
    import socket

    from blender_addon import pump
    from blender_addon.session import SESSION
    from engine.mesh.mesh_io import load_mesh
    silent = socket.socket()  # an engine that accepts the connection and never answers: the frame waits
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        prefs = bpy.context.preferences.addons[ADDON].preferences
        prefs.connection_mode, prefs.remote_port, prefs.remote_token = "REMOTE", silent.getsockname()[1], "x"
        s = bpy.context.scene.vsdream
        s.preset, s.prior = "cpu-smoke", "analytic:marker"
        bpy.ops.mesh.primitive_monkey_add()
        obj = bpy.context.active_object
        obj.data.uv_layers.remove(obj.data.uv_layers[0])
        obj.modifiers.new("sub", "SUBSURF").levels = 1
        _select(obj)
        assert bpy.ops.vsdream.retexture() == {"FINISHED"}
        assert bpy.context.window_manager.vsdream.job_state == "SUBMITTING"
        assert pump.run_until(lambda: SESSION.pending, 30)
        frame = SESSION.pending[0]
        assert frame.type == "submit" and frame["overrides"]["mode"] == "retexture"
        assert [layer.name for layer in obj.data.uv_layers] == ["VSDream UV"] and SESSION.job.uv_map == "VSDream UV"
        (tmp_path / "sent.glb").write_bytes(frame.payload)
        loaded = load_mesh(tmp_path / "sent.glb", face_limit=10**6)
        evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
        assert loaded.had_uvs and len(loaded.mesh.faces) == sum(len(p.vertices) - 2 for p in evaluated.polygons)
        uv = loaded.mesh.uvs
        assert 0.0 < uv.min() and uv.max() < 1.0 and uv.std() > 0.1  # the box projection's six tiles
        assert bpy.context.window_manager.vsdream.job_state == "SUBMITTING"
    finally:
        SESSION.disconnect(stop_engine=True, wait=True)
        silent.close()


def test_engine_warnings_reach_the_panel(addon):
    from blender_addon import pump
    from blender_addon.session import SESSION
    from engine.texture_check import flat_texture_warning
    SESSION.new_job(mode="retexture")
    warning = flat_texture_warning(0.01, 15)
    for frame in (_frame("accepted", job_id="j3", run_dir="", position=0),
                  _frame("log", job_id="j3", seq=1, level="info", message="re-texturing input.glb"),
                  _frame("log", job_id="j3", seq=2, level="warning", message=warning),
                  _frame("log", job_id="other", seq=3, level="warning", message="another job's warning")):
        SESSION.inbox.put(("frame", frame))
    pump.drain()
    assert bpy.context.window_manager.vsdream.warnings == warning


def _engine_glb(path):
    """A small result as the engine writes it: two triangles, UVs, a 4×4 texture."""
    import numpy as np

    from engine.mesh.gltf_export import write_glb
    from engine.mesh.types import TexturedMesh
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 2], [0, 0, 2]], np.float32)  # Blender frame, standing up
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int64)
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)  # glTF: v down
    tex = np.zeros((4, 4, 3), np.float32)
    tex[:, :, 0] = 1.0
    return write_glb(path, TexturedMesh(v, f, uv, tex))


def test_text_result_is_read_off_the_main_thread_and_built_in_place(addon, tmp_path):
    from blender_addon import pump
    from blender_addon.job_state import JobView
    from blender_addon.session import SESSION
    glb = _engine_glb(tmp_path / "mesh.glb")
    bpy.context.scene.cursor.location = (5.0, 0.0, 0.0)
    SESSION.job = JobView(job_id="j4", mode="text", state="DONE", prompt="a plate", run_dir=str(tmp_path),
                          artifacts={"mesh.glb": str(glb)})
    pump._finish_job(bpy.context)
    assert SESSION.job.state == "IMPORTING" and not SESSION.job.imported  # nothing built on this tick
    assert pump.run_until(lambda: SESSION.job.imported, 30), SESSION.job.error_message
    rt = bpy.context.window_manager.vsdream
    assert rt.job_state == "DONE" and rt.imported == "VSDream a plate"
    obj = bpy.data.objects["VSDream a plate"]
    mesh = obj.data
    assert (len(mesh.vertices), len(mesh.polygons), len(mesh.edges)) == (4, 2, 5) and not mesh.validate()
    zs = sorted(round(v.co.z, 4) for v in mesh.vertices)
    assert zs == [0.0, 0.0, 2.0, 2.0] and tuple(obj.location) == pytest.approx((5.0, 0.0, 0.0))  # Z-up, at the cursor
    uv = mesh.uv_layers["UVMap"].data
    by_vertex = {mesh.loops[i].vertex_index: tuple(round(c, 4) for c in uv[i].uv) for i in range(len(mesh.loops))}
    assert by_vertex[2] == (1.0, 1.0) and by_vertex[0] == (0.0, 0.0)  # flipped to Blender's bottom-left origin
    img = next(n.image for n in obj.active_material.node_tree.nodes if n.type == "TEX_IMAGE")
    assert tuple(img.size) == (4, 4) and img.packed_file is not None


def test_the_eta_counts_down_every_second_between_progress_events(addon):
    import time

    from blender_addon import pump
    from blender_addon.session import SESSION
    SESSION.new_job(mode="text")
    SESSION.inbox.put(("frame", _frame("accepted", job_id="j5", run_dir="", position=0)))
    SESSION.inbox.put(("frame", _frame("progress", job_id="j5", seq=1, stage="nerf", step=1, total=400,
                                       eta_s=600.0, it_per_s=0.5)))
    pump.drain()
    rt = bpy.context.window_manager.vsdream
    first = rt.eta_s
    time.sleep(pump.CLOCK_S + 0.2)
    pump.drain()  # nothing new from the engine: the line still moves
    assert first - rt.eta_s >= pump.CLOCK_S - 0.05, (first, rt.eta_s)


def test_stopping_the_engine_is_not_reported_as_a_lost_connection(addon):
    """A reader that saw its socket close just before 'Stop engine' must not turn the stop into an error;
    frames already received stay queued, in order."""
    from blender_addon.session import SESSION
    SESSION.inbox.put(("frame", "first"))
    SESSION.inbox.put(("disconnected", "the engine closed the connection"))
    SESSION.inbox.put(("frame", "second"))
    SESSION.disconnect(stop_engine=True, wait=True)
    left = [SESSION.inbox.get_nowait() for _ in range(SESSION.inbox.qsize())]
    assert left == [("frame", "first"), ("frame", "second")]
