"""Fill a stage-1 solid's interior before meshing, so the surface is the object's outside only.

Renders only constrain a NeRF's integrated opacity, so the inside of a short run's object is a
sponge of densities on both sides of the iso-level (cpu-smoke marker toy: 28% of the interior
below it). The pockets connect through pinholes, so they are neither separate components (which
`visibility.drop_hidden_components` removes) nor enclosed cavities (1% of them were); the
iso-surface around them held 45% of the mesh's area, all inside the object.

Outside is what a morphological closing leaves: flood-fill from the box boundary through the
vertices that stay empty after growing the solid by r cells, then grow that region back by r.
Passages narrower than 2r cells cannot carry the outside in. A closing also fills real creases
narrower than 2r (under a chin, where an arm meets a body), so empty vertices near the outside
that see the border along an axis stay empty: creases are open to some side, sponge pockets
behind the object's shell are not.

Vertex volumes are (n, n, n) bool tensors indexed [x, y, z], as `TetGrid.vertices()` orders them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def dilate(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Grow a bool volume by a (2r+1)³ cube, separably (three 1-D max pools), no wrap at the border."""
    if r <= 0:
        return mask
    x = mask.float()[None, None]
    for kernel in ((2 * r + 1, 1, 1), (1, 2 * r + 1, 1), (1, 1, 2 * r + 1)):
        x = F.max_pool3d(x, kernel, stride=1, padding=tuple(k // 2 for k in kernel))
    return x[0, 0] > 0


def _grow6(mask: torch.Tensor) -> torch.Tensor:
    """One step of 6-connected growth (faces only: the outside may not slip through edges)."""
    out = mask.clone()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    out[:, :, 1:] |= mask[:, :, :-1]
    out[:, :, :-1] |= mask[:, :, 1:]
    return out


def reachable_from_border(free: torch.Tensor) -> torch.Tensor:
    """The free vertices 6-connected to the volume's border through free vertices."""
    reach = torch.zeros_like(free)
    for axis in range(3):
        for index in (0, -1):
            sl = [slice(None)] * 3
            sl[axis] = index
            reach[tuple(sl)] = free[tuple(sl)]
    while True:
        grown = _grow6(reach) & free
        if torch.equal(grown, reach):
            return reach
        reach = grown


def seen_along_axes(occupied: torch.Tensor) -> torch.Tensor:
    """Empty vertices with a clear line to the border along at least one of the six axis directions."""
    seen = torch.zeros_like(occupied)
    for axis in range(3):
        blocked_from_start = occupied.int().cumsum(axis) > 0
        blocked_from_end = occupied.flip(axis).int().cumsum(axis).flip(axis) > 0
        seen |= ~blocked_from_start | ~blocked_from_end
    return seen & ~occupied


def closing_radius_cells(radius: float, cell_size: float) -> int:
    """A radius in world units as whole cells (at least one when positive)."""
    return max(1, math.ceil(radius / max(cell_size, 1e-9) - 1e-6)) if radius > 0 else 0


def interior_mask(occupied: torch.Tensor, r: int) -> torch.Tensor:
    """Empty vertices that belong inside the solid: not reached by the outside through passages at
    least 2r cells wide, and not an axis-visible crease within 2r cells of that outside."""
    free = ~occupied
    if r <= 0:
        return free & ~reachable_from_border(free)
    grown = dilate(reachable_from_border(~dilate(occupied, r)), r)
    outside = grown & free
    crease = seen_along_axes(occupied) & dilate(grown, r)  # cube dilations compose: r then r = 2r
    return free & ~outside & ~crease
