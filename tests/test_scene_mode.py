"""Scene mode on the analytic room: the settings bundle, the panorama's mapping, extraction from
inside, and a short job end to end (stage 1 → scene mesh → GLB + panorama)."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from engine.cameras import CameraSampler, inside_views
from engine.events import Artifact
from engine.mesh.extract import dmtet_from_density, scene_surface_level
from engine.panorama import render_panorama
from engine.pipeline import run_job
from engine.presets import make_spec
from engine.priors.scenes import MARKER_COLOR, ROOM_WALLS, room
from engine.priors.sdf import scene_sdf, trace_scene


def direction_to_pixel(d: tuple[float, float, float], width: int, height: int) -> tuple[int, int]:
    """(row, column) of the pixel that Blender's World shows in direction `d` (Cycles' mapping, written
    independently of engine/panorama.py's inverse so the two check each other)."""
    x, y, z = d
    n = math.sqrt(x * x + y * y + z * z)
    u = (0.5 - math.atan2(y, x) / (2 * math.pi)) % 1.0
    v = 1.0 - math.acos(max(-1.0, min(1.0, z / n))) / math.pi
    return min(int((1.0 - v) * height), height - 1), min(int(u * width), width - 1)


def _room_density(x: torch.Tensor) -> torch.Tensor:
    """The room as a density: 60 inside the walls and objects, falling off within 2 cm outside."""
    return 60.0 * torch.sigmoid(-scene_sdf(room(), x.double()).float() / 0.02)


def test_scene_kind_brings_the_scene_settings_and_overrides_still_win():
    spec = make_spec("paper", {"field": {"kind": "scene"}})
    assert (spec.field.blob, spec.field.radius, spec.field.background) == ("scene", 5.0, "network")
    assert spec.camera.distance == (0.1, 2.3) and spec.camera.eval_distance == 2.0
    assert not spec.camera.view_dependent_prompts and spec.nerf.anneal_step == 10000
    assert spec.nerf.lambda_sparsity == 0.0 and not spec.geometry.enabled
    mine = make_spec("paper", {"field": {"kind": "scene", "radius": 4.0}, "camera": {"distance": [0.2, 1.0]}})
    assert mine.field.radius == 4.0 and mine.camera.distance == (0.2, 1.0) and mine.field.blob == "scene"
    smoke = make_spec("cpu-smoke", {"field": {"kind": "scene"}})
    assert smoke.prior == "analytic:room" and smoke.field.radius == 2.9
    assert make_spec("cpu-smoke").field.blob == "object" and make_spec("cpu-smoke").camera.view_dependent_prompts
    cams = CameraSampler(smoke.camera).sample(3, 16, torch.Generator().manual_seed(0))
    assert CameraSampler(smoke.camera).view_prompts("a cosy room", cams) == ["a cosy room"] * 3
    assert float(cams.distance.max()) <= 0.8  # inside the room


def test_the_panorama_shows_each_direction_where_blenders_world_looks_for_it():
    scene = room()

    def traced(tile, backdrop, samples):
        o, d = tile.rays()
        hits = trace_scene(scene, o.reshape(-1, 3), d.reshape(-1, 3))
        return SimpleNamespace(rgb=hits.rgb.view(1, tile.height, tile.width, 3))

    width = 256
    img = render_panorama(traced, width, samples=0, rows_per_tile=16).astype(np.float32) / 255
    assert img.shape == (128, 256, 3)
    looks = {(0.0, -1.0, 0.15): MARKER_COLOR, (0.0, 1.0, 0.5): ROOM_WALLS["+Y"], (1.0, 0.0, 0.6): ROOM_WALLS["+X"],
             (-1.0, 0.0, 0.6): ROOM_WALLS["-X"], (0.0, 0.0, 1.0): ROOM_WALLS["ceiling"],
             (0.1, -0.1, -1.0): ROOM_WALLS["floor"]}
    for d, want in looks.items():
        r, c = direction_to_pixel(d, width, width // 2)
        np.testing.assert_allclose(img[r, c], want, atol=0.02, err_msg=str(d))
    # Blender's mapping: −Y at three quarters of the width, +X in the middle, the top row looks up
    assert direction_to_pixel((0.0, -1.0, 0.0), 256, 128) == (64, 192)
    assert direction_to_pixel((1.0, 0.0, 0.0), 256, 128)[1] == 128 and direction_to_pixel((0, 0, 1.0), 256, 128)[0] == 0


def test_a_room_is_extracted_from_inside_with_its_walls_facing_the_viewer():
    level = scene_surface_level(_room_density, 2.9, 0.8)
    assert 1.0 < level <= 25.0
    v, f = dmtet_from_density(_room_density, 48, level, 2.9, fill_radius=None).extract()
    tri = v[f]
    centroid, normal = tri.mean(1), torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    # the −Y wall's inner face beside the marker disc (x away from it), not the slab's far side at −1.7
    front_wall = ((centroid[:, 1] < -1.5) & (centroid[:, 1] > -1.65) & (centroid[:, 2].abs() < 0.5)
                  & (centroid[:, 0].abs() > 0.6) & (centroid[:, 0].abs() < 1.3))
    assert int(front_wall.sum()) > 20
    assert float((normal[front_wall, 1] > 0).float().mean()) > 0.9  # the −Y wall faces +Y: into the room
    # an object's pocket filling closes the room: its inner wall faces are gone
    vf, ff = dmtet_from_density(_room_density, 48, level, 2.9).extract()
    c = vf[ff].mean(1)
    inner = ((c[:, 1] < -1.5) & (c[:, 1] > -1.65) & (c[:, 2].abs() < 0.5) & (c[:, 0].abs() > 0.6)
             & (c[:, 0].abs() < 1.3))
    assert int(inner.sum()) < 0.1 * int(front_wall.sum())


@pytest.mark.slow
def test_a_short_scene_job_gives_a_scene_mesh_and_a_panorama(tmp_path):
    spec = make_spec("cpu-smoke", {
        "field": {"kind": "scene"}, "nerf": {"steps": 12, "resolution_schedule": [[0, 32]]},
        "geometry": {"grid_resolution": 32}, "texture": {"steps": 2, "resolution_schedule": [[0, 32]]},
        "camera": {"eval_views": 2}, "export": {"texture_size": 256, "panorama_width": 128}})
    events: list = []
    out = run_job(spec, tmp_path / "run", events.append)
    result = tmp_path / "run" / "result"
    pano = Image.open(result / "panorama.png")
    assert pano.size == (128, 64) and np.asarray(pano).std() > 1.0
    roles = {e.role for e in events if isinstance(e, Artifact)}
    assert {"panorama", "mesh", "contact_sheet"} <= roles
    assert (result / "mesh.glb").stat().st_size > 1000 and out["export"]["particles"][0]["faces"] > 50
    mesh = next(iter(trimesh.load(result / "mesh.glb", process=False).geometry.values()))
    facing = (mesh.face_normals * -mesh.triangles_center).sum(1) > 0  # towards the cameras at the centre
    assert facing.mean() > 0.7, facing.mean()
    assert out["nerf"]["panoramas"] == [str(result / "panorama.png")] and "geometry" in out
    views = inside_views(0.5, 8)
    assert views.batch == 30 and math.isclose(float(views.fov_y[0]), math.radians(100.0), rel_tol=1e-6)
