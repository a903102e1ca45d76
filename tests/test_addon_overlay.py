"""Camera-range overlay geometry and 'From view' maths (pure functions over mathutils)."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("bpy")
import addon_helpers  # noqa: E402,F401  (puts the repo root on sys.path)
from mathutils import Vector  # noqa: E402  (mathutils comes with the bpy module)

from blender_addon import camera_from_view as cfv  # noqa: E402
from blender_addon.overlay_geometry import RangeSettings, build_overlay, camera_position  # noqa: E402

R = math.radians


def _elevation(p: Vector, center: Vector) -> float:
    d = p - center
    return math.atan2(d.z, math.hypot(d.x, d.y))


def _azimuth(p: Vector, center: Vector) -> float:
    d = p - center
    return math.atan2(d.x, -d.y)


def test_azimuth_zero_is_the_front_camera_on_minus_y():
    assert tuple(camera_position(0.0, 0.0, 2.0)) == pytest.approx((0.0, -2.0, 0.0), abs=1e-6)
    assert tuple(camera_position(0.0, R(90), 2.0)) == pytest.approx((2.0, 0.0, 0.0), abs=1e-6)  # CCW from above
    assert tuple(camera_position(R(90), 0.0, 2.0)) == pytest.approx((0.0, 0.0, 2.0), abs=1e-6)


def test_rings_sit_at_the_configured_elevations():
    center = Vector((1.0, 2.0, 0.5))
    s = RangeSettings(elevation=(R(-10), R(45)), azimuth=(R(-60), R(90)), distance=(1.2, 2.0),
                      fov=(R(40), R(60)), center=tuple(center))
    geo = build_overlay(s)
    assert geo.ring_elevations == pytest.approx([R(-10), R(45)])
    for ring, el in zip(geo.rings, geo.ring_elevations, strict=True):
        for p in ring:
            assert _elevation(p, center) == pytest.approx(el, abs=1e-5)
            assert (p - center).length == pytest.approx(2.0, abs=1e-5)  # the far distance
        # a partial ring spans exactly the azimuth range
        assert _azimuth(ring[0], center) == pytest.approx(R(-60), abs=1e-5)
        assert _azimuth(ring[-1], center) == pytest.approx(R(90), abs=1e-5)


def test_meridians_sit_at_the_azimuth_limits():
    s = RangeSettings(elevation=(R(0), R(60)), azimuth=(R(-45), R(30)), distance=(1.0, 1.5))
    geo = build_overlay(s)
    assert geo.meridian_azimuths == pytest.approx([R(-45), R(30)])
    center = Vector((0, 0, 0))
    for line, az in zip(geo.meridians, geo.meridian_azimuths, strict=True):
        assert all(_azimuth(p, center) == pytest.approx(az, abs=1e-5) for p in line)
        assert _elevation(line[0], center) == pytest.approx(R(0), abs=1e-5)
        assert _elevation(line[-1], center) == pytest.approx(R(60), abs=1e-5)
    # a full circle has one seam meridian, not two on top of each other
    assert len(build_overlay(RangeSettings(azimuth=(-math.pi, math.pi))).meridians) == 1


def test_frusta_at_the_mean_distance_looking_at_the_centre():
    center = Vector((0.0, 0.0, 1.0))
    s = RangeSettings(elevation=(R(10), R(30)), azimuth=(R(0), R(90)), distance=(2.0, 3.0),
                      fov=(R(40), R(40)), center=tuple(center))
    geo = build_overlay(s, frusta_azimuths=3, frusta_elevations=2)
    assert len(geo.frusta) == 6 and all(len(f) == 8 for f in geo.frusta)
    for eye, segs in zip(geo.frustum_eyes, geo.frusta, strict=True):
        assert (eye - center).length == pytest.approx(2.5, abs=1e-5)
        far = [b for a, b in segs[:4]]  # the four edges from the eye to the far corners
        mid = sum(far, Vector()) / 4
        axis = (mid - eye).normalized()
        assert axis.dot((center - eye).normalized()) == pytest.approx(1.0, abs=1e-5)
        # the corner rays open at the vertical field of view
        half = math.atan(abs((far[2] - far[1]).length / 2) / (mid - eye).length)
        assert 2 * half == pytest.approx(R(40), abs=1e-4)


def test_view_angles_follow_the_convention():
    assert cfv.view_angles(Vector((0, -1, 0))) == pytest.approx((0.0, 0.0))
    assert cfv.view_angles(Vector((1, 0, 0))) == pytest.approx((0.0, R(90)))
    el, az = cfv.view_angles(Vector((0, 1, 1)))
    assert el == pytest.approx(R(45)) and abs(az) == pytest.approx(math.pi)


def test_range_from_view_keeps_widths_and_limits():
    ranges = {"elevation": (R(-10), R(30)), "azimuth": (R(-20), R(20))}
    new = cfv.range_from_view(ranges, Vector((0.0, 0.0, 1.0)))  # straight down from above
    assert new["elevation"][1] == pytest.approx(R(89))  # clamped, width kept
    assert new["elevation"][1] - new["elevation"][0] == pytest.approx(R(40))
    full = cfv.range_from_view({"elevation": (0.0, 0.1), "azimuth": (-math.pi, math.pi)}, Vector((1, 0, 0)))
    assert full["azimuth"] == pytest.approx((-math.pi, math.pi))  # a full circle has no centre to move
