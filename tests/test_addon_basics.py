"""Blender add-on without the engine: registration, defaults, operators, preview image, job spec."""
from __future__ import annotations

import math
import sys

import pytest

bpy = pytest.importorskip("bpy")

from addon_helpers import ADDON, disable, enable  # noqa: E402,F401


def test_register_unregister_register_is_clean(addon):
    assert hasattr(bpy.types.Scene, "vsdream") and hasattr(bpy.types.WindowManager, "vsdream")
    assert hasattr(bpy.ops.vsdream, "generate")
    disable()
    assert not hasattr(bpy.types.Scene, "vsdream")
    assert not hasattr(bpy.types.WindowManager, "vsdream")
    assert "VSDREAM_PT_main" not in dir(bpy.types)
    enable()  # a second registration must not hit "already registered"
    assert bpy.context.scene.vsdream.preset == "fast"
    assert bpy.context.preferences.addons[ADDON].preferences.connection_mode == "LOCAL"


def test_defaults_are_radians_and_sane(addon):
    s = bpy.context.scene.vsdream
    assert s.elevation_min == pytest.approx(math.radians(-10.0), abs=1e-6)
    assert s.elevation_max == pytest.approx(math.radians(45.0), abs=1e-6)
    assert s.azimuth_min == pytest.approx(-math.pi, abs=1e-6)
    assert s.azimuth_max == pytest.approx(math.pi, abs=1e-6)
    assert s.fov_min == pytest.approx(math.radians(40.0), abs=1e-6)
    assert s.fov_max == pytest.approx(math.radians(70.0), abs=1e-6)
    assert (s.distance_min, s.distance_max) == pytest.approx((1.0, 1.5))
    assert set(s.stages) == {"nerf", "geometry", "texture"} and s.particles == 1
    rt = bpy.context.window_manager.vsdream
    assert rt.engine_state == "OFFLINE" and rt.job_state == "NONE"


def test_min_max_stay_ordered(addon):
    s = bpy.context.scene.vsdream
    s.elevation_min = math.radians(60.0)  # above the max: the max follows
    assert s.elevation_max == pytest.approx(math.radians(60.0), abs=1e-6)
    s.distance_max = 0.5  # below the min: the min follows
    assert s.distance_min == pytest.approx(0.5)


def test_job_spec_speaks_degrees_and_merges_overrides(addon):
    from blender_addon import job_spec
    s = bpy.context.scene.vsdream
    s.prompt, s.seed, s.particles, s.texture_size = "  a red chair ", 7, 2, "512"
    s.stages = {"nerf", "texture"}
    req = job_spec.build_request(s, None, extra={"nerf": {"steps": 30}, "seed": 9})
    o = req["overrides"]
    assert req["preset"] == "fast" and o["prompt"] == "a red chair" and o["seed"] == 9
    assert o["camera"]["elevation_deg"] == pytest.approx([-10.0, 45.0])
    assert o["camera"]["azimuth_deg"] == pytest.approx([-180.0, 180.0])
    assert o["camera"]["fov_deg"] == pytest.approx([40.0, 70.0])
    assert o["nerf"] == {"enabled": True, "steps": 30} and o["geometry"] == {"enabled": False}
    assert o["export"]["texture_size"] == 512 and o["particles"] == 2
    # the engine accepts what the add-on sends
    from engine.presets import make_spec
    spec = make_spec(req["preset"], req["overrides"])
    assert spec.camera.elevation_deg == pytest.approx((-10.0, 45.0)) and not spec.geometry.enabled


def test_generate_is_disabled_with_a_reason(addon):
    s = bpy.context.scene.vsdream
    s.prior, s.prompt = "sd", ""
    assert not bpy.ops.vsdream.generate.poll()
    from blender_addon import job_spec
    assert "prompt" in job_spec.problems(s)[0]
    s.prompt = "a toy robot"
    assert bpy.ops.vsdream.generate.poll()
    assert not bpy.ops.vsdream.cancel.poll()  # nothing to cancel
    assert not bpy.ops.vsdream.retexture.poll()  # no mesh selected


def test_camera_from_view_operator(addon):
    s = bpy.context.scene.vsdream
    s.azimuth_min, s.azimuth_max = math.radians(-30.0), math.radians(30.0)
    s.elevation_min, s.elevation_max = math.radians(0.0), math.radians(20.0)
    # the viewer sits on +X, 45° up: azimuth 90°, elevation 45°
    assert bpy.ops.vsdream.camera_from_view(direction=(1.0, 0.0, 1.0)) == {"FINISHED"}
    assert (math.degrees(s.azimuth_min), math.degrees(s.azimuth_max)) == pytest.approx((60.0, 120.0), abs=1e-3)
    assert (math.degrees(s.elevation_min), math.degrees(s.elevation_max)) == pytest.approx((35.0, 55.0), abs=1e-3)
    # without a viewport and without a direction it reports instead of raising
    with pytest.raises(RuntimeError, match="No 3D viewport"):
        bpy.ops.vsdream.camera_from_view()


def test_check_engine_reports_python_and_torch(addon):
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.engine_python = sys.executable
    assert bpy.ops.vsdream.check_engine(wait=True) == {"FINISHED"}
    report = bpy.context.window_manager.vsdream.check_report
    assert "Python 3." in report and "torch 2." in report and "VSDream 0." in report
    assert "CUDA" in report
    prefs.engine_python = "/nonexistent/python"
    bpy.ops.vsdream.check_engine(wait=True)
    assert "engine Python not found" in bpy.context.window_manager.vsdream.check_report


def test_preview_image_rows_are_flipped_for_blender(addon):
    from blender_addon import preview
    w, h = 4, 3
    rgb = bytearray()
    for y in range(h):  # top row red, middle green, bottom blue
        rgb += bytes([(255, 0, 0), (0, 255, 0), (0, 0, 255)][y]) * w
    img = preview.show_frame(bytes(rgb), w, h)
    px = [0.0] * (w * h * 4)
    img.pixels.foreach_get(px)
    bottom, top = px[0:4], px[(h - 1) * w * 4:(h - 1) * w * 4 + 4]
    assert bottom == pytest.approx([0.0, 0.0, 1.0, 1.0], abs=1e-3)  # Blender row 0 = image bottom
    assert top == pytest.approx([1.0, 0.0, 0.0, 1.0], abs=1e-3)
    assert preview.show_frame(bytes(rgb), w, h) is img  # same size: the datablock is reused
    with pytest.raises(ValueError, match="expected 4x3x3"):
        preview.show_frame(b"\x00" * 5, w, h)


def test_job_state_is_not_saved_in_the_blend(addon, tmp_path):
    rt = bpy.context.window_manager.vsdream
    rt.job_state, rt.job_id = "RUNNING", "abc"
    bpy.context.scene.vsdream.prompt = "saved prompt"
    path = tmp_path / "state.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert bpy.context.scene.vsdream.prompt == "saved prompt"  # scene settings persist
    rt = bpy.context.window_manager.vsdream
    assert rt.job_state == "NONE" and rt.job_id == ""  # the transient job state does not


def test_particles_import_side_by_side_at_the_cursor(addon, tmp_path):
    from blender_addon import importer, mesh_export
    bpy.ops.mesh.primitive_monkey_add()
    src = bpy.context.active_object
    glb = mesh_export.write_glb(mesh_export.snapshot(src, bpy.context.evaluated_depsgraph_get()), tmp_path / "p.glb")
    bpy.data.objects.remove(src)
    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    info = {"job_id": "j1", "prompt": "a   monkey, ", "seed": 4, "run_dir": str(tmp_path)}
    objs = importer.import_results(bpy.context, [glb, glb], info, size=2.0)
    assert [o.name for o in objs] == ["VSDream a monkey #1", "VSDream a monkey #2"]
    assert all(o.users_collection == (bpy.data.collections["VSDream"],) for o in objs)
    xs = sorted(o.location.x for o in objs)
    assert xs == pytest.approx([1.0 - 2.5, 1.0 + 2.5])  # spaced by 2.5 × size around the cursor
    assert all(o.location.y == pytest.approx(2.0) and o.location.z == pytest.approx(3.0) for o in objs)
    assert tuple(objs[0].scale) == pytest.approx((2.0, 2.0, 2.0))
    assert objs[1]["vsdream_job_id"] == "j1" and objs[1]["vsdream_seed"] == 4 and objs[1]["vsdream_particle"] == 1


def test_pump_survives_bad_frames_and_lost_connections(addon):
    from blender_addon import pump
    from blender_addon._protocol_import import protocol
    from blender_addon.session import SESSION
    SESSION.new_job(mode="text")
    SESSION.job.job_id = "j"
    bad = protocol.Frame({"type": "preview", "job_id": "j", "seq": 1, "time": 0.0, "stage": "nerf", "step": 1,
                          "width": 8, "height": 8, "rgb_bytes": 5}, b"\x00" * 5)
    SESSION.inbox.put(("frame", bad))
    SESSION.inbox.put(("disconnected", "connection lost: test"))
    assert pump.tick() == pump.INTERVAL_S  # never raises, always keeps the timer alive
    rt = bpy.context.window_manager.vsdream
    assert rt.engine_state == "ERROR" and "connection lost" in rt.engine_message
    assert rt.job_state == "FAILED" and "Start engine" in rt.error_message


def test_opening_a_file_shows_the_running_job_again(addon, tmp_path):
    """load_post: the new window manager re-attaches to the session's job and re-reads history."""
    from blender_addon import pump
    from blender_addon.session import SESSION
    SESSION.new_job(mode="text", prompt="a vase")
    SESSION.job.job_id, SESSION.job.state, SESSION.job.step, SESSION.job.total = "j7", "RUNNING", 3, 10
    run = tmp_path / "user" / "runs" / "j7"
    run.mkdir(parents=True)
    (run / "spec.json").write_text('{"prompt": "a vase", "mode": "text"}')
    (run / "events.jsonl").write_text('{"type": "queued", "seq": 1}\n{"type": "started", "seq": 2}\n')
    path = tmp_path / "other.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    rt = bpy.context.window_manager.vsdream
    assert (rt.job_id, rt.job_state, rt.step, rt.total) == ("j7", "RUNNING", 3, 10)
    assert [(i.job_id, i.prompt, i.status) for i in rt.history] == [("j7", "a vase", "unfinished")]
    assert pump.on_load_post in bpy.app.handlers.load_post
    assert bpy.app.timers.is_registered(pump.tick)  # the persistent timer survived the load
    SESSION.job.state = "NONE"


def test_retexture_export_keeps_uvs_world_space_and_the_object(addon, tmp_path):
    """The GLB the engine gets carries the UVs, the modifiers and the world placement (Y-up); the
    artist's object is left exactly as it was."""
    import numpy as np

    from blender_addon import mesh_export
    from engine.mesh.mesh_io import load_mesh  # the engine's own reader
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 3.0, 1.0))
    cube = bpy.context.active_object
    own = bpy.data.materials.new("Own")
    cube.data.materials.append(own)
    parent = bpy.data.objects.new("parent", None)
    bpy.context.scene.collection.objects.link(parent)
    parent.location = (2.0, 0.0, 0.0)
    cube.parent = parent
    bpy.context.view_layer.update()
    snap = mesh_export.snapshot(cube, bpy.context.evaluated_depsgraph_get())
    path = mesh_export.write_glb(snap, tmp_path / "cube.glb")
    assert [s.material for s in cube.material_slots] == [own] and len(cube.data.uv_layers) == 1
    loaded = load_mesh(path)
    assert loaded.had_uvs and len(loaded.mesh.vertices) == 24  # the cube's 24 UV-split corners
    v = np.asarray(loaded.to_original(np.asarray(loaded.mesh.vertices)))
    # world (x, y, z) = (2, 3, 1) ± 0.5, through glTF's Y-up and the engine's reading back to Z-up
    assert v.min(0) == pytest.approx([1.5, 2.5, 0.5], abs=1e-4) and v.max(0) == pytest.approx([2.5, 3.5, 1.5], abs=1e-4)
    mod = cube.modifiers.new("sub", "SUBSURF")
    mod.levels = 1
    snap = mesh_export.snapshot(cube, bpy.context.evaluated_depsgraph_get())
    assert len(mesh_export.triangle_loops(snap)) // 3 == 48 and len(cube.data.polygons) == 6  # modifiers applied, mesh untouched


def test_choosing_a_preset_brings_its_camera(addon):
    from blender_addon.properties import PRESET_CAMERAS
    from engine.presets import make_spec
    for name, cam in PRESET_CAMERAS.items():  # the add-on's table matches the engine's presets
        spec = make_spec(name, {"prompt": "a ceramic owl"})
        assert cam["distance"] == pytest.approx(spec.camera.distance), name
        assert cam["fov_deg"] == pytest.approx(spec.camera.fov_deg), name
    s = bpy.context.scene.vsdream
    s.preset = "cpu-smoke"
    assert (s.distance_min, s.distance_max) == pytest.approx((2.2, 2.6))
    assert (math.degrees(s.fov_min), math.degrees(s.fov_max)) == pytest.approx((40.0, 50.0), abs=1e-4)
    s.preset = "paper"
    assert (s.distance_min, s.distance_max) == pytest.approx((1.0, 1.5))
    assert math.degrees(s.fov_max) == pytest.approx(70.0, abs=1e-4)
