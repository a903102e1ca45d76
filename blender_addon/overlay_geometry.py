"""Camera-range overlay geometry as plain data, so it is testable without a GPU.

The draw handler (overlay_draw.py) only turns these polylines into line batches. Conventions are
DESIGN.md §2: azimuth 0 = camera on −Y, counter-clockwise seen from above; elevation 90° = above.
"""
import math
from dataclasses import dataclass, field

from mathutils import Matrix, Vector


@dataclass
class RangeSettings:
    """The camera range to draw (radians and metres), centred on `center`."""

    elevation: tuple = (math.radians(-10.0), math.radians(45.0))
    azimuth: tuple = (math.radians(-180.0), math.radians(180.0))
    distance: tuple = (1.0, 1.5)
    fov: tuple = (math.radians(40.0), math.radians(70.0))
    center: tuple = (0.0, 0.0, 0.0)


@dataclass
class OverlayGeometry:
    """Polylines (lists of Vectors): one ring per elevation limit, one meridian per azimuth limit,
    and a few sample frusta, each a list of 2-point segments."""

    rings: list = field(default_factory=list)
    ring_elevations: list = field(default_factory=list)
    meridians: list = field(default_factory=list)
    meridian_azimuths: list = field(default_factory=list)
    frusta: list = field(default_factory=list)
    frustum_eyes: list = field(default_factory=list)


def camera_position(elevation: float, azimuth: float, distance: float, center=(0.0, 0.0, 0.0)) -> Vector:
    """World position of an orbit camera (same formula as engine/cameras.py)."""
    ce = math.cos(elevation)
    return Vector(center) + Vector((distance * ce * math.sin(azimuth),
                                    -distance * ce * math.cos(azimuth),
                                    distance * math.sin(elevation)))


def look_at_rotation(eye: Vector, target: Vector) -> Matrix:
    """3×3 camera-to-world rotation (OpenGL: looks down −Z, +Y up, Z-up world)."""
    forward = (target - eye).normalized()
    right = forward.cross(Vector((0.0, 0.0, 1.0)))
    if right.length < 1e-6:  # looking straight up or down
        right = Vector((1.0, 0.0, 0.0))
    right.normalize()
    up = right.cross(forward)
    return Matrix((right, up, -forward)).transposed()


def _span(lo: float, hi: float, n: int) -> list:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)] if n > 1 else [lo]


def frustum_segments(eye: Vector, target: Vector, fov_y: float, depth: float, aspect: float = 1.0) -> list:
    """Eight segments of a pyramid from `eye` towards `target`, `depth` long, vertical fov `fov_y`."""
    rot = look_at_rotation(eye, target)
    h = depth * math.tan(0.5 * fov_y)
    w = h * aspect
    corners = [eye + rot @ Vector((sx * w, sy * h, -depth)) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    segs = [(eye, c) for c in corners]
    segs += [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
    return segs


def build_overlay(s: RangeSettings, ring_points: int = 64, meridian_points: int = 16,
                  frusta_azimuths: int = 4, frusta_elevations: int = 2) -> OverlayGeometry:
    """Rings at both elevation limits (radius = far distance), meridians at both azimuth limits,
    and sample frusta at the mean distance spanning the range, each aimed at the centre."""
    center = Vector(s.center)
    el_lo, el_hi = s.elevation
    az_lo, az_hi = s.azimuth
    radius = s.distance[1]
    geo = OverlayGeometry()
    full_circle = az_hi - az_lo >= 2 * math.pi - 1e-6
    for el in sorted({el_lo, el_hi}):
        pts = [camera_position(el, a, radius, center) for a in _span(az_lo, az_hi, ring_points)]
        geo.rings.append(pts)
        geo.ring_elevations.append(el)
    for az in ([az_lo] if full_circle else [az_lo, az_hi]):
        geo.meridians.append([camera_position(e, az, radius, center) for e in _span(el_lo, el_hi, meridian_points)])
        geo.meridian_azimuths.append(az)
    mid_dist = 0.5 * (s.distance[0] + s.distance[1])
    mid_fov = 0.5 * (s.fov[0] + s.fov[1])
    depth = 0.25 * mid_dist
    az_samples = _span(az_lo, az_hi, frusta_azimuths + (1 if full_circle else 0))
    if full_circle:
        az_samples = az_samples[:-1]  # the last one would repeat the first
    for el in _span(el_lo, el_hi, frusta_elevations):
        for az in az_samples:
            eye = camera_position(el, az, mid_dist, center)
            geo.frusta.append(frustum_segments(eye, center, mid_fov, depth))
            geo.frustum_eyes.append(eye)
    return geo


def settings_from_scene(props, center=(0.0, 0.0, 0.0)) -> RangeSettings:
    """Read the Scene's VSDream settings (properties.py) into a RangeSettings."""
    return RangeSettings(elevation=(props.elevation_min, props.elevation_max),
                         azimuth=(props.azimuth_min, props.azimuth_max),
                         distance=(props.distance_min, props.distance_max),
                         fov=(props.fov_min, props.fov_max), center=tuple(center))
