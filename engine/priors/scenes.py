"""Built-in reference scenes for the analytic prior, and surface samples for geometry metrics.

The objects fit inside radius 0.8 around the origin in Blender's frame (Z up, front faces −Y);
"room" is a scene-mode world around the origin (inside radius 2.8) that the cameras stand in.
"marker" carries a magenta disc on its front (−Y) that its body hides from the back, and a cyan
arm on its +X side only, so front/back and left/right (mirror) mistakes both show in a render.
The "marker-red/green/blue" variants share its geometry with a different body colour: a K=3
mixture whose modes differ only in colour.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .sdf import Primitive, Scene, capsule, cylinder, ellipsoid, rounded_box, scene_normal, scene_sdf, sphere, torus

MARKER_COLOR = (0.95, 0.05, 0.75)  # the front disc
ARM_COLOR = (0.1, 0.8, 0.85)  # on +X only
BODY_COLORS = {"marker": (0.95, 0.55, 0.15), "marker-red": (0.85, 0.12, 0.1),
               "marker-green": (0.15, 0.75, 0.2), "marker-blue": (0.15, 0.3, 0.9)}
_BLACK = (0.05, 0.05, 0.06)


def marker_toy(name: str = "marker", body: tuple[float, float, float] = BODY_COLORS["marker"]) -> Scene:
    """A toy: body, head with eyes, base plate, front marker disc (−Y) and a +X arm."""
    prims: list[Primitive] = [
        rounded_box((0.0, 0.0, -0.05), (0.28, 0.2, 0.3), body, rounding=0.08),
        sphere((0.0, 0.0, 0.42), 0.2, (0.98, 0.9, 0.75)),
        sphere((-0.075, -0.165, 0.47), 0.04, _BLACK),
        sphere((0.075, -0.165, 0.47), 0.04, _BLACK),
        cylinder((0.0, 0.0, -0.42), 0.36, 0.06, (0.2, 0.22, 0.3)),
        cylinder((0.0, -0.21, -0.02), 0.15, 0.04, MARKER_COLOR, axis=(0.0, 1.0, 0.0)),
        capsule((0.26, 0.0, 0.05), (0.46, 0.0, 0.25), 0.07, ARM_COLOR),
    ]
    return Scene(name, tuple(prims))


def snowman() -> Scene:
    """Three snowballs, a top hat, a red scarf and a carrot nose pointing to −Y."""
    white = (0.95, 0.95, 0.97)
    prims = (
        sphere((0.0, 0.0, -0.38), 0.32, white),
        sphere((0.0, 0.0, 0.05), 0.24, white),
        sphere((0.0, 0.0, 0.4), 0.17, white),
        cylinder((0.0, 0.0, 0.55), 0.17, 0.015, _BLACK),
        cylinder((0.0, 0.0, 0.64), 0.1, 0.09, _BLACK),
        torus((0.0, 0.0, 0.25), 0.15, 0.045, (0.85, 0.1, 0.12)),
        capsule((0.0, -0.14, 0.42), (0.0, -0.3, 0.39), 0.028, (1.0, 0.5, 0.05)),
        sphere((0.0, -0.225, 0.1), 0.03, _BLACK),
        sphere((0.0, -0.235, 0.0), 0.03, _BLACK),
    )
    return Scene("snowman", prims)


def table() -> Scene:
    """A wooden table with an apple, a blue ring and a green vase on top."""
    wood = (0.55, 0.35, 0.2)
    legs = tuple(cylinder((sx * 0.42, sy * 0.25, -0.22), 0.035, 0.24, wood)
                 for sx in (-1.0, 1.0) for sy in (-1.0, 1.0))
    prims = (
        rounded_box((0.0, 0.0, 0.05), (0.5, 0.32, 0.035), wood, rounding=0.02),
        *legs,
        sphere((0.18, -0.05, 0.175), 0.09, (0.85, 0.1, 0.1)),
        torus((-0.05, -0.16, 0.115), 0.08, 0.03, (0.1, 0.25, 0.9)),
        ellipsoid((-0.25, 0.12, 0.24), (0.07, 0.07, 0.155), (0.15, 0.7, 0.3)),
    )
    return Scene("table", prims)


ROOM_HALF = (1.6, 1.6)  # interior half extents along X and Y
ROOM_FLOOR, ROOM_CEILING = -0.9, 1.3
ROOM_WALLS = {"-Y": (0.3, 0.55, 0.85), "+Y": (0.9, 0.8, 0.35), "-X": (0.4, 0.75, 0.4), "+X": (0.85, 0.45, 0.4),
              "floor": (0.55, 0.4, 0.3), "ceiling": (0.92, 0.92, 0.9)}


def room() -> Scene:
    """A room seen from inside (scene mode): six walls of different colours, a magenta marker disc on
    the −Y wall, an orange ball in the +X+Y corner and a teal crate in the −X+Y corner. The walls are
    slabs, so the camera stands outside every solid and sphere tracing works unchanged."""
    hx, hy = ROOM_HALF
    zc, hz, th = 0.5 * (ROOM_FLOOR + ROOM_CEILING), 0.5 * (ROOM_CEILING - ROOM_FLOOR), 0.05
    w = ROOM_WALLS
    prims = (
        rounded_box((0.0, -hy - th, zc), (hx + 2 * th, th, hz + 2 * th), w["-Y"]),
        rounded_box((0.0, hy + th, zc), (hx + 2 * th, th, hz + 2 * th), w["+Y"]),
        rounded_box((-hx - th, 0.0, zc), (th, hy + 2 * th, hz + 2 * th), w["-X"]),
        rounded_box((hx + th, 0.0, zc), (th, hy + 2 * th, hz + 2 * th), w["+X"]),
        rounded_box((0.0, 0.0, ROOM_FLOOR - th), (hx + 2 * th, hy + 2 * th, th), w["floor"]),
        rounded_box((0.0, 0.0, ROOM_CEILING + th), (hx + 2 * th, hy + 2 * th, th), w["ceiling"]),
        cylinder((0.0, -hy, 0.25), 0.4, 0.04, MARKER_COLOR, axis=(0.0, 1.0, 0.0)),
        sphere((0.95, 0.95, ROOM_FLOOR + 0.35), 0.35, (0.95, 0.55, 0.15)),
        rounded_box((-1.0, 0.95, ROOM_FLOOR + 0.3), (0.3, 0.3, 0.3), (0.1, 0.65, 0.65), rounding=0.03),
    )
    return Scene("room", prims)


BUILTIN_SCENES: dict[str, Callable[[], Scene]] = {
    "marker": marker_toy,
    **{name: (lambda n=name: marker_toy(n, BODY_COLORS[n])) for name in ("marker-red", "marker-green", "marker-blue")},
    "snowman": snowman,
    "table": table,
    "room": room,
}


def builtin_scene(name: str) -> Scene:
    if name not in BUILTIN_SCENES:
        raise ValueError(f"unknown built-in scene {name!r}; choose one of {', '.join(BUILTIN_SCENES)}")
    return BUILTIN_SCENES[name]()


def sample_surface(scene, n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3) points on the reference surface, about uniform by area.

    SDF scenes: uniform points in the bounding cube that fall in a thin shell |f| < δ (shell volume
    ∝ area) are projected onto f = 0 along the gradient. Mesh scenes sample their triangles.
    """
    if not isinstance(scene, Scene):
        return scene.sample_surface(n, gen)
    delta, batch = 0.01, 1 << 17
    found: list[torch.Tensor] = []
    total = 0
    for _ in range(1000):
        p = (torch.rand(batch, 3, generator=gen) * 2 - 1) * scene.bound
        p = p[scene_sdf(scene, p).abs() < delta]
        for _ in range(4):
            p = p - scene_sdf(scene, p)[:, None] * scene_normal(scene, p)
        p = p[scene_sdf(scene, p).abs() < 1e-4]  # drop the few that sat on a crease and did not settle
        found.append(p)
        total += p.shape[0]
        if total >= n:
            break
    return torch.cat(found)[:n]
