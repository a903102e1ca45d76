"""Mode Scene in the add-on with real bpy: the request the engine accepts, the inside overlay, the
panorama as the World background (rendered with Cycles: Blender's mapping agrees with the engine's),
and a room mesh imported with its marker wall on −Y."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from addon_helpers import ADDON, ROOT, pump_until, remote_server, write_finished_run  # noqa: E402,F401
from mathutils import Vector  # noqa: E402

R = math.radians


def _room_panorama(path, width: int) -> None:
    """The analytic room from its centre, rendered by the engine's own panorama code, as an sRGB PNG."""
    from PIL import Image

    from engine.panorama import render_panorama
    from engine.priors.scenes import room
    from engine.priors.sdf import trace_scene
    scene = room()

    def traced(tile, samples):
        o, d = tile.rays()
        hits = trace_scene(scene, o.reshape(-1, 3), d.reshape(-1, 3))
        return SimpleNamespace(rgb=hits.rgb.view(1, tile.height, tile.width, 3))

    Image.fromarray(render_panorama(traced, width, samples=0, rows_per_tile=32)).save(path)


def _render_centre(scene, direction, path) -> np.ndarray:
    """Cycles render (16², 1 sample, CPU) from the origin looking along `direction`; the mean of the 2×2
    centre pixels as read from the written PNG (Standard view: colours come back as the texture has them)."""
    from PIL import Image
    cam = scene.camera
    cam.location = (0.0, 0.0, 0.0)
    cam.rotation_euler = Vector(direction).to_track_quat("-Z", "Y").to_euler()
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    img = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
    return img[7:9, 7:9].reshape(-1, 3).mean(0)


def _cycles_scene():
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.data.angle = R(30.0)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.render.filter_size = 0.01
    scene.render.resolution_x = scene.render.resolution_y = 16
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    return scene


@pytest.mark.usefixtures("addon")
def test_the_panorama_as_world_shows_each_direction_where_the_engine_put_it(tmp_path):
    from blender_addon import world_background
    from engine.priors.scenes import MARKER_COLOR, ROOM_WALLS
    pano = tmp_path / "result" / "panorama.png"
    pano.parent.mkdir()
    _room_panorama(pano, width=128)
    scene = _cycles_scene()
    world = world_background.set_world_background(scene, pano)
    assert scene.world == world and world.node_tree.nodes[world_background.ENV_NODE].image.filepath == str(pano)
    looks = {"-Y": ((0.0, -1.0, 0.0), MARKER_COLOR), "+X": ((1.0, 0.0, 0.0), ROOM_WALLS["+X"]),
             "+Z": ((0.0, 0.0, 1.0), ROOM_WALLS["ceiling"])}  # a mirror swaps ±Y, a vertical flip ±Z
    for name, (d, want) in looks.items():
        got = _render_centre(scene, d, tmp_path / f"look{name}.png")
        np.testing.assert_allclose(got, want, atol=0.05, err_msg=f"looking {name}")


def _room_glb(path) -> None:
    """The analytic room's surfaces (DMTet of its SDF, Blender frame) written as the engine writes a result GLB."""
    from engine.mesh.dmtet import DMTet
    from engine.mesh.gltf_export import write_glb
    from engine.mesh.tetgrid import TetGrid
    from engine.mesh.types import TexturedMesh
    from engine.priors.scenes import room
    from engine.priors.sdf import scene_sdf
    scene = room()
    v, f = DMTet.from_sdf_fn(lambda p: scene_sdf(scene, p), TetGrid.cube(32, 1.8)).extract()
    write_glb(path, TexturedMesh(v.detach().numpy().astype(np.float32), f.numpy().astype(np.int64)))


def _disc_face(verts: np.ndarray, side: float) -> int:
    """Vertices in front of the ±Y wall (at ±1.6) within the marker disc's circle: its front face (±1.56)."""
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    return int(((side * y > 1.5) & (side * y < 1.59) & (np.hypot(x, z - 0.25) < 0.35)).sum())


@pytest.mark.usefixtures("addon")
def test_a_scene_mesh_lands_in_the_collection_at_the_cursor_with_the_marker_wall_on_minus_y(tmp_path):
    from blender_addon import importer
    glb = tmp_path / "result" / "mesh.glb"
    glb.parent.mkdir()
    _room_glb(glb)
    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    objs = importer.import_results(bpy.context, [str(glb)], {"job_id": "s1", "prompt": "a cosy room", "seed": 0,
                                                             "run_dir": str(tmp_path)})
    assert len(objs) == 1 and objs[0].users_collection == (bpy.data.collections["VSDream"],)
    ob = objs[0]
    bpy.context.view_layer.update()  # matrix_world follows the location the importer set
    verts = np.array([tuple(ob.matrix_world @ v.co) for v in ob.data.vertices]) - np.array([1.0, 2.0, 3.0])
    assert verts[:, 1].min() == pytest.approx(-1.75, abs=0.1) and verts[:, 2].max() == pytest.approx(1.4, abs=0.1)
    assert _disc_face(verts, -1.0) > 10  # the marker stands out of the −Y wall
    assert _disc_face(verts, 1.0) == 0  # and not out of the +Y one (a mirrored import)


@pytest.mark.usefixtures("addon")
def test_scene_mode_sends_the_scene_kind_and_the_inside_distances_the_engine_accepts():
    from blender_addon import job_spec
    from blender_addon.properties import PRESET_SCENE_CAMERAS
    from engine.presets import make_spec
    for name, cam in PRESET_SCENE_CAMERAS.items():  # the add-on's table matches the engine's scene bundles
        spec = make_spec(name, {"prompt": "a cosy room", "field": {"kind": "scene"}})
        assert cam["distance"] == pytest.approx(spec.camera.distance), name
        assert cam["fov_deg"] == pytest.approx(spec.camera.fov_deg), name
    s = bpy.context.scene.vsdream
    s.prompt, s.scene_mode, s.preset, s.prior = "a cosy room", "scene", "cpu-smoke", "analytic:room"
    assert (s.scene_distance_min, s.scene_distance_max) == pytest.approx((0.1, 0.8))
    assert (s.distance_min, s.distance_max) == pytest.approx((2.2, 2.6))  # the object range is kept apart
    req = job_spec.build_request(s, None)
    o = req["overrides"]
    assert o["field"] == {"kind": "scene"} and o["camera"]["distance"] == pytest.approx([0.1, 0.8])
    assert o["camera"]["fov_deg"] == pytest.approx([55.0, 70.0])  # the scene bundle's wider views
    assert "enabled" not in o["geometry"] and o["nerf"]["enabled"]  # the scene bundle decides stage 2
    spec = make_spec(req["preset"], req["overrides"])
    assert spec.field.kind == "scene" and spec.field.blob == "scene" and spec.field.radius == 2.9
    assert spec.camera.distance == pytest.approx((0.1, 0.8)) and spec.prior == "analytic:room"
    assert not spec.geometry.enabled and not spec.camera.view_dependent_prompts
    assert job_spec.problems(s) == []
    s.preset = "paper"
    s.scene_distance_min, s.scene_distance_max = 0.3, 1.7
    spec = make_spec("paper", job_spec.build_request(s, None)["overrides"])
    # the held-out orbit (previews) stays inside the artist's range: 1.7, not the bundle's 2.0
    assert spec.camera.distance == pytest.approx((0.3, 1.7)) and spec.camera.eval_distance == pytest.approx(1.7)
    s.prior = "analytic:marker"  # an object's reference scene has no inside
    assert any("Reference room" in p for p in job_spec.problems(s)) and not bpy.ops.vsdream.generate.poll()
    s.scene_mode = "object"
    o = job_spec.build_request(s, None)["overrides"]
    assert o["field"]["kind"] == "object" and o["camera"]["distance"] == pytest.approx([1.0, 1.5])
    assert o["camera"]["fov_deg"] == pytest.approx([40.0, 70.0])
    assert make_spec("paper", o).field.blob == "object" and job_spec.problems(s) == []
    s.prior = "analytic:room"
    assert any("Mode to Scene" in p for p in job_spec.problems(s))


def _elevation(p: Vector, c: Vector) -> float:
    d = p - c
    return math.atan2(d.z, math.hypot(d.x, d.y))


@pytest.mark.usefixtures("addon")
def test_the_inside_overlay_is_the_cameras_sphere_with_frusta_reaching_the_centre():
    from blender_addon import overlay_geometry as og
    s = bpy.context.scene.vsdream
    s.scene_mode = "scene"
    s.scene_distance_min, s.scene_distance_max = 0.2, 2.0
    s.fov_min, s.fov_max = R(50.0), R(50.0)
    rs = og.settings_from_scene(s, (1.0, 2.0, 0.5))
    assert rs.inside and rs.distance == pytest.approx((0.2, 2.0))
    centre = Vector((1.0, 2.0, 0.5))
    geo = og.build_overlay(rs)
    assert len(geo.rings) == 5 and len(geo.meridians) == 8  # a cage over the band the cameras stand in
    assert geo.ring_elevations[0] == pytest.approx(s.elevation_min) and geo.ring_elevations[-1] == pytest.approx(
        s.elevation_max)
    for line in geo.rings + geo.meridians:
        assert all((p - centre).length == pytest.approx(2.0, abs=1e-5) for p in line)
    for ring, el in zip(geo.rings, geo.ring_elevations, strict=True):
        assert all(_elevation(p, centre) == pytest.approx(el, abs=1e-5) for p in ring)
    assert len(geo.frusta) == 8
    for eye, segs in zip(geo.frustum_eyes, geo.frusta, strict=True):
        assert (eye - centre).length == pytest.approx(1.1, abs=1e-5)  # the mean distance, inside the sphere
        far_mid = sum((b for _, b in segs[:4]), Vector()) / 4
        assert (far_mid - centre).length == pytest.approx(0.0, abs=1e-5)  # looking at the centre, reaching it
    s.scene_mode = "object"
    outside = og.build_overlay(og.settings_from_scene(s))
    assert outside.frustum_eyes[0].length == pytest.approx(1.25) and len(outside.rings) == 2  # the object range


@pytest.mark.usefixtures("addon")
def test_use_as_world_background_finds_the_panorama_and_reuses_the_world(tmp_path):
    from PIL import Image

    from blender_addon import panorama_result, world_background
    from blender_addon.operators import world as world_op
    from blender_addon.session import SESSION
    run = tmp_path / "run"
    (run / "result").mkdir(parents=True)
    assert panorama_result.first_panorama(str(run)) == ""  # an object job: no button
    Image.new("RGB", (8, 4), (200, 10, 150)).save(run / "result" / "panorama.png")
    Image.new("RGB", (8, 4), (10, 10, 10)).save(run / "result" / "contact_sheet.png")
    pano = str(run / "result" / "panorama.png")
    assert panorama_result.first_panorama(str(run)) == pano
    assert panorama_result.first_panorama("", {"panorama.png": pano, "mesh.glb": "x"}) == pano
    assert not panorama_result.is_panorama_name("panorama_final.png.txt")
    scene = bpy.context.scene
    scene.world = bpy.data.worlds.new("Artist world")
    tree = scene.world.node_tree
    old_bg = next(n for n in tree.nodes if n.bl_idname == "ShaderNodeBackground")
    SESSION.job.state, SESSION.job.run_dir = "RUNNING", str(run)
    assert world_op.current_panorama() == ""  # only once the job is done
    SESSION.job.state = "DONE"
    assert bpy.ops.vsdream.use_panorama() == {"FINISHED"}
    assert bpy.ops.vsdream.use_panorama(filepath=pano) == {"FINISHED"}  # twice: still one texture node
    assert scene.world.name == "Artist world" and len(bpy.data.worlds) == 1
    envs = [n for n in tree.nodes if n.bl_idname == "ShaderNodeTexEnvironment"]
    assert len(envs) == 1 and envs[0].image.filepath == pano and envs[0].projection == "EQUIRECTANGULAR"
    assert old_bg.inputs["Color"].links[0].from_node == envs[0]  # the artist's Background node, fed the panorama
    with pytest.raises(FileNotFoundError, match="Mode Scene"):
        world_background.set_world_background(scene, tmp_path / "missing.png")


TOKEN = "scene-remote-secret"


@pytest.fixture
def remote_scene_engine(tmp_path):
    """(ready line, server runs folder) of a real --allow-remote server holding one finished scene job
    (a room GLB and its panorama). Requested before `addon`, so the add-on disconnects first."""
    run = tmp_path / "server_runs" / "scene-job"
    (run / "result").mkdir(parents=True)
    _room_glb(run / "result" / "mesh.glb")
    _room_panorama(run / "result" / "panorama.png", width=128)
    write_finished_run(run, {"prompt": "a cosy room", "mode": "text", "seed": 1},
                       [run / "result" / "panorama.png", run / "result" / "mesh.glb"])
    with remote_server(run.parent, TOKEN, tmp_path / "server.log") as ready:
        yield ready, run


def test_a_remote_scene_job_brings_its_panorama_for_the_world(remote_scene_engine, addon, tmp_path):  # noqa: F811
    from blender_addon import preferences, pump
    from blender_addon._protocol_import import protocol
    from blender_addon.job_state import JobView
    from blender_addon.operators import world as world_op
    ready, run = remote_scene_engine
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.connection_mode, prefs.remote_host, prefs.remote_port = "REMOTE", "127.0.0.1", ready["port"]
    prefs.remote_token, prefs.remote_fingerprint = TOKEN, ready["fingerprint"]
    rt = bpy.context.window_manager.vsdream
    pump.SESSION.job = JobView(job_id="scene-job", prompt="a cosy room", seed=1, state="QUEUED")
    pump.SESSION.send(protocol.attach("scene-job"), cfg=preferences.connect_config())
    assert pump_until(lambda: rt.imported != "", 30), (rt.engine_message, rt.job_state, rt.error_message)
    local = tmp_path / "user" / "runs" / "downloads" / "scene-job" / "panorama.png"
    assert local.read_bytes() == (run / "result" / "panorama.png").read_bytes()
    assert world_op.current_panorama() == str(local)  # the panel's button uses the downloaded copy
    assert bpy.ops.vsdream.use_panorama() == {"FINISHED"}
    env = bpy.context.scene.world.node_tree.nodes["VSDream Panorama"]
    assert env.image.filepath == str(local)
    assert bpy.data.objects[rt.imported].users_collection == (bpy.data.collections["VSDream"],)
