"""Render a triangle mesh through a Rasterizer with the engine's cameras (Cameras, OpenGL c2w).

Images come out top row first (B, H, W, C) like every other engine image; the mask is the
antialiased coverage, so SDS on these renders moves silhouettes too.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..cameras import Cameras
from .raster.base import Rasterizer

ColorFn = Callable[[torch.Tensor], torch.Tensor]


def projection(cameras: Cameras, near: float = 0.01, far: float = 100.0) -> torch.Tensor:
    """(B, 4, 4) OpenGL perspective matrices from the vertical fov and the image aspect."""
    f = 1.0 / torch.tan(0.5 * cameras.fov_y)
    aspect = cameras.width / cameras.height
    p = torch.zeros(cameras.batch, 4, 4, dtype=cameras.c2w.dtype, device=cameras.device)
    p[:, 0, 0], p[:, 1, 1] = f / aspect, f
    p[:, 2, 2], p[:, 2, 3] = -(far + near) / (far - near), -2 * far * near / (far - near)
    p[:, 3, 2] = -1.0
    return p


def clip_positions(vertices: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """World vertices (V, 3) → clip-space positions (B, V, 4)."""
    mvp = projection(cameras) @ torch.linalg.inv(cameras.c2w)
    homo = torch.cat([vertices, torch.ones_like(vertices[:, :1])], dim=-1)
    return torch.einsum("bij,vj->bvi", mvp.to(vertices.dtype), homo)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (V, 3), differentiable."""
    v0, v1, v2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    fn = torch.linalg.cross(v1 - v0, v2 - v0)
    vn = torch.zeros_like(vertices).index_add(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    return torch.nn.functional.normalize(vn, dim=-1, eps=1e-12)


@dataclass
class MeshRender:
    image: torch.Tensor  # (B, H, W, 3) shaded colour over the background, antialiased
    mask: torch.Tensor  # (B, H, W, 1) antialiased coverage
    points: torch.Tensor  # (B, H, W, 3) world position (0 where empty)
    triangle: torch.Tensor  # (B, H, W) triangle id + 1, 0 = empty


def render_mesh(raster: Rasterizer, vertices: torch.Tensor, faces: torch.Tensor, cameras: Cameras,
                shade: str | ColorFn = "normal", background: torch.Tensor | None = None,
                antialias: bool = True, chunk: int = 1 << 16) -> MeshRender:
    """shade='normal': world normals mapped to (n+1)/2 (the geometry stage's SDS input);
    a callable: albedo queried at the visible surface points (the texture stage)."""
    h, w = cameras.height, cameras.width
    pos = clip_positions(vertices, cameras)
    rast = raster.rasterize(pos, faces, (h, w))
    tid = rast[..., 3].long()
    covered = tid > 0
    points = raster.interpolate(vertices, rast, faces)
    if shade == "normal":
        n = raster.interpolate(vertex_normals(vertices, faces), rast, faces)
        color = torch.nn.functional.normalize(n, dim=-1, eps=1e-12) * 0.5 + 0.5
    else:
        flat = points[covered]
        vals = torch.cat([shade(flat[i:i + chunk]) for i in range(0, flat.shape[0], chunk)]) \
            if flat.shape[0] else flat.new_zeros(0, 3)
        color = points.new_zeros(*points.shape[:3], vals.shape[-1]).index_put((covered,), vals)
    mask = covered.unsqueeze(-1).to(color.dtype)
    if background is None:
        background = torch.zeros_like(color)
    else:
        background = background.flip(1).to(color.dtype).expand_as(color)  # to the rasteriser's bottom-up rows
    image = color * mask + background * (1 - mask)
    if antialias:
        both = raster.antialias(torch.cat([image, mask], dim=-1), rast, pos, faces)
        image, mask = both[..., :-1], both[..., -1:]
    flip = lambda t: t.flip(1)  # noqa: E731  bottom-up rasteriser rows → top row first
    return MeshRender(flip(image), flip(mask), flip(points), flip(tid))
