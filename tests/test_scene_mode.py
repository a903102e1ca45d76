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
from engine.context import JobContext
from engine.errors import EngineError
from engine.events import Artifact
from engine.mesh.extract import dmtet_from_density
from engine.mesh.scene_surface import SURFACE_DEPTH, optical_depth_table, scene_viewpoints, visible_depth
from engine.panorama import render_panorama
from engine.pipeline import run_job
from engine.presets import make_spec
from engine.preview import psnr
from engine.priors.analytic import AnalyticPrior
from engine.priors.scenes import MARKER_COLOR, ROOM_WALLS, room
from engine.priors.sdf import Scene, scene_sdf, trace_scene
from engine.render import RenderOutput
from engine.run_dir import RunDir
from engine.stage_loop import run_stage
from engine.stages.nerf import NerfStage, z_variance_loss


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
    spec = make_spec("paper", {"prompt": "a room", "field": {"kind": "scene"}})
    assert (spec.field.blob, spec.field.radius, spec.field.background) == ("scene", 5.0, "network")
    assert spec.camera.distance == (0.1, 2.3) and spec.camera.eval_distance == 2.0
    assert not spec.camera.view_dependent_prompts and spec.nerf.anneal_step == 10000
    assert spec.nerf.lambda_sparsity == 0.0 and not spec.geometry.enabled
    mine = make_spec("paper", {"prompt": "a room", "field": {"kind": "scene", "radius": 4.0}, "camera": {"distance": [0.2, 1.0]}})
    assert mine.field.radius == 4.0 and mine.camera.distance == (0.2, 1.0) and mine.field.blob == "scene"
    assert mine.camera.eval_distance == 1.0  # the held-out orbit stays where the cameras were
    assert make_spec("paper", {"prompt": "a room", "field": {"kind": "scene"}, "camera": {"distance": [0.2, 1.0], "eval_distance": 1.5}}
                     ).camera.eval_distance == 1.5  # unless the user asks for it
    smoke = make_spec("cpu-smoke", {"field": {"kind": "scene"}})
    assert smoke.prior == "analytic:room" and smoke.field.radius == 2.9
    assert make_spec("cpu-smoke").field.blob == "object" and make_spec("cpu-smoke").camera.view_dependent_prompts
    cams = CameraSampler(smoke.camera).sample(3, 16, torch.Generator().manual_seed(0))
    assert CameraSampler(smoke.camera).view_prompts("a cosy room", cams) == ["a cosy room"] * 3
    assert float(cams.distance.max()) <= 0.8  # inside the room


def test_the_panorama_shows_each_direction_where_blenders_world_looks_for_it():
    scene = room()

    def traced(tile, samples):
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


def _segment_in_ball(x: torch.Tensor, centre: torch.Tensor, radius: float) -> torch.Tensor:
    """Length of each segment 0 → x inside the ball (the exact optical depth over σ = 1)."""
    length = x.norm(dim=1)
    d = x / length[:, None]
    b = d @ centre
    disc = (b * b - (centre @ centre - radius * radius)).clamp_min(0).sqrt()
    return ((b + disc).clamp(max=length) - (b - disc).clamp(min=0)).clamp_min(0)


def test_the_optical_depth_table_matches_the_exact_integral():
    centre, sigma = torch.tensor([0.6, -0.3, 0.2]), 3.0
    density = lambda x: sigma * (((x - centre).norm(dim=1) < 1.0).float())  # noqa: E731
    table = optical_depth_table(density, (0.0, 0.0, 0.0), 2.5, rows=64, distances=200)
    x = (torch.rand(4000, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 2.0
    want = sigma * _segment_in_ball(x, centre, 1.0)
    err = (table(x) - want).abs()
    assert float(err.median()) < 0.02 and float(err.quantile(0.95)) < 0.15, (err.median(), err.quantile(0.95))
    assert float(want.std()) > 1.0  # the points span empty space, the ball's edge and its far side


def test_a_transparent_scene_says_there_is_no_surface_and_what_to_do():
    with pytest.raises(EngineError, match="transparent") as err:
        visible_depth(lambda x: torch.full_like(x[:, 0], 0.05), 2.9, scene_viewpoints(0.8), rows=16)
    assert "more steps" in err.value.hint
    visible_depth(lambda x: torch.full_like(x[:, 0], 0.5), 2.9, scene_viewpoints(0.8), rows=16)  # fog that adds up


def _room_with_fog(x: torch.Tensor) -> torch.Tensor:
    """The room plus a thin cloud (optical depth ≤ 0.24 through its middle) floating between the viewpoints."""
    cloud = 0.4 * ((x - torch.tensor([0.0, 0.45, 0.6])).norm(dim=1) < 0.3).float()
    return _room_density(x) + cloud


def test_a_room_is_extracted_from_inside_where_its_viewpoints_see_walls_and_not_its_fog():
    tau = visible_depth(_room_with_fog, 2.9, scene_viewpoints(0.8))
    v, f = (t.detach() for t in dmtet_from_density(tau, 64, SURFACE_DEPTH, 2.9, fill_radius=None, closed=False).extract())
    tri = v[f]
    centroid, normal = tri.mean(1), torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    # the −Y wall's inner face beside the marker disc (x away from it), not the slab's far side at −1.7
    front_wall = ((centroid[:, 1] < -1.45) & (centroid[:, 2].abs() < 0.5) & (centroid[:, 0].abs() > 0.6)
                  & (centroid[:, 0].abs() < 1.3))
    assert int(front_wall.sum()) > 20
    assert float((centroid[front_wall, 1] + 1.6).abs().max()) < 0.1  # on the wall's inner face
    assert float((normal[front_wall, 1] > 0).float().mean()) > 0.9  # the −Y wall faces +Y: into the room
    # every wall, floor and ceiling is there: faces in each of the six directions, none beyond the walls
    for axis, lo, hi in ((0, -1.6, 1.6), (1, -1.6, 1.6), (2, -0.9, 1.3)):
        assert float(centroid[:, axis].min()) < lo + 0.1 and float(centroid[:, axis].max()) > hi - 0.1
        assert float(centroid[:, axis].min()) > lo - 0.15 and float(centroid[:, axis].max()) < hi + 0.15
    # the faces lie on the room's surfaces, not around what one viewpoint cannot see behind an object
    # (95% within 0.05, half a cell; the rest close the 0.3-wide gap behind the crate that no viewpoint
    # sees. Solid wherever *any* viewpoint is blocked would put 5% of the faces 0.1 off)
    off_surface = scene_sdf(room(), centroid.double()).abs()
    assert float(off_surface.quantile(0.95)) < 0.07, float(off_surface.quantile(0.95))
    # the orange ball in the +X+Y corner is solid; the thin cloud is not
    assert int(((centroid - torch.tensor([0.95, 0.95, -0.55])).norm(dim=1) < 0.45).sum()) > 10
    assert int(((centroid - torch.tensor([0.0, 0.45, 0.6])).norm(dim=1) < 0.5).sum()) == 0


def _scene_stage(tmp_path, **nerf) -> NerfStage:
    spec = make_spec("cpu-smoke", {"field": {"kind": "scene"}, "nerf": nerf})
    return NerfStage(JobContext(spec, RunDir(tmp_path / "run"), lambda e: None))


def test_a_scene_renders_over_its_own_far_field_and_an_object_over_white(tmp_path):
    stage = _scene_stage(tmp_path)
    rep = stage.particles[0]
    with torch.no_grad():
        rep.background.net[-1].bias.fill_(-30.0)  # a black far field
    cams = stage.sampler.held_out_orbit(16, views=2)
    with torch.no_grad():
        out = stage.render_views(cams)
        white = rep.render(cams.index(0), torch.ones(1, 16, 16, 3), stage.cfg.samples_per_ray, None)
    see_through = 1.0 - out.opacity[:1]
    assert float(see_through.mean()) > 0.05  # the fresh scene is not opaque: the backdrop shows
    torch.testing.assert_close(out.rgb[:1], white.rgb - see_through, atol=1e-4, rtol=0)
    # the panorama too: over white its see-through pixels would be lighter by exactly (1 − opacity)
    stage.spec.export.panorama_width = 32
    (path,) = stage.write_panoramas()
    pano = np.asarray(Image.open(path), dtype=np.float32) / 255
    over_white = render_panorama(lambda tile, s: rep.render(tile, torch.ones(1, tile.height, tile.width, 3), s, None),
                                 32, stage.cfg.samples_per_ray).astype(np.float32) / 255
    assert pano.shape == (16, 32, 3) and float((over_white - pano).mean()) > 0.05
    obj = NerfStage(JobContext(make_spec("cpu-smoke"), RunDir(tmp_path / "obj"), lambda e: None))
    with torch.no_grad():
        obj.particles[0].background.net[-1].bias.fill_(-30.0)
    o = obj.render_views(obj.sampler.held_out_orbit(16, views=1))
    torch.testing.assert_close(o.rgb, obj.particles[0].render(obj.sampler.held_out_orbit(16, views=1),
                                                               torch.ones(1, 16, 16, 3), 64, None).rgb)


def test_the_z_variance_loss_gathers_each_solid_rays_weight(tmp_path):
    stage = _scene_stage(tmp_path)
    assert stage.cfg.lambda_z_variance == 1.0 and make_spec("cpu-smoke").nerf.lambda_z_variance == 0.0
    cams = stage.sampler.sample(1, 16, torch.Generator().manual_seed(0))
    out = stage.particles[0].render(cams, torch.ones(1, 16, 16, 3), 64, None)
    loss = z_variance_loss(out)
    torch.testing.assert_close(loss, out.depth_variance[out.opacity > 0.5].mean())
    torch.testing.assert_close(stage._regularisers(out, 0), loss)  # the scene's only regulariser
    # rays less than half opaque (sky, a window) do not count
    two = RenderOutput(rgb=torch.zeros(1, 1, 2, 3), opacity=torch.tensor([0.2, 0.9]).view(1, 1, 2, 1),
                       depth=torch.ones(1, 1, 2, 1), normal=None, depth_variance=torch.tensor([5.0, 1.0]).view(1, 1, 2, 1))
    assert float(z_variance_loss(two)) == 1.0
    loss.backward()
    grid = next(stage.particles[0].field.encoding.parameters()).grad
    assert grid is not None and float(grid.abs().sum()) > 0


def test_a_scene_is_evaluated_on_an_orbit_and_a_pan_from_the_centre():
    spec = make_spec("cpu-smoke", {"field": {"kind": "scene"}})
    cams, orbit = CameraSampler(spec.camera).held_out_views(32)
    assert (orbit, cams.batch) == (8, 16)
    assert torch.allclose(cams.c2w[8:, :3, 3], torch.zeros(8, 3))  # the pan stands at the centre
    ref = AnalyticPrior.from_name("room").reference_render(cams)
    # the pan's first view looks at the −Y wall: the marker disc fills the middle of the picture
    np.testing.assert_allclose(ref[8, 14:18, 14:18].mean((0, 1)).numpy(), MARKER_COLOR, atol=0.03)
    assert CameraSampler(make_spec("cpu-smoke").camera).held_out_views(32)[0].batch == 8  # objects: the orbit


# 150 steps at 32² from inside the room reach 25.6 dB on the orbit + centre pan (the preset's 400 at
# 64²: 29.6 dB, `vsdream bench quality --only scene`). Trivial answers on the same views: the room
# without its marker disc 23.4 dB, walls only 20.5, its mean colour 13.4, mirrored in x 13.0.
SHORT_SCENE_PSNR_DB = 24.5


def test_a_short_scene_run_learns_the_room_from_inside(tmp_path):
    spec = make_spec("cpu-smoke", {"field": {"kind": "scene"}, "nerf": {"steps": 150, "resolution_schedule": [[0, 32]]},
                                   "geometry": {"enabled": False}, "texture": {"enabled": False},
                                   "export": {"enabled": False}})
    out = run_job(spec, tmp_path / "run", lambda e: None)
    cams, orbit = CameraSampler(spec.camera).held_out_views(32)
    ref = AnalyticPrior.from_name("room").reference_render(cams)
    no_marker = AnalyticPrior([Scene("no-marker", room().primitives[:6] + room().primitives[7:])])
    trivial = {"no marker": psnr(no_marker.reference_render(cams), ref),
               "mean colour": psnr(ref.mean((0, 1, 2), keepdim=True).expand_as(ref), ref)}
    assert SHORT_SCENE_PSNR_DB > max(trivial.values()) + 0.5, trivial
    assert out["nerf"]["psnr"] >= SHORT_SCENE_PSNR_DB, (out["nerf"], trivial)
    assert min(out["nerf"]["psnr_orbit"], out["nerf"]["psnr_pan"]) >= SHORT_SCENE_PSNR_DB - 1.0
    # the pan's first view looks at −Y: the learnt room has its marker there, as the reference does
    ctx = JobContext(spec, RunDir(tmp_path / "run"), lambda e: None)
    stage = NerfStage(ctx)
    run_stage(ctx, stage)  # loads the final checkpoint
    with torch.no_grad():
        front = stage.render_views(cams.index(orbit)).rgb[0, 13:19, 13:19].mean((0, 1))
    palette = {"marker": MARKER_COLOR, **ROOM_WALLS}
    nearest = min(palette, key=lambda k: float((front - torch.tensor(palette[k])).norm()))
    assert nearest == "marker", (front, nearest)


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
    assert {"psnr", "psnr_orbit", "psnr_pan"} <= set(out["nerf"]) and "psnr_pan" in out["texture"]
    views = inside_views(0.5, 8)
    assert views.batch == 30 and math.isclose(float(views.fov_y[0]), math.radians(100.0), rel_tol=1e-6)
