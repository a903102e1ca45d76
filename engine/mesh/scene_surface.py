"""A scene's surfaces as the boundary of what its viewpoints see (scene mode's mesh).

An iso-level of a stage-1 scene's density is fragile: its walls are soft ramps, a level low enough
for one wall leaves holes in another, through which the mesh shows the untrained space beyond,
and fog floating in the room turns into floaters. What a render shows at a pixel is where the ray's
transmittance falls below one half. So here the solid is what no viewpoint sees through to:

    τ(x) = min over viewpoints p of ∫ σ along the segment p → x,   surface: τ = ln 2.

That surface is closed where the room is closed, open where rays leave the field (sky: the
panorama fills it in Blender), has no floaters (fog thinner than ln 2 never blocks a view), and
faces the viewpoints. τ is monotone along every ray from a viewpoint, so marching tetrahedra on it
find one crossing per ray. Each viewpoint's τ is tabulated on a spherical grid (directions ×
distance, one cumulative sum per direction) and looked up trilinearly: a few million density
evaluations per viewpoint, instead of one integral per grid vertex.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import EngineError

DensityFn = Callable[[torch.Tensor], torch.Tensor]
SURFACE_DEPTH = math.log(2.0)  # optical depth at which a ray's transmittance is one half


@dataclass
class OpticalDepthTable:
    """τ from `origin` on a (distance, polar angle, azimuth) grid: `table` (1, 1, R + 1, H, W + 1)
    holds τ at distances k·step (k = 0..R), polar angles at row centres, azimuths j·2π/W with the
    first column repeated at the end (so lookups wrap around)."""

    origin: torch.Tensor  # (3,)
    table: torch.Tensor
    step: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """τ at points x (N, 3); beyond the table's reach it stays at its last value (σ = 0 there)."""
        _, _, depth, rows, cols = self.table.shape
        v = x.to(self.table) - self.origin
        r = v.norm(dim=-1).clamp_min(1e-9)
        theta = torch.acos((v[:, 2] / r).clamp(-1.0, 1.0))
        phi = torch.atan2(v[:, 1], v[:, 0]) % (2 * math.pi)
        k = (r / self.step).clamp(max=depth - 1)
        i = (theta / math.pi * rows - 0.5).clamp(0.0, rows - 1)
        j = phi / (2 * math.pi) * (cols - 1)
        # grid_sample with align_corners=True: −1 and 1 are the first and last entries of each axis
        grid = torch.stack([2 * j / (cols - 1) - 1, 2 * i / max(rows - 1, 1) - 1, 2 * k / (depth - 1) - 1], dim=-1)
        out = F.grid_sample(self.table, grid.view(1, 1, 1, -1, 3), mode="bilinear", align_corners=True)
        return out.view(-1)


def optical_depth_table(density_fn: DensityFn, origin: Sequence[float], reach: float, rows: int = 64,
                        distances: int = 160, chunk: int = 1 << 18,
                        device: torch.device | str = "cpu") -> OpticalDepthTable:
    """Tabulate τ from `origin` out to distance `reach` (at least to where σ ends) on rows × 2·rows
    directions and `distances` steps (midpoint rule per step)."""
    cols = 2 * rows
    o = torch.as_tensor(origin, dtype=torch.float32, device=device)
    theta = math.pi * (torch.arange(rows, device=device, dtype=torch.float32) + 0.5) / rows
    phi = 2 * math.pi * torch.arange(cols, device=device, dtype=torch.float32) / cols
    st = torch.sin(theta)[:, None]
    dirs = torch.stack([st * torch.cos(phi), st * torch.sin(phi), torch.cos(theta)[:, None].expand(rows, cols)], -1)
    step = reach / distances
    mids = (torch.arange(distances, device=device, dtype=torch.float32) + 0.5) * step
    pts = (o + dirs.reshape(-1, 1, 3) * mids[None, :, None]).reshape(-1, 3)
    with torch.no_grad():
        sigma = torch.cat([density_fn(p).reshape(-1).float() for p in pts.split(chunk)])
    tau = torch.cumsum(sigma.view(rows, cols, distances) * step, dim=-1)
    tau = torch.cat([tau.new_zeros(rows, cols, 1), tau], dim=-1)  # τ = 0 at the viewpoint
    tau = torch.cat([tau, tau[:, :1]], dim=1)  # wrap the azimuth
    return OpticalDepthTable(o, tau.permute(2, 0, 1)[None, None].contiguous(), step)


def scene_viewpoints(distance: float) -> list[tuple[float, float, float]]:
    """The centre and four points `distance` away along ±X and ±Y: where scene cameras stand."""
    return [(0.0, 0.0, 0.0), (distance, 0.0, 0.0), (-distance, 0.0, 0.0), (0.0, distance, 0.0),
            (0.0, -distance, 0.0)]


def visible_depth(density_fn: DensityFn, radius: float, viewpoints: Sequence[Sequence[float]], rows: int = 64,
                  device: torch.device | str = "cpu") -> DensityFn:
    """τ(x): the least optical depth from any viewpoint to x (module docstring); as a 'density'
    for `extract.dmtet_from_density` with threshold SURFACE_DEPTH. `rows` polar rows (and twice
    as many azimuths, 2.5× as many distance steps): about the grid resolution, so a cell of the
    DMTet at the far wall spans about one direction of the table."""
    tables = [optical_depth_table(density_fn, p, radius + math.dist(p, (0.0, 0.0, 0.0)), rows,
                                  distances=max(160, int(2.5 * rows)), device=device) for p in viewpoints]
    if max(float(t.table[0, 0, -1].max()) for t in tables) < SURFACE_DEPTH:
        raise EngineError("the stage-1 scene is transparent: no ray from its viewpoints reaches half opacity, "
                          "so there is no surface to extract",
                          hint="run stage 1 for more steps, or check the prompt and prior; the panorama "
                               "(result/panorama.png) shows what stage 1 made")

    def tau(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([t(x) for t in tables]).min(dim=0).values

    return tau
