"""Stage-1 density → DMTet: threshold the density, fit its bounding box, sample an SDF on the grid.

Follows the reference recipe (anchors-vsd.md §8): level = density − threshold (25 after softplus
for the blob-initialised field), a coarse-to-fine bbox with a 10% margin, SDF clamped to [−1, 1]
(scaled by the threshold so the zero crossing is the one marching cubes on the density would find).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import EngineError
from .dmtet import DMTet
from .tetgrid import TetGrid

DensityFn = Callable[[torch.Tensor], torch.Tensor]


def _query(fn: DensityFn, pts: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(pts[i:i + chunk]).reshape(-1).float() for i in range(0, pts.shape[0], chunk)])


def sdf_from_density(density: torch.Tensor, threshold: float) -> torch.Tensor:
    """Negative inside (density above threshold), clamped to [−1, 1]."""
    return ((threshold - density) / max(threshold, 1e-6)).clamp(-1.0, 1.0)


def fit_bbox(density_fn: DensityFn, threshold: float, half_extent: float = 1.0, probe_resolution: int = 64,
             margin: float = 0.1, passes: int = 2, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Box around {density > threshold}, refined `passes` times, grown by `margin` of its size."""
    lo = torch.full((3,), -float(half_extent), device=device)
    hi = -lo
    for _ in range(passes):
        grid = TetGrid(probe_resolution, lo, hi)
        pts = grid.vertices()
        occ = _query(density_fn, pts) > threshold
        if not bool(occ.any()):
            raise EngineError(
                f"no point of the stage-1 density exceeds the threshold {threshold:g} inside ±{half_extent:g}",
                hint="stage 1 produced an empty object: run more NeRF steps, or lower the extraction threshold")
        occupied = pts[occ]
        pad = grid.cell_size + margin * (occupied.max(0).values - occupied.min(0).values)
        lo = torch.maximum(occupied.min(0).values - pad, torch.full_like(lo, -half_extent))
        hi = torch.minimum(occupied.max(0).values + pad, torch.full_like(hi, half_extent))
    return lo, hi


def dmtet_from_density(density_fn: DensityFn, resolution: int, threshold: float = 25.0,
                       half_extent: float = 1.0, device: torch.device | str = "cpu") -> DMTet:
    """A DMTet whose zero level set is the thresholded stage-1 density inside a fitted box."""
    lo, hi = fit_bbox(density_fn, threshold, half_extent, device=device)
    grid = TetGrid(resolution, lo, hi)
    return DMTet(grid, sdf_from_density(_query(density_fn, grid.vertices()), threshold))
