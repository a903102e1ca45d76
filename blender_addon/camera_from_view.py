"""Centre the azimuth/elevation range on the direction the viewport looks from (pure maths)."""
import math

from mathutils import Vector


def view_angles(view_dir_to_camera: Vector) -> tuple:
    """(elevation, azimuth) in radians of a camera sitting along `view_dir_to_camera` from the
    target (DESIGN.md §2: azimuth 0 = camera on −Y, counter-clockwise from above)."""
    d = Vector(view_dir_to_camera).normalized()
    elevation = math.asin(max(-1.0, min(1.0, d.z)))
    azimuth = math.atan2(d.x, -d.y)
    return elevation, azimuth


def view_direction_from_matrix(view_rotation_quat) -> Vector:
    """Unit vector from the orbit centre towards the viewer for a region_3d.view_rotation.

    The viewport camera looks down its local −Z, so the viewer sits along +Z of that rotation."""
    return (view_rotation_quat @ Vector((0.0, 0.0, 1.0))).normalized()


def centred_range(lo: float, hi: float, centre: float, limit_lo: float, limit_hi: float) -> tuple:
    """Shift [lo, hi] so its middle lands on `centre`, keeping its width and staying in limits."""
    width = min(hi - lo, limit_hi - limit_lo)
    new_lo = centre - 0.5 * width
    new_lo = max(limit_lo, min(new_lo, limit_hi - width))
    return new_lo, new_lo + width


ELEVATION_LIMIT = math.radians(89.0)
AZIMUTH_LIMIT = math.radians(360.0)


def range_from_view(props_ranges: dict, view_dir_to_camera: Vector) -> dict:
    """New {'elevation': (lo, hi), 'azimuth': (lo, hi)} centred on the view direction.

    A full-circle azimuth range stays full (it has no centre to move); the elevation range keeps
    its width and is clamped to ±89°."""
    el, az = view_angles(view_dir_to_camera)
    el_lo, el_hi = props_ranges["elevation"]
    az_lo, az_hi = props_ranges["azimuth"]
    new_el = centred_range(el_lo, el_hi, el, -ELEVATION_LIMIT, ELEVATION_LIMIT)
    if az_hi - az_lo >= 2 * math.pi - 1e-6:
        new_az = (az_lo, az_hi)
    else:
        new_az = centred_range(az_lo, az_hi, az, -AZIMUTH_LIMIT, AZIMUTH_LIMIT)
    return {"elevation": new_el, "azimuth": new_az}
