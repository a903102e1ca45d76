"""Stage-1 density → DMTet: threshold the density, fit its bounding box, sample an SDF on the grid.

Follows the reference recipe (anchors-vsd.md §8): level = density − threshold (25 after softplus
for the blob-initialised field), a coarse-to-fine bbox with a 10% margin, SDF clamped to [−1, 1]
(scaled by the threshold so the zero crossing is the one marching cubes on the density would find).

A fixed 25 suits a long-trained field; a short run's field can be opaque at densities well below
it (a cpu-smoke body at σ ≈ 10 came out as a hollow rim). `silhouette_threshold` therefore checks
the level against what the field renders: a ray sees the solid {σ > τ} iff the largest σ on it
exceeds τ, and should iff the field's opacity on it exceeds ½; the level keeps 25 when it
disagrees on at most 2% of the rays more than the best level does (grazing rays through a soft
edge always disagree a little), and moves to the best level otherwise.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..errors import EngineError
from .dmtet import DMTet
from .solidify import closing_radius_cells, interior_mask
from .tetgrid import TetGrid

DensityFn = Callable[[torch.Tensor], torch.Tensor]
FILL_RADIUS = 0.03  # world units: 2 cells at grid 64, 3 at 128 (see solidify)


def _query(fn: DensityFn, pts: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(pts[i:i + chunk]).reshape(-1).float() for i in range(0, pts.shape[0], chunk)])


def sdf_from_density(density: torch.Tensor, threshold: float) -> torch.Tensor:
    """Negative inside (density above threshold), clamped to [−1, 1]."""
    return ((threshold - density) / max(threshold, 1e-6)).clamp(-1.0, 1.0)


def fit_bbox(density_fn: DensityFn, threshold: float, half_extent: float = 1.0, probe_resolution: int = 48,
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


def _density_along_rays(density_fn: DensityFn, cams, radius: float, samples: int,
                        device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Density at `samples` bin centres along each camera ray's chord of the sphere (rays that miss
    it are dropped): (R, samples) densities and (R,) bin lengths."""
    from ..render import sphere_intersect
    origins, dirs = cams.to(device).rays()
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    near, far, meets = sphere_intersect(o, d, radius)
    o, d, near, far = o[meets], d[meets], near[meets], far[meets]
    u = (torch.arange(samples, device=device, dtype=o.dtype) + 0.5) / samples
    t = near[:, None] + (far - near)[:, None] * u[None]
    sigma = _query(density_fn, (o[:, None] + t[..., None] * d[:, None]).reshape(-1, 3)).view(-1, samples)
    return sigma, (far - near) / samples


def scene_surface_level(density_fn: DensityFn, radius: float, distance: float, wanted: float = 25.0,
                        resolution: int = 16, samples: int = 128, device: torch.device | str = "cpu") -> float:
    """Iso-level for a scene seen from inside: the median density where rays from `inside_views`
    first reach half opacity (what the renders show as the surface), capped at `wanted`. A room's
    density seldom reaches the object level 25, and silhouettes from outside see only its walls."""
    from ..cameras import inside_views
    sigma, dt = _density_along_rays(density_fn, inside_views(distance, resolution), radius, samples, device)
    optical = torch.cumsum(sigma * dt[:, None], dim=1)
    reached = optical > math.log(2.0)  # transmittance below one half
    if not bool(reached.any()):
        raise EngineError("the stage-1 scene is transparent from inside: no surface to extract",
                          hint="run stage 1 for more steps, or check the prompt/prior")
    first = reached.float().argmax(dim=1)
    at_surface = sigma[reached.any(dim=1)].gather(1, first[reached.any(dim=1), None])[:, 0]
    return min(float(at_surface.median()), wanted)


def silhouette_threshold(density_fn: DensityFn, radius: float = 1.0, wanted: float = 25.0, resolution: int = 32,
                         samples: int = 64, tolerance: float = 0.02,
                         device: torch.device | str = "cpu") -> tuple[float, dict[str, float]]:
    """Iso-level whose solid matches the field's opacity masks from 16 orbit views (see above).
    Returns the level and how well it and `wanted` agree (fraction of disagreeing rays)."""
    from ..cameras import framing_cameras
    elev = torch.tensor([-10.0, 30.0]).repeat_interleave(8)
    azim = (torch.arange(8.0) * 45.0 + 22.5).repeat(2)
    sigma, dt = _density_along_rays(density_fn, framing_cameras(elev, azim, radius, resolution), radius, samples,
                                    device)
    opaque = (1 - torch.exp(-(sigma * dt[:, None]).sum(1))) > 0.5
    peak, order = torch.sort(sigma.max(1).values)
    opaque = opaque[order].float()
    n = peak.numel()
    if n == 0 or not bool(opaque.any()):
        raise EngineError("the stage-1 field is transparent from every view: no surface to extract",
                          hint="run stage 1 for more steps, or check the prompt/prior")
    # level between peak[k-1] and peak[k]: rays k.. are solid; errors = opaque below + clear above
    below = torch.cat([torch.zeros(1, device=device), torch.cumsum(opaque, 0)])
    above_clear = (n - torch.arange(n + 1, device=device)) - (opaque.sum() - below)
    errors = (below + above_clear) / n
    levels = torch.cat([peak[:1] * 0.5, 0.5 * (peak[1:] + peak[:-1]), peak[-1:] * 1.5]).clamp(min=1e-6)
    k_wanted = int(torch.searchsorted(peak, torch.tensor(wanted, device=device, dtype=peak.dtype)))
    pick = int(torch.argmin(errors))
    if float(errors[k_wanted]) <= float(errors[pick]) + tolerance:
        pick = k_wanted
    level = wanted if pick == k_wanted else float(levels[pick])
    return level, {"level": level, "disagreement": float(errors[pick]), "disagreement_at_wanted": float(errors[k_wanted])}


def dmtet_from_density(density_fn: DensityFn, resolution: int, threshold: float = 25.0,
                       half_extent: float = 1.0, fill_radius: float | None = FILL_RADIUS,
                       closed: bool = True, device: torch.device | str = "cpu") -> DMTet:
    """A DMTet whose zero level set is the thresholded stage-1 density inside a fitted box, its
    interior pockets filled (`solidify`; `fill_radius` in world units, 0 fills enclosed ones only,
    None fills nothing: a scene's room is an enclosed pocket the cameras stand in); `closed` False
    leaves the surface open where the solid reaches the box (a scene: see DMTet)."""
    lo, hi = fit_bbox(density_fn, threshold, half_extent, device=device)
    grid = TetGrid(resolution, lo, hi)
    density = _query(density_fn, grid.vertices())
    sdf = sdf_from_density(density, threshold)
    if fill_radius is not None:
        n = resolution + 1
        r = closing_radius_cells(fill_radius, float(grid.cell_size.max()))
        inside = interior_mask((density > threshold).view(n, n, n), r).reshape(-1)
        sdf[inside] = -sdf[inside].abs().clamp(min=1e-3)
    return DMTet(grid, sdf, closed)
