"""How a subject of known shape sits in the training views, and the camera scale that frames it.

Every preset's cameras orbit the origin looking at it (engine/cameras.py). The SD presets' ranges
(distance 1.0–1.5, vertical fov 40–70°, threestudio's and the official code's) were made for an
object inside the stage-1 blob, radius ≈ 0.5; a mesh of another size — a user's mesh in re-texture
mode, or whatever stage 1 grew in text mode — would be seen as cropped close-ups (SD never sees its
silhouette) or as a speck. Scaling all camera distances by one factor is the same as scaling the
subject by its inverse (same look-at point, same fov), so the mesh stages keep the subject's
coordinates (its colour field is inherited from stage 1 in text mode) and scale their cameras.

The fit is on vertex projections over a fixed sample of the preset's own training views: the largest
subject scale at which its silhouette reaches the image border in at most `TOUCH_FRACTION` of them.
Measuring the result (silhouette coverage with the rasteriser) is the tests' job, not this module's
(tests/test_preset_invariants.py).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from .cameras import Cameras, CameraSampler, concat_cameras
from .spec import CameraSpec, JobSpec

# 5 % of views may touch the border: the invariant tests allow 10 %, and a view where a corner of the
# subject grazes the frame still shows its silhouette. More would crop; less shrinks every other view.
TOUCH_FRACTION = 0.05
# a projected point this close to the frame's edge (in half-widths) counts as touching it: one pixel at 40²
BORDER = 0.95
FRAMING_VIEWS = 256
MAX_POINTS = 4096


def training_views(camera: CameraSpec, views: int = FRAMING_VIEWS, resolution: int = 64, seed: int = 0) -> Cameras:
    """A fixed, reproducible sample of the training cameras `camera` describes (batches of 8, as a
    stage's sampler draws them, so the stratified azimuths cover the circle)."""
    gen = torch.Generator().manual_seed(seed)
    sampler = CameraSampler(camera)
    return concat_cameras([sampler.sample(8, resolution, gen) for _ in range(math.ceil(views / 8))])


def _subsample(points: np.ndarray, limit: int = MAX_POINTS) -> np.ndarray:
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if len(points) <= limit:
        return points
    # the extremes decide touching: keep the points farthest from the centre, then a spread of the rest
    far = np.argsort(-np.linalg.norm(points, axis=1))[: limit // 2]
    rest = np.linspace(0, len(points) - 1, limit - len(far)).astype(np.int64)
    return points[np.unique(np.concatenate([far, rest]))]


def touch_scales(points: np.ndarray, cams: Cameras) -> np.ndarray:
    """Per view, the smallest factor at which the subject (scaled about the origin) reaches the
    border. Each camera looks at the origin from distance d, so a point p·s sits at camera
    coordinates (s·aₓ, s·a_y, s·a_z − d) with a = Rᵀp: it reaches the border when
    s·|aₓ| ≥ B·tan(fov/2)·(d − s·a_z), a linear inequality in s (same for y). Solving it for every
    point and view gives the exact threshold, no search."""
    pts = torch.from_numpy(_subsample(points))
    c2w = cams.c2w.double()
    a = torch.einsum("bji,pj->bpi", c2w[:, :3, :3], pts)  # (views, points, 3) camera-frame directions
    d = c2w[:, :3, 3].norm(dim=-1)[:, None]
    bt = BORDER * torch.tan(0.5 * cams.fov_y.double())[:, None]
    limit = torch.full_like(d, math.inf)
    for axis in (0, 1):
        coef = a[..., axis].abs() + bt * a[..., 2]
        s = torch.where(coef > 0, bt * d / coef.clamp_min(1e-300), torch.full_like(coef, math.inf))
        limit = torch.minimum(limit, s.min(dim=1, keepdim=True).values)
    return limit[:, 0].numpy()


def fit_scale(points: np.ndarray, camera: CameraSpec, touch: float = TOUCH_FRACTION) -> float:
    """The largest factor the subject may be scaled by (about the origin, where the cameras look)
    so that it reaches the border in at most `touch` of the training views."""
    if not float(np.abs(np.asarray(points)).max(initial=0.0)) > 0:
        raise ValueError("the subject has no extent")
    limits = np.sort(touch_scales(points, training_views(camera)))
    allowed = int(math.floor(touch * len(limits)))  # this many views may touch
    return float(limits[min(allowed, len(limits) - 1)]) * (1.0 - 1e-9)


def scaled_camera(camera: CameraSpec, factor: float) -> CameraSpec:
    """The same cameras with every distance (training range and held-out orbit) times `factor`."""
    lo, hi = camera.distance
    return dataclasses.replace(camera, distance=(lo * factor, hi * factor), eval_distance=camera.eval_distance * factor)


def mesh_stage_factor(spec: JobSpec, meshes: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The camera-distance factor a mesh stage trains with: the meshes (all particles together)
    framed by the job's cameras; 1 for a scene, whose cameras stand inside it, or for no surface."""
    if spec.field.kind == "scene":
        return 1.0
    parts = [v.detach().float().cpu() for v, f in meshes if f.shape[0] > 0]
    if not parts:
        return 1.0
    # scaling every camera distance by 1/k frames the subject as scaling it by k would
    return 1.0 / fit_scale(torch.cat(parts).numpy(), spec.camera)
