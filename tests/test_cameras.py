"""Camera conventions (DESIGN.md §2) checked on matrices, rays and real renders of the marker scene."""
import math
from functools import partial

import pytest
import torch
from scene_helpers import one_thread, orbit_cams  # noqa: F401  (autouse fixture)

from engine.cameras import CameraSampler
from engine.priors.scenes import ARM_COLOR, MARKER_COLOR, builtin_scene
from engine.spec import CameraSpec

cams = partial(orbit_cams, el_deg=0.0, res=32)


def colour_mask(rgb, colour, tol=0.15):
    return ((rgb - torch.tensor(colour)).abs().amax(-1) < tol)


def test_azimuth_zero_is_on_minus_y_and_ninety_on_plus_x():
    c = cams([0, 90, 180, 270], el_deg=0.0, dist=2.0)
    pos = c.c2w[:, :3, 3]
    expected = torch.tensor([[0, -2, 0], [2, 0, 0], [0, 2, 0], [-2, 0, 0]], dtype=torch.float32)
    assert torch.allclose(pos, expected, atol=1e-5)
    up = cams([30], el_deg=30.0, dist=2.0).c2w[0, :3, 3]
    assert up[2] == pytest.approx(1.0, abs=1e-5)  # elevation lifts the camera along +Z


@pytest.mark.parametrize("el", [-10.0, 0.0, 45.0, 89.0, 90.0])
def test_c2w_is_a_rotation_looking_at_the_origin_with_z_up(el):
    c = cams([0, 37, 123, 250], el_deg=el, dist=1.3)
    rot, pos = c.c2w[:, :3, :3], c.c2w[:, :3, 3]
    eye = torch.eye(3).expand_as(rot)
    assert torch.allclose(rot.transpose(1, 2) @ rot, eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(4), atol=1e-5)
    look = -rot[:, :, 2]  # OpenGL: the camera looks down its −Z
    assert torch.allclose(look, -pos / pos.norm(dim=-1, keepdim=True), atol=1e-5)
    if el < 89.0:
        assert (rot[:, 2, 1] > 0).all()  # camera +Y has a positive world-Z part: not upside down
    assert torch.equal(c.c2w[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(4, 4))


def test_rays_top_row_first_and_right_is_camera_plus_x():
    c = cams([0], el_deg=0.0, res=9)
    o, d = c.rays()
    assert torch.allclose(o[0, 4, 4], c.c2w[0, :3, 3])
    assert torch.allclose(d[0, 4, 4], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)  # centre looks along +Y
    assert d[0, 0, 4, 2] > 0 > d[0, 8, 4, 2]  # top row looks up (+Z)
    assert d[0, 4, 8, 0] > 0 > d[0, 4, 0, 0]  # right column looks toward +X from the front
    assert torch.allclose(d.norm(dim=-1), torch.ones(1, 9, 9), atol=1e-6)


def test_front_marker_visible_from_the_front_only_and_arm_on_plus_x():
    scene = builtin_scene("marker")
    r = scene.render(cams([0, 180, 90], el_deg=15.0, res=32), supersample=1)
    rgb = r.rgb * r.alpha
    marker = colour_mask(rgb, MARKER_COLOR)
    arm = colour_mask(rgb, ARM_COLOR)
    assert marker[0].sum() > 30  # a large magenta disc from the front
    assert marker[1].sum() == 0  # the body hides it from the back
    cols = torch.arange(32)
    arm_x_front = (arm[0] * cols).sum() / arm[0].sum()
    arm_x_back = (arm[1] * cols).sum() / arm[1].sum()
    assert arm_x_front > 20 and arm_x_back < 12  # +X is image-right from the front, image-left from the back
    # from +X (azimuth 90°) the front (−Y) is on the image's left
    mx = (marker[2] * cols).sum() / marker[2].sum().clamp_min(1)
    assert marker[2].sum() > 0 and mx < 16


def test_stratified_azimuth_covers_the_range():
    spec = CameraSpec()
    sampler = CameraSampler(spec)
    gen = torch.Generator().manual_seed(3)
    b = 8
    c = sampler.sample(b, 16, gen)
    width = 2 * math.pi / b
    lo = math.radians(spec.azimuth_deg[0])
    for i, a in enumerate(c.azimuth.tolist()):
        assert lo + i * width - 1e-5 <= a <= lo + (i + 1) * width + 1e-5
    el = torch.rad2deg(c.elevation)
    assert ((el >= spec.elevation_deg[0] - 1e-4) & (el <= spec.elevation_deg[1] + 1e-4)).all()
    assert ((c.distance >= spec.distance[0]) & (c.distance <= spec.distance[1])).all()
    fov = torch.rad2deg(c.fov_y)
    assert ((fov >= spec.fov_deg[0] - 1e-4) & (fov <= spec.fov_deg[1] + 1e-4)).all()
    again = sampler.sample(b, 16, torch.Generator().manual_seed(3))
    assert torch.equal(again.c2w, c.c2w)  # same generator seed, same cameras


def test_view_suffix_and_held_out_orbit():
    sampler = CameraSampler(CameraSpec())
    r = math.radians
    assert sampler.view_suffix(r(10), r(0)) == "front"
    assert sampler.view_suffix(r(10), r(90)) == "side"
    assert sampler.view_suffix(r(10), r(-90)) == "side"
    assert sampler.view_suffix(r(10), r(180)) == "back"
    assert sampler.view_suffix(r(10), r(-170)) == "back"
    assert sampler.view_suffix(r(70), r(0)) == "overhead"
    orbit = sampler.held_out_orbit(16, views=4)
    assert torch.allclose(orbit.azimuth, torch.tensor([0.0, 0.5, 1.0, 1.5]) * math.pi)
    assert orbit.c2w[0, 1, 3] < 0  # first orbit view is the front (−Y)
    prompts = sampler.view_prompts("a toy", orbit)
    assert prompts[0] == "a toy, front view" and prompts[2] == "a toy, back view"
