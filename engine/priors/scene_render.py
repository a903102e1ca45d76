"""What a reference scene render looks like, and the ray plumbing shared by SDF and mesh scenes.

A reference scene only has to trace flat rays (`trace(origins, dirs) -> RayHits`); `render_rays`
builds the camera rays (optionally supersampled for antialiased edges) and pools them into a
`SceneRender`, so SDF and mesh scenes give identical outputs for the analytic prior.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from ..cameras import Cameras


@dataclass
class SceneRender:
    """Per-pixel render of a reference scene; channels-last, top row first."""

    rgb: torch.Tensor  # (B, H, W, 3) straight (not premultiplied) colour in [0, 1]; 0 where alpha = 0
    alpha: torch.Tensor  # (B, H, W, 1) coverage in [0, 1] (fractional at edges when supersampled)
    depth: torch.Tensor  # (B, H, W, 1) distance along the ray to the hit; 0 where alpha = 0
    normal: torch.Tensor  # (B, H, W, 3) unit world-space normal; 0 where alpha = 0

    def over(self, background: torch.Tensor | None = None) -> torch.Tensor:
        """Composite over a (B, H, W, 3) backdrop in [0, 1] (white when None)."""
        if background is None:
            return self.rgb * self.alpha + (1.0 - self.alpha)
        bg = background.to(self.rgb.dtype)
        if bg.shape != self.rgb.shape:
            raise ValueError(f"background must be (B, H, W, 3) = {tuple(self.rgb.shape)}, got {tuple(bg.shape)}")
        return self.rgb * self.alpha + bg * (1.0 - self.alpha)


@dataclass
class RayHits:
    """Result of tracing N flat rays."""

    hit: torch.Tensor  # (N,) bool
    depth: torch.Tensor  # (N,) ray distance (anything where not hit)
    rgb: torch.Tensor  # (N, 3)
    normal: torch.Tensor  # (N, 3)

    @classmethod
    def empty(cls, n: int, device: torch.device, dtype: torch.dtype) -> RayHits:
        return cls(torch.zeros(n, dtype=torch.bool, device=device), torch.zeros(n, dtype=dtype, device=device),
                   torch.zeros(n, 3, dtype=dtype, device=device), torch.zeros(n, 3, dtype=dtype, device=device))

    def scatter(self, idx: torch.Tensor, hit: torch.Tensor, depth: torch.Tensor, rgb: torch.Tensor,
                normal: torch.Tensor) -> None:
        """Write results for the rays at `idx` (in place)."""
        self.hit[idx], self.depth[idx], self.rgb[idx], self.normal[idx] = hit, depth, rgb, normal


class ReferenceScene(Protocol):
    """Anything the analytic prior can use as a reference world: a name and a renderer."""

    name: str

    def render(self, cameras: Cameras, supersample: int | None = None) -> SceneRender: ...


def _subpixel_rays(cameras: Cameras, pix: torch.Tensor, ss: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays (E·ss², 3) through an ss×ss grid inside each pixel of `pix` (E, 3) = (camera, row, col)."""
    dev, dt = cameras.device, cameras.c2w.dtype
    offs = (torch.arange(ss, device=dev, dtype=dt) + 0.5) / ss
    du, dv = torch.meshgrid(offs, offs, indexing="ij")
    b, i, j = pix[:, 0], pix[:, 1].to(dt), pix[:, 2].to(dt)
    f = cameras.focal().to(dt)[b][:, None]
    x = (j[:, None] + dv.reshape(1, -1) - cameras.width / 2) / f
    y = -(i[:, None] + du.reshape(1, -1) - cameras.height / 2) / f
    d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # (E, ss², 3)
    d = (cameras.c2w[b, None, :3, :3] * d_cam[:, :, None, :]).sum(-1)  # R @ d per ray (no tiny bmm)
    d = d / d.norm(dim=-1, keepdim=True)
    o = cameras.c2w[b, :3, 3][:, None, :].expand_as(d)
    return o.reshape(-1, 3), d.reshape(-1, 3)


def render_rays(trace: Callable[[torch.Tensor, torch.Tensor, float], RayHits], cameras: Cameras,
                supersample: int = 1) -> SceneRender:
    """Trace one ray per pixel centre, then re-trace pixels on an edge with ss×ss rays (box filter).

    Adaptive supersampling: a pixel is re-traced when its 3×3 neighbourhood holds a coverage or
    colour step (> 0.03 in a channel), which is where aliasing lives; flat regions keep their single ray. That gives
    antialiased silhouettes and colour boundaries for a fraction of uniform supersampling's cost.
    `trace(origins, dirs, pixel_angle)` gets flat unit rays and the ray spacing in radians.
    """
    ss = int(supersample)
    if ss < 1:
        raise ValueError(f"supersample must be an integer ≥ 1, got {supersample!r}")
    b, h, w = cameras.batch, cameras.height, cameras.width
    pixel_angle = float((2.0 * torch.tan(0.5 * cameras.fov_y) / h).min())
    with torch.no_grad():
        origins, dirs = cameras.rays()
        hits = trace(origins.reshape(-1, 3), dirs.reshape(-1, 3), pixel_angle)
        alpha = hits.hit.to(dirs.dtype).unsqueeze(-1)
        rgb, depth, normal = hits.rgb, hits.depth.unsqueeze(-1), hits.normal
        if ss > 1:
            key = torch.cat([rgb * alpha, alpha], dim=-1).reshape(b, h, w, 4).permute(0, 3, 1, 2)
            spread = F.max_pool2d(key, 3, 1, 1) + F.max_pool2d(-key, 3, 1, 1)
            edge = (spread > 0.03).any(dim=1).reshape(-1)  # a visible step, not a smooth gradient
            pix_flat = edge.nonzero().squeeze(1)
            if pix_flat.numel():
                pix = torch.stack([pix_flat // (h * w), (pix_flat // w) % h, pix_flat % w], dim=1)
                sub = trace(*_subpixel_rays(cameras, pix, ss), pixel_angle / ss)
                m = sub.hit.to(dirs.dtype).reshape(-1, ss * ss, 1)
                cnt = m.sum(1)
                safe = cnt.clamp_min(1.0)
                alpha[pix_flat] = cnt / (ss * ss)
                rgb[pix_flat] = (sub.rgb.reshape(-1, ss * ss, 3) * m).sum(1) / safe
                depth[pix_flat] = (sub.depth.reshape(-1, ss * ss, 1) * m).sum(1) / safe
                n = (sub.normal.reshape(-1, ss * ss, 3) * m).sum(1)
                normal[pix_flat] = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    shape = (b, h, w)
    return SceneRender(rgb=rgb.clamp(0, 1).reshape(*shape, 3), alpha=alpha.reshape(*shape, 1),
                       depth=depth.reshape(*shape, 1), normal=normal.reshape(*shape, 3))
