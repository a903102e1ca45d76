"""Camera-range overlay geometry as plain data, so it is testable without a GPU.

The draw handler (overlay_draw.py) only turns these polylines into line batches. Conventions are
DESIGN.md §2: azimuth 0 = camera on −Y, counter-clockwise seen from above; elevation 90° = above.
Mode Scene (`inside`) draws the band of the sphere the cameras stand in (they are 0.1–2.3 from the
centre and look at it, engine/scene_mode.py) as a cage of rings and meridians, with frusta reaching
the centre, so an artist sees how far across the room the views reach.
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
    inside: bool = False  # Mode Scene: the cameras stand inside the scene, `distance` from its centre


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
    and sample frusta at the mean distance spanning the range, each aimed at the centre.
    Inside (Mode Scene): build_inside_overlay."""
    if s.inside:
        return build_inside_overlay(s, ring_points, meridian_points, frusta_azimuths, frusta_elevations)
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
    _add_frusta(geo, s, frusta_azimuths, frusta_elevations, depth_factor=0.25)
    return geo


def _azimuths(az_lo: float, az_hi: float, n: int) -> list:
    """`n` azimuths spanning the range; a full circle leaves out the end that repeats the start."""
    full_circle = az_hi - az_lo >= 2 * math.pi - 1e-6
    samples = _span(az_lo, az_hi, n + (1 if full_circle else 0))
    return samples[:-1] if full_circle else samples


def _add_frusta(geo: OverlayGeometry, s: RangeSettings, n_az: int, n_el: int, depth_factor: float) -> None:
    """Sample frusta at the mean distance over the range, aimed at the centre, `depth_factor` × that distance long."""
    center = Vector(s.center)
    mid_dist = 0.5 * (s.distance[0] + s.distance[1])
    mid_fov = 0.5 * (s.fov[0] + s.fov[1])
    for el in _span(s.elevation[0], s.elevation[1], n_el):
        for az in _azimuths(s.azimuth[0], s.azimuth[1], n_az):
            eye = camera_position(el, az, mid_dist, center)
            geo.frusta.append(frustum_segments(eye, center, mid_fov, depth_factor * mid_dist))
            geo.frustum_eyes.append(eye)


def build_inside_overlay(s: RangeSettings, ring_points: int = 64, meridian_points: int = 16,
                         frusta_azimuths: int = 4, frusta_elevations: int = 2, rings: int = 5,
                         meridians: int = 8) -> OverlayGeometry:
    """Mode Scene: the cameras' sphere at the far distance from the centre, drawn as `rings` rings over
    the elevation range and `meridians` meridians over the azimuth range, and sample frusta at the mean
    distance looking at the centre, as long as that distance (their far end reaches the centre)."""
    center = Vector(s.center)
    radius = s.distance[1]
    geo = OverlayGeometry()
    for el in _span(s.elevation[0], s.elevation[1], rings):
        geo.rings.append([camera_position(el, a, radius, center) for a in _span(*s.azimuth, ring_points)])
        geo.ring_elevations.append(el)
    for az in _azimuths(s.azimuth[0], s.azimuth[1], meridians):
        geo.meridians.append([camera_position(e, az, radius, center) for e in _span(*s.elevation, meridian_points)])
        geo.meridian_azimuths.append(az)
    _add_frusta(geo, s, frusta_azimuths, frusta_elevations, depth_factor=1.0)
    return geo


def settings_from_scene(props, center=(0.0, 0.0, 0.0)) -> RangeSettings:
    """Read the Scene's VSDream settings (properties.py) into a RangeSettings (Mode Scene: the
    distances from the centre)."""
    inside = getattr(props, "scene_mode", "object") == "scene"
    distance = (props.scene_distance_min, props.scene_distance_max) if inside else (
        props.distance_min, props.distance_max)
    return RangeSettings(elevation=(props.elevation_min, props.elevation_max),
                         azimuth=(props.azimuth_min, props.azimuth_max), distance=distance,
                         fov=(props.fov_min, props.fov_max), center=tuple(center), inside=inside)
